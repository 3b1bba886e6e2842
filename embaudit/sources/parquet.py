"""Parquet files and directories of parquet files, streamed by record batch.

Three layouts are read: a ``fixed_size_list<float>`` column, a ``list<float>`` column (every row
the same length), or all-float "wide" columns, one per dimension. An id column is optional: the
one named by ``--id-column``, else a column called ``id`` when there is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embaudit.errors import InputError
from embaudit.sources.base import (
    FLOAT_DTYPES,
    Chunk,
    EmbeddingSource,
    as_row_positions,
    check_shape,
)

_DEFAULT_ID_COLUMN = "id"


@dataclass(frozen=True)
class _Layout:
    kind: str  # "fixed_size_list", "list" or "wide"
    columns: tuple[str, ...]  # the vector column, or the wide columns in order
    dtype: np.dtype[Any]
    d: int | None  # None for list columns until a row has been read


@dataclass
class _Fragment:
    path: Path
    file: pq.ParquetFile
    start: int  # global position of the file's first row
    n: int
    row_group_starts: npt.NDArray[np.int64]  # file-local position of each row group's first row


def list_parquet_files(path: Path) -> list[Path]:
    """The parquet files of a directory, in path order, skipping hidden and ``_`` files."""
    files = sorted(
        file
        for file in path.rglob("*.parquet")
        if file.is_file()
        and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
    )
    if not files:
        raise InputError(path, "directory holds no .parquet files")
    return files


def _float_dtype(arrow_type: pa.DataType) -> np.dtype[Any] | None:
    if not pa.types.is_floating(arrow_type):
        return None
    dtype = np.dtype(arrow_type.to_pandas_dtype())
    return dtype if dtype in FLOAT_DTYPES else None


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )


def _layout(
    schema: pa.Schema, where: str, column: str | None, id_column: str | None
) -> tuple[_Layout, str | None]:
    names = schema.names
    if id_column is not None and id_column not in names:
        raise InputError(
            where, f"--id-column {id_column!r} not found; columns are: {', '.join(names)}"
        )
    if id_column is None and _DEFAULT_ID_COLUMN in names and column != _DEFAULT_ID_COLUMN:
        id_column = _DEFAULT_ID_COLUMN
    if column is not None:
        if column not in names:
            raise InputError(
                where, f"--column {column!r} not found; columns are: {', '.join(names)}"
            )
        if column == id_column:
            raise InputError(where, f"column {column!r} cannot be both the vectors and the ids")
        return _list_layout(schema.field(column), where), id_column
    list_columns = [f.name for f in schema if _is_list(f.type) and f.name != id_column]
    if len(list_columns) > 1:
        raise InputError(
            where,
            f"several list columns ({', '.join(list_columns)}); choose the vectors with --column",
        )
    if list_columns:
        return _list_layout(schema.field(list_columns[0]), where), id_column
    wide = [f for f in schema if f.name != id_column]
    if not wide:
        raise InputError(where, "no vector columns (zero dimensions)")
    for field in wide:
        if _float_dtype(field.type) is None:
            raise InputError(
                where,
                f"column {field.name!r} is {field.type}; the wide layout needs one float column "
                "per dimension (name the id column with --id-column, or the vector column with "
                "--column)",
            )
    dtype = np.result_type(*(_float_dtype(f.type) for f in wide))
    return _Layout("wide", tuple(f.name for f in wide), dtype, len(wide)), id_column


def _list_layout(field: pa.Field, where: str) -> _Layout:
    if not _is_list(field.type):
        raise InputError(
            where,
            f"column {field.name!r} is {field.type}; expected a list or fixed_size_list of floats",
        )
    dtype = _float_dtype(field.type.value_type)
    if dtype is None:
        raise InputError(
            where,
            f"column {field.name!r} holds {field.type.value_type} values; expected float16, "
            "float32 or float64",
        )
    if pa.types.is_fixed_size_list(field.type):
        return _Layout("fixed_size_list", (field.name,), dtype, field.type.list_size)
    return _Layout("list", (field.name,), dtype, None)


class ParquetSource(EmbeddingSource):
    """A parquet file or a directory of parquet files (read in path order)."""

    format = "parquet"

    def __init__(
        self, path: Path, *, column: str | None = None, id_column: str | None = None
    ) -> None:
        self.path = str(path)
        files = list_parquet_files(path) if path.is_dir() else [path]
        self._fragments: list[_Fragment] = []
        layout: _Layout | None = None
        start = 0
        for file in files:
            parquet_file = _open(file)
            schema = parquet_file.schema_arrow
            file_layout, file_id_column = _layout(schema, str(file), column, id_column)
            file_id_type = None if file_id_column is None else schema.field(file_id_column).type
            if layout is None:
                layout, self.id_column, id_type = file_layout, file_id_column, file_id_type
                first_file = file
            elif file_layout != layout:
                raise InputError(file, _mismatch(file_layout, layout, first_file))
            elif (file_id_column, file_id_type) != (self.id_column, id_type):
                raise InputError(
                    file,
                    f"id column {_describe_id(file_id_column, file_id_type)} differs from "
                    f"{first_file} ({_describe_id(self.id_column, id_type)})",
                )
            metadata = parquet_file.metadata
            sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
            group_starts = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.int64)
            self._fragments.append(
                _Fragment(file, parquet_file, start, metadata.num_rows, group_starts)
            )
            start += metadata.num_rows
        assert layout is not None
        self._layout = layout
        self.dtype = layout.dtype
        self.n = start
        d = layout.d if layout.d is not None else self._first_list_length()
        self.n, self.d = check_shape((self.n, d), self.path, "data")
        self._starts = np.array([f.start for f in self._fragments], dtype=np.int64)
        self._ids: pa.ChunkedArray | None = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["files"] = len(self._fragments)
        info["layout"] = self._layout.kind
        if self._layout.kind != "wide":
            info["column"] = self._layout.columns[0]
        return info

    def _first_list_length(self) -> int:
        for fragment in self._fragments:
            if fragment.n == 0:
                continue
            column = self._layout.columns[0]
            with _reading(fragment.path):
                batch = next(fragment.file.iter_batches(batch_size=1, columns=[column]))
            values = batch.column(0)
            if values.null_count:
                raise InputError(fragment.path, f"column {column!r}: null vector at row 0")
            length = int(pc.list_value_length(values)[0].as_py())
            if length == 0:
                raise InputError(fragment.path, f"column {column!r}: empty vector at row 0")
            return length
        return 0

    # Reading ----------------------------------------------------------------------------------

    def _to_numpy(
        self, batch: pa.RecordBatch, fragment: _Fragment, first_row: int
    ) -> npt.NDArray[np.floating[Any]]:
        """Convert a record batch to an (rows, d) array, rejecting nulls and ragged rows."""
        d = self.d

        def fail(problem: str, local_rows: npt.NDArray[np.bool_]) -> InputError:
            row = first_row + int(np.flatnonzero(local_rows)[0])
            group = int(np.searchsorted(fragment.row_group_starts, row, side="right")) - 1
            return InputError(fragment.path, f"{problem} at row {row} (row group {group})")

        if self._layout.kind == "wide":
            out = np.empty((batch.num_rows, d), dtype=self.dtype)
            for j, name in enumerate(self._layout.columns):
                values = batch.column(name)
                if values.null_count:
                    nulls = values.is_null().to_numpy(zero_copy_only=False)
                    raise fail(f"column {name!r}: null value", nulls)
                out[:, j] = values.to_numpy(zero_copy_only=False)
            return out
        name = self._layout.columns[0]
        values = batch.column(name)
        if values.null_count:
            raise fail(f"column {name!r}: null vector", values.is_null().to_numpy(False))
        if self._layout.kind == "list":
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            if np.any(lengths != d):
                bad = lengths != d
                found = int(lengths[np.flatnonzero(bad)[0]])
                raise fail(f"column {name!r}: ragged vectors ({found} values, expected {d})", bad)
        flat = values.flatten()
        if flat.null_count:
            inner = flat.is_null().to_numpy(zero_copy_only=False).reshape(-1, d).any(axis=1)
            raise fail(f"column {name!r}: null value inside a vector", inner)
        array = flat.to_numpy(zero_copy_only=False).reshape(-1, d)
        return np.ascontiguousarray(array, dtype=self.dtype)

    def _columns(self) -> list[str]:
        return list(self._layout.columns)

    def chunks(self, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        for fragment in self._fragments:
            local = 0
            with _reading(fragment.path):
                for batch in fragment.file.iter_batches(batch_size=step, columns=self._columns()):
                    values = self._to_numpy(batch, fragment, local)
                    yield Chunk(fragment.start + local, values)
                    local += batch.num_rows
            if local != fragment.n:
                raise InputError(
                    fragment.path, f"read {local} rows but the footer promises {fragment.n}"
                )

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        out = np.empty((len(positions), self.d), dtype=self.dtype)
        order = np.argsort(positions, kind="stable")
        sorted_positions = positions[order]
        file_index = np.searchsorted(self._starts, sorted_positions, side="right") - 1
        for f in np.unique(file_index):
            fragment = self._fragments[f]
            in_file = np.flatnonzero(file_index == f)
            local = sorted_positions[in_file] - fragment.start
            group_index = np.searchsorted(fragment.row_group_starts, local, side="right") - 1
            for g in np.unique(group_index):
                in_group = np.flatnonzero(group_index == g)
                group_start = int(fragment.row_group_starts[g])
                with _reading(fragment.path):
                    table = fragment.file.read_row_group(int(g), columns=self._columns())
                for batch in table.combine_chunks().to_batches():
                    values = self._to_numpy(batch, fragment, group_start)
                    out[order[in_file[in_group]]] = values[local[in_group] - group_start]
        return out

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        if self.id_column is None:
            return None
        if self._ids is None:
            parts = []
            for fragment in self._fragments:
                with _reading(fragment.path):
                    parts.append(fragment.file.read(columns=[self.id_column]).column(0))
            self._ids = pa.chunked_array(
                [chunk for part in parts for chunk in part.chunks], type=parts[0].type
            )
        positions = as_row_positions(rows, self.n)
        return [_json_safe(value) for value in self._ids.take(pa.array(positions)).to_pylist()]


#: Read-ahead of the parquet reader. Pre-buffering whole column chunks (pyarrow's default)
#: keeps every row group read so far alive while a file is iterated; a bounded stream does not.
_READ_BUFFER_BYTES = 4 * 2**20


def _open(file: Path) -> pq.ParquetFile:
    with _reading(file):
        return pq.ParquetFile(file, pre_buffer=False, buffer_size=_READ_BUFFER_BYTES)


class _reading:
    """Turn pyarrow's read errors into input errors that name the file."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if isinstance(error, pa.ArrowException | OSError) and not isinstance(error, InputError):
            text = str(error).strip()
            message = text.splitlines()[0] if text else type(error).__name__
            raise InputError(self.file, f"cannot read parquet: {message}") from None


def _describe_id(name: str | None, arrow_type: pa.DataType | None) -> str:
    return "absent" if name is None else f"{name!r} ({arrow_type})"


def _json_safe(value: Any) -> Any:
    """Ids as JSON can carry them: numbers and strings as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _mismatch(found: _Layout, expected: _Layout, first_file: Path) -> str:
    if found.kind == expected.kind and found.columns == expected.columns and found.d != expected.d:
        return (
            f"column {found.columns[0]!r} has dimension {found.d}, but {first_file} has "
            f"{expected.d}"
        )
    return (
        f"schema differs from {first_file} ({found.kind} {list(found.columns)[:4]} "
        f"{found.dtype.name} vs {expected.kind} {list(expected.columns)[:4]} {expected.dtype.name})"
    )
