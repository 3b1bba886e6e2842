"""Loaders: every input becomes an :class:`EmbeddingSource`."""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from embaudit.errors import InputError
from embaudit.params import ParameterError
from embaudit.sources.arrays import ArraySource, open_npy, open_npz
from embaudit.sources.base import Chunk, EmbeddingSource, Fragment
from embaudit.sources.hdf5 import HDF5Source
from embaudit.sources.memory import open_in_memory
from embaudit.sources.postgres import PostgresSource, is_postgres
from embaudit.sources.tensors import open_safetensors
from embaudit.sources.vecs import BIGANN, TEXMEX, open_vectors

if TYPE_CHECKING:
    from embaudit.sources.parquet import ParquetSource
    from embaudit.sources.remote import RemoteFiles
    from embaudit.sources.shards import Listing, ShardedSource
    from embaudit.sources.text import TextSource

#: The readers that stand on pyarrow (parquet, text, directories, URIs, Lance), loaded when an
#: input of theirs is opened, or one of their names asked for: pyarrow and what it loads were
#: half of the command line's imports (340 → 186 ms without), and an .npy audit needs none.
_LAZY = {
    "ParquetSource": "parquet",
    "ShardedSource": "shards",
    "TextSource": "text",
    "LanceSource": "lance_dataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"embaudit.sources.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArraySource",
    "Chunk",
    "EmbeddingSource",
    "Fragment",
    "ParquetSource",
    "PostgresSource",
    "ShardedSource",
    "TextSource",
    "open_source",
]

#: File formats by suffix, and the input options each takes.
FORMATS: dict[str, tuple[str, frozenset[str]]] = {
    ".npy": ("npy", frozenset()),
    ".npz": ("npz", frozenset({"key"})),
    ".parquet": ("parquet", frozenset({"column", "id_column"})),
    ".jsonl": ("jsonl", frozenset({"column", "id_column"})),
    ".ndjson": ("jsonl", frozenset({"column", "id_column"})),
    ".csv": ("csv", frozenset({"column", "id_column"})),
    **{suffix: (suffix[1:], frozenset()) for suffix in (*TEXMEX, *BIGANN)},
    ".safetensors": ("safetensors", frozenset({"key"})),
    ".h5": ("hdf5", frozenset({"key"})),
    ".hdf5": ("hdf5", frozenset({"key"})),
    ".lance": ("lance", frozenset({"column", "id_column"})),
}
SUFFIXES = tuple(FORMATS)

#: What each option applies to, for the message when it is given elsewhere.
_APPLIES_TO = {
    "key": ".npz, .safetensors and HDF5 files",
    "column": "parquet, JSON Lines, CSV, Lance and PostgreSQL input",
    "id_column": "parquet, JSON Lines, CSV, Lance and PostgreSQL input",
    "table": "PostgreSQL sources (postgresql://…)",
    "where": "PostgreSQL sources (postgresql://…)",
    "ids_from": ".npy, .fbin, .safetensors (… ) files and directories of them",
}
#: Each suffix's kind of file: a directory holds one kind (.h5 and .hdf5 are one).
_KINDS = {suffix: format for suffix, (format, _) in FORMATS.items()}
#: The kinds read behind a URI: parquet, and the files whose rows lie at fixed offsets (read by
#: byte ranges, :mod:`embaudit.sources.remote`).
_URI_KINDS = {".parquet": "parquet", ".npy": "npy", ".safetensors": "safetensors"} | {
    suffix: suffix[1:] for suffix in BIGANN
}
#: Formats whose rows carry their own ids (--id-column), which --ids-from does not replace.
_OWN_IDS = frozenset({"parquet", "jsonl", "csv", "lance"})


def open_source(
    source: str | os.PathLike[str] | EmbeddingSource | Any,
    *,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    table: str | None = None,
    where: str | None = None,
    ids_from: str | os.PathLike[str] | None = None,
) -> EmbeddingSource:
    """Open a path (``.npy``, ``.npz``, ``.parquet``, ``.jsonl`` / ``.ndjson``, ``.csv``,
    ``.fvecs`` / ``.bvecs``, ``.fbin`` / ``.f16bin`` / ``.u8bin`` / ``.i8bin``, ``.safetensors``,
    ``.h5`` / ``.hdf5``, a ``.lance`` dataset directory, or a directory of files of one of those
    kinds: see :mod:`embaudit.sources.shards`), a URI of a parquet, ``.npy``, big-ann or
    ``.safetensors`` file or prefix (:mod:`embaudit.sources.remote`), a PostgreSQL URI
    (``postgresql://…`` with ``table``), or wrap an in-memory 2-D float array.

    ``key`` picks the array of an ``.npz``, the tensor of a ``.safetensors`` file or the
    dataset of an HDF5 file; ``column`` and ``id_column`` name the columns holding the vectors
    and the row ids (parquet, JSON Lines, CSV, Lance, PostgreSQL), and ``column`` the column of
    an in-memory pyarrow table or pandas DataFrame; ``table`` the PostgreSQL table and ``where``
    an SQL predicate selecting its rows; ``ids_from`` a parquet file or directory of the row ids
    of a file or directory of arrays (the column: ``id_column``, else ``id``, else the only one).
    Options that do not apply to the format are usage errors.
    """
    options = {"key": key, "column": column, "id_column": id_column, "table": table, "where": where}
    if ids_from is not None:
        ids_from = os.fspath(ids_from)
    if isinstance(source, EmbeddingSource):
        return source
    if ids_from is not None and (
        not isinstance(source, str | os.PathLike)
        or (isinstance(source, str) and (is_postgres(source) or _is_uri(source)))
    ):
        raise _not_for("ids_from", f"{_APPLIES_TO['ids_from']}, not {_named(source)}")
    if not isinstance(source, str | os.PathLike):
        for name in ("key", "table"):
            if options[name] is not None:
                raise _not_for(name, "files, not arrays")
        return open_in_memory(source, column=column, id_column=id_column)
    if isinstance(source, str) and is_postgres(source):
        if key is not None:
            raise _not_for("key", f"{_APPLIES_TO['key']}, not a PostgreSQL table")
        return PostgresSource(source, table=table, column=column, id_column=id_column, where=where)
    for name in ("table", "where"):
        if options[name] is not None:
            raise _not_for(name, f"{_APPLIES_TO[name]}, not {source}")
    if isinstance(source, str) and _is_uri(source):
        return _open_uri(source, key=key, column=column, id_column=id_column)
    return _open_local(Path(source), options, ids_from)


def _named(source: Any) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else "an array in memory"


def _open_local(
    path: Path, options: dict[str, str | None], ids_from: str | None
) -> EmbeddingSource:
    """A local file, or a directory read whole (one kind of vector file) or refused."""
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if not (path.is_file() or path.is_dir()):
        raise InputError(path, "not a regular file or directory")
    key, column, id_column = options["key"], options["column"], options["id_column"]
    suffix = path.suffix.lower()
    listing = None
    if path.is_dir() and suffix != ".lance":
        from embaudit.sources.shards import list_directory

        listing = list_directory(path, _KINDS, str(path))
        suffix = listing.kind
    if suffix not in FORMATS:
        raise InputError(
            path,
            f"unknown file type {path.suffix or '(no extension)'!r}; expected one of "
            f"{', '.join(SUFFIXES)} or a directory of them",
        )
    format, accepted = FORMATS[suffix]
    if ids_from is not None:
        if format in _OWN_IDS:
            raise _not_for(
                "ids_from", f"{_APPLIES_TO['ids_from']}; {path} has its own (--id-column)"
            )
        accepted = accepted | {"id_column"}
    for name, option in options.items():
        if option is not None and name not in accepted:
            raise _not_for(name, f"{_APPLIES_TO[name]}, not {path}")
    opener = functools.partial(
        _open_path,
        format=format,
        key=key,
        column=column,
        id_column=None if ids_from is not None else id_column,
    )
    if listing is not None and format == "parquet":
        opened: EmbeddingSource = _open_path(path, "parquet", column=column, id_column=id_column)
    elif listing is not None or ids_from is not None:
        from embaudit.sources.shards import ShardedSource

        files = listing.files if listing is not None else [path]
        opened = ShardedSource(
            str(path),
            files,
            opener,
            listing=listing,
            ids_from=ids_from,
            id_column=id_column,
            cut=listing is not None,
        )
    else:
        opened = opener(path)
    if listing is not None:
        opened.ignored = tuple(listing.ignored)
    return opened


def _open_path(
    path: Path,
    format: str,
    *,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
) -> EmbeddingSource:
    """The file (or parquet directory) at ``path``, its OS errors as input errors naming it.
    A memory-mapped array opens again from ``path`` when it travels to another process."""
    try:
        source = _open_file(path, format, key=key, column=column, id_column=id_column)
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    if isinstance(source, ArraySource):
        source.reopen = functools.partial(
            _open_path, path, format, key=key, column=column, id_column=id_column
        )
    return source


def accepts(location: str | os.PathLike[str], option: str) -> bool:
    """Whether the input at ``location`` takes the input option ``option`` (``key``,
    ``column``, ``id_column``) by its kind: a PostgreSQL URI the columns, a parquet URI or a
    file by its suffix, a directory (not a Lance dataset) by the kind of its files."""
    if isinstance(location, str) and is_postgres(location):
        return option in ("column", "id_column")
    if isinstance(location, str) and _is_uri(location):
        try:
            suffix = _uri_kind(location)[2]
        except InputError:
            return False  # opening it says why
        return option in FORMATS[suffix][1]
    path = Path(location)
    suffix = path.suffix.lower()
    if path.is_dir() and suffix != ".lance":
        from embaudit.sources.shards import list_directory

        try:
            suffix = list_directory(path, _KINDS, str(path)).kind
        except InputError:
            return False  # opening it says why
    return suffix in FORMATS and option in FORMATS[suffix][1]


def _open_file(
    path: Path, format: str, *, key: str | None, column: str | None, id_column: str | None
) -> EmbeddingSource:
    if format == "npy":
        return open_npy(path)
    if format == "npz":
        return open_npz(path, key)
    if format in ("jsonl", "csv"):
        from embaudit.sources.text import TextSource

        return TextSource(path, format=format, column=column, id_column=id_column)
    if path.suffix.lower() in (*TEXMEX, *BIGANN):
        return open_vectors(path)
    if format == "safetensors":
        return open_safetensors(path, key)
    if format == "hdf5":
        return HDF5Source(path, key=key)
    if format == "lance":
        from embaudit.sources.lance_dataset import LanceSource

        return LanceSource(path, column=column, id_column=id_column)
    from embaudit.sources.parquet import ParquetSource

    return ParquetSource(path, column=column, id_column=id_column)


def _not_for(name: str, what: str) -> ParameterError:
    """An input option given for a source it does not apply to."""
    return ParameterError(name, f"applies to {what}", "--" + name.replace("_", "-"))


def _is_uri(location: str) -> bool:
    """``scheme://…`` (s3, gs, hdfs, file, …); a Windows drive letter is not a scheme."""
    scheme, separator, _ = location.partition("://")
    return bool(separator) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def _uri_kind(uri: str) -> tuple[RemoteFiles, Listing | None, str, list[PurePosixPath]]:
    """What a URI holds: its filesystem, the listing of a prefix (None: one file), the kind of
    its files (a suffix of :data:`_URI_KINDS`) and their paths. Input errors name the URI: one
    that pyarrow cannot resolve, nothing there, a kind not read behind a URI."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    from embaudit.sources import remote

    try:
        filesystem, root = remote.resolve(uri)
        root = root.rstrip("/")
        info = filesystem.get_file_info(root)
    except (pa.ArrowException, OSError) as exc:
        text = str(exc).strip()
        raise InputError(uri, f"cannot open ({text.splitlines()[0] if text else exc})") from None
    files = remote.RemoteFiles(filesystem, uri, root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(uri, "no such file or directory")
    listing = None
    if info.type == pafs.FileType.Directory:
        from embaudit.sources.shards import list_directory

        listing = list_directory(PurePosixPath(root), _KINDS, uri, files)
        suffix, paths = listing.kind, list(listing.files)
    else:
        suffix, paths = PurePosixPath(root).suffix.lower(), [PurePosixPath(root)]
    if suffix not in _URI_KINDS:
        unknown = f"unknown file type {suffix or '(no extension)'!r}"
        known = f"{suffix} files" if listing is not None else f"a {suffix} file"
        what = known if suffix in _KINDS else unknown
        raise InputError(
            uri,
            f"{what}: not read behind a URI (read are {', '.join(sorted(_URI_KINDS))} files "
            "and prefixes of them); copy it locally",
        )
    return files, listing, suffix, [PurePosixPath(path) for path in paths]


def _open_uri(
    uri: str, *, key: str | None, column: str | None, id_column: str | None
) -> EmbeddingSource:
    """A file or a prefix (directory) of files of one kind on any filesystem pyarrow resolves
    from a URI: parquet (:class:`ParquetSource`), or vector files read by byte ranges
    (:mod:`embaudit.sources.remote`) as one dataset (:class:`ShardedSource`)."""
    files, listing, suffix, paths = _uri_kind(uri)
    for name, option in {"key": key, "column": column, "id_column": id_column}.items():
        if option is not None and name not in FORMATS[suffix][1]:
            raise _not_for(name, f"{_APPLIES_TO[name]}, not {uri}")
    from embaudit.sources.parquet import ParquetSource

    if _URI_KINDS[suffix] == "parquet":
        opened: EmbeddingSource = ParquetSource(
            uri, column=column, id_column=id_column, filesystem=(files.filesystem, files.root)
        )
    else:
        from embaudit.sources.shards import ShardedSource

        opened = ShardedSource(uri, paths, files.opener(key), listing=listing, storage=files)
    if listing is not None:
        opened.ignored = tuple(listing.ignored)
    return opened
