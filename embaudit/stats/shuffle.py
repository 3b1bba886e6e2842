"""Exact duplicates found where the rows are, by a hash-partitioned shuffle: what an engine on a
cluster runs instead of sending every row's hash to one process.

- map (with the pass): each fragment's clean rows are split by the top bits of their hash into
  ``buckets`` arrays of (hash, global position), 16 bytes a clean row in all;
- reduce (one task per bucket): the bucket's arrays from every fragment, their hashes sorted;
  the rows whose hash repeats are read again and grouped by a digest of their bits
  (:func:`~embaudit.stats.scan_stats.confirm_duplicates`), so only identical rows group;
- the buckets' :class:`~embaudit.stats.scan_stats.Duplicates` (counts and the first groups)
  merge into those of the source: the same numbers and groups as the exact reduce on one
  process, since identical rows share a hash and so a bucket.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embaudit.sources import EmbeddingSource
from embaudit.stats.fold import PartStats
from embaudit.stats.scan_stats import Duplicates, confirm_duplicates

#: A clean row's entry in a bucket: its hash and global position.
ENTRY = np.dtype([("hash", "<u8"), ("row", "<i8")])
#: About this many bytes of entries per bucket (a reduce task holds one bucket, sorted).
BUCKET_BYTES = 256 * 2**20
#: At most this many buckets.
MAX_BUCKETS = 4096
#: A map task's share of a bucket is at least about this large: Ray returns smaller objects to
#: the caller (the driver) inline, in its own memory, instead of the object store.
MIN_SHARE_BYTES = 128 * 2**10


def bucket_count(rows: int, fragments: int = 1) -> int:
    """Buckets for a source of ``rows`` rows cut into ``fragments``: a power of two, each about
    BUCKET_BYTES, but no more than leave each fragment's share of a bucket MIN_SHARE_BYTES."""
    wanted = max(1, -(-rows * ENTRY.itemsize // BUCKET_BYTES))
    buckets = min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())
    shares = rows * ENTRY.itemsize // max(1, fragments) // MIN_SHARE_BYTES
    while buckets > 1 and buckets > shares:
        buckets //= 2
    return buckets


def split_part(part: PartStats, buckets: int) -> list[npt.NDArray[np.void]]:
    """The map step: the part's clean rows as entries, one array per bucket (by the hash's top
    bits). The part keeps neither its hashes nor its clean flags afterwards."""
    assert part.hashes is not None
    rows = np.flatnonzero(part.clean)
    entries = np.empty(len(rows), dtype=ENTRY)
    entries["hash"] = part.hashes[rows]
    entries["row"] = part.start + rows
    part.hashes, part.clean = None, np.zeros(0, dtype=bool)
    if buckets == 1:
        return [entries]
    shift = np.uint64(64 - (buckets.bit_length() - 1))
    owner = (entries["hash"] >> shift).astype(np.uint16)  # MAX_BUCKETS fits
    order = np.argsort(owner, kind="stable")  # a radix sort for 16-bit keys
    bounds = np.searchsorted(owner[order], np.arange(buckets + 1))
    ordered = entries[order]
    return [ordered[bounds[b] : bounds[b + 1]] for b in range(buckets)]


def reduce_bucket(source: EmbeddingSource, *arrays: npt.NDArray[np.void]) -> Duplicates:
    """The reduce step: the duplicate rows among one bucket's entries from every fragment."""
    entries = np.concatenate(arrays) if arrays else np.empty(0, dtype=ENTRY)
    hashes = entries["hash"]
    ordered = np.sort(hashes)  # a copy of the hashes alone: sorting the records is far slower
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(repeated):
        return Duplicates(0, 0, [])
    at = np.searchsorted(repeated, hashes).clip(max=len(repeated) - 1)
    candidates = np.sort(entries["row"][repeated[at] == hashes])
    del entries, hashes
    return confirm_duplicates(candidates, source.take)
