"""What the pass computes per row: the L2 norm and the rule for a clean row, the bits and the
hash that say two rows are identical (EA003), and the clean rows of a chunk as the consumers of
the pass see them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Rows = npt.NDArray[np.int64]


def row_norms(values: npt.NDArray[np.floating[Any]]) -> Floats:
    """L2 norm of each row, accumulated in float64 and safe from overflow and underflow.

    float16/32 inputs square exactly into float64. float64 rows whose sum of squares leaves the
    normal range are recomputed scaled by their largest magnitude (as LAPACK's dnrm2 does).
    """
    wide = values.astype(np.float64, copy=False)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sum_sq = np.einsum("ij,ij->i", wide, wide)
        norms: Floats = np.sqrt(sum_sq)
        at_risk = np.flatnonzero((sum_sq > np.finfo(np.float64).max / 2) | (sum_sq < 2.0**-900))
        if len(at_risk):
            at_risk = at_risk[np.isfinite(wide[at_risk]).all(axis=1)]
        if len(at_risk):
            block = wide[at_risk]
            scale = np.abs(block).max(axis=1)
            safe = np.where(scale > 0, scale, 1.0)
            ratio = block / safe[:, None]
            norms[at_risk] = safe * np.sqrt(np.einsum("ij,ij->i", ratio, ratio))
    return norms


def scaled_to_unit(
    values: npt.NDArray[np.floating[Any]], norms: Floats, out: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The rows scaled to unit norm, in float32, into ``out``: each row times the reciprocal of
    its (float64) norm, in float32 for float16 and float32 rows (float64 for float64 rows, then
    rounded to float32): within about one float32 unit of x / |x| correctly rounded. The
    norms must be those of the rows (:func:`row_norms`), non-zero and finite.

    Every pass computes its unit rows with this one function, so that a later pass of the same
    rows (a round that searches more queries) has the first pass's unit rows to the last bit
    without computing their norms again. One float32 multiply a value: a third of the time of
    widening the rows to float64 and dividing them (0.34 s against 0.86 s per 1M 768-d rows on
    one core). A row whose reciprocal norm is no normal number of that precision (a float32 row
    of norm beyond 2**126) is divided in float64 instead."""
    precision = np.float64 if values.dtype == np.float64 else np.float32
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        reciprocal = (1.0 / norms).astype(precision)
    np.multiply(values, reciprocal[:, None], out=out, casting="same_kind")
    info = np.finfo(precision)
    if len(reciprocal) and not info.tiny <= reciprocal.min() <= reciprocal.max() <= info.max:
        odd = np.flatnonzero(~((reciprocal >= info.tiny) & (reciprocal <= info.max)))
        out[odd] = values[odd].astype(np.float64) / norms[odd, None]
    return out


def clean_mask(
    values: npt.NDArray[np.floating[Any]], dtype: np.dtype[Any]
) -> npt.NDArray[np.bool_]:
    """Rows that are finite, with a finite norm of at least the dtype's smallest normal number:
    the rows the diagnostics use (the same rule as the pass: EA001 and EA002 set the others
    apart). Widened to float64 a block of _MASK_BYTES at a time."""
    mask = np.empty(len(values), dtype=bool)
    step = max(1, _MASK_BYTES // (8 * max(values.shape[-1], 1)))
    tiny = np.finfo(dtype).tiny
    for first in range(0, len(values), step):
        block = values[first : first + step]
        norms = row_norms(block)
        finite = np.isfinite(block).all(axis=1) & np.isfinite(norms)
        mask[first : first + step] = finite & (norms >= tiny)
    return mask


#: Bytes of float64 rows :func:`clean_mask` widens at a time: a draw's 20,000 float32 rows of
#: 768-d, kept as stored, are not widened all at once (123 MB).
_MASK_BYTES = 2**21


def _row_words(
    values: npt.NDArray[np.floating[Any]], out: npt.NDArray[np.floating[Any]] | None = None
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The bit patterns of the values (unsigned words of the same width), -0.0 folded into +0.0:
    what "identical rows" means for EA003. ``out``: a C-ordered array of the values' shape and
    dtype to hold them (default: a new one)."""
    # -0.0 + 0.0 == +0.0 under round-to-nearest; C order, so that the rows' words are contiguous
    folded = np.add(values, values.dtype.type(0), out=out, order="C")
    return folded.view(np.dtype(f"u{values.dtype.itemsize}"))


def _hash_rows(
    values: npt.NDArray[np.floating[Any]],
    scratch: tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]] | None = None,
) -> npt.NDArray[np.uint64]:
    """A 64-bit multiply-sum hash of each row's bits as stored (mod 2^64): equal rows hash equal;
    a prefilter only.

    Each value's word has its high half folded into its low half (w ^ (w >> half its width):
    one-to-one, so equal words stay equal and different ones different) before the sum of the
    words times their own odd weights. Without it, values of lower precision than their dtype
    leave the low bits of every word zero, and of the sum: a float32 value stored as float64
    (a float32 export written by pandas, or widened on the way) has 29 trailing zero bits, so
    every hash was a multiple of 2^29 — 35 bits of hash, colliding about n^2 / 2^36 times (28
    rows to fetch again and compare on a 1M-row export, 2.5 s on its parquet copy); int8 or
    bfloat16 values read as float32 keep 16-17 zero bits. ``scratch``: two C-ordered arrays
    of the values' shape and dtype for the words (default: new ones; a fold reuses its own)."""
    words = _row_words(values, None if scratch is None else scratch[0])  # folded in place
    shifted = None if scratch is None else scratch[1].view(words.dtype)
    words ^= np.right_shift(words, 4 * words.dtype.itemsize, out=shifted)
    hashes: npt.NDArray[np.uint64] = np.einsum(
        "ij,j->i", words, _hash_weights(words.shape[1]), dtype=np.uint64
    )  # one pass, wraps
    return hashes


@dataclass(frozen=True)
class CleanRows:
    """The finite, non-zero rows of one chunk, as the consumers of the pass see them (valid
    during the consumer's call: see :data:`ChunkConsumer`)."""

    positions: Rows  # global row positions
    values: npt.NDArray[np.floating[Any]]  # (r, d) as stored (float16, float32 or float64)
    norms: Floats  # (r,) L2 norms, float64
    unit: npt.NDArray[np.float32]  # (r, d) the rows scaled to unit norm, float32
    rows_read: int = 0  # rows of the chunk, clean or not


#: Called with the clean rows of the chunks one worker of a pass takes, in row order. The rows
#: are the worker's for the call only: the pass uses their memory again for its next chunk,
#: so a consumer that keeps any copies them.
ChunkConsumer = Callable[[CleanRows], None]


@functools.cache
def _hash_weights(words: int) -> npt.NDArray[np.uint64]:
    """Fixed odd weights, one per word of a row (read-only: shared): the hash only proposes
    candidates, which are then compared exactly."""
    weights: npt.NDArray[np.uint64] = np.random.default_rng(0x5EED).integers(
        0, 2**64 - 1, size=words, dtype=np.uint64, endpoint=True
    ) | np.uint64(1)
    weights.flags.writeable = False
    return weights
