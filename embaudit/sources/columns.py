"""Vectors held in Arrow columns: the layouts parquet, JSON Lines, CSV and Lance share.

Three layouts are read: a ``fixed_size_list<float>`` column, a ``list<float>`` or
``large_list<float>`` column (every row the same length), or all-float "wide" columns, one per
dimension. An id column is optional: the one named by ``--id-column``, else a column called ``id``
when there is one. A null vector reads as a row of NaN and a null value as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from embaudit.errors import InputError
from embaudit.sources.base import FLOAT_DTYPES, RaggedRow

DEFAULT_ID_COLUMN = "id"


@dataclass(frozen=True)
class Layout:
    kind: str  # "fixed_size_list", "list" or "wide"
    columns: tuple[str, ...]  # the vector column, or the wide columns in order
    dtype: np.dtype[Any]
    d: int | None  # None for list columns until a row has been read


def float_dtype(arrow_type: pa.DataType) -> np.dtype[Any] | None:
    if not pa.types.is_floating(arrow_type):
        return None
    dtype = np.dtype(arrow_type.to_pandas_dtype())
    return dtype if dtype in FLOAT_DTYPES else None


def is_list(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )


def id_column_of(
    names: list[str], where: str, column: str | None, id_column: str | None
) -> str | None:
    """The id column: the one named (which must exist), else ``id`` when there is one."""
    if id_column is not None and id_column not in names:
        raise InputError(
            where, f"--id-column {id_column!r} not found; columns are: {', '.join(names)}"
        )
    if id_column is None and DEFAULT_ID_COLUMN in names and column != DEFAULT_ID_COLUMN:
        return DEFAULT_ID_COLUMN
    return id_column


def id_candidates(schema: pa.Schema, layout: Layout, id_column: str | None) -> tuple[str, ...]:
    """The columns of ``schema`` that could name the rows: integers or strings, neither the
    vectors nor the id column."""
    taken = {*layout.columns, id_column}
    return tuple(
        field.name
        for field in schema
        if field.name not in taken
        and (
            pa.types.is_integer(field.type)
            or pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
        )
    )


def layout_of(
    schema: pa.Schema, where: str, column: str | None, id_column: str | None
) -> tuple[Layout, str | None]:
    """The vector layout of a schema and its id column (see the module's docstring)."""
    names = schema.names
    id_column = id_column_of(names, where, column, id_column)
    if column is not None:
        if column not in names:
            raise InputError(
                where, f"--column {column!r} not found; columns are: {', '.join(names)}"
            )
        if column == id_column:
            raise InputError(where, f"column {column!r} cannot be both the vectors and the ids")
        return list_layout(schema.field(column), where), id_column
    list_columns = [f.name for f in schema if is_list(f.type) and f.name != id_column]
    if len(list_columns) > 1:
        raise InputError(
            where,
            f"several list columns ({', '.join(list_columns)}); choose the vectors with --column",
        )
    if list_columns:
        return list_layout(schema.field(list_columns[0]), where), id_column
    wide = [f for f in schema if f.name != id_column]
    if not wide:
        raise InputError(where, "no vector columns (zero dimensions)")
    for field in wide:
        if float_dtype(field.type) is None:
            raise InputError(
                where,
                f"column {field.name!r} is {field.type}; the wide layout needs one float column "
                "per dimension (name the id column with --id-column, or the vector column with "
                "--column)",
            )
    dtype = np.result_type(*(float_dtype(f.type) for f in wide))
    return Layout("wide", tuple(f.name for f in wide), dtype, len(wide)), id_column


def list_layout(field: pa.Field, where: str) -> Layout:
    if not is_list(field.type):
        raise InputError(
            where,
            f"column {field.name!r} is {field.type}; expected a list or fixed_size_list of floats",
        )
    dtype = float_dtype(field.type.value_type)
    if dtype is None:
        raise InputError(
            where,
            f"column {field.name!r} holds {field.type.value_type} values; expected float16, "
            "float32 or float64",
        )
    if pa.types.is_fixed_size_list(field.type):
        return Layout("fixed_size_list", (field.name,), dtype, field.type.list_size)
    return Layout("list", (field.name,), dtype, None)


def first_length(vectors: pa.Array) -> int | None:
    """The length of the first vector that is not null in a list array, None when all are."""
    present = np.flatnonzero(vectors.is_valid().to_numpy(zero_copy_only=False))
    if not len(present):
        return None
    return int(pc.list_value_length(vectors.slice(int(present[0]), 1))[0].as_py())


def batch_matrix(
    batch: pa.RecordBatch | pa.Table, layout: Layout, d: int, dtype: np.dtype[Any]
) -> npt.NDArray[np.floating[Any]]:
    """An (rows, d) array of ``dtype`` from the layout's columns of a batch.

    A null vector becomes a row of NaN and a null value becomes NaN (pandas writes NaN inside
    a list as a null): bad data that EA001 reports by row, not a bad file. A vector of another
    length raises :class:`RaggedRow` with its row in the batch."""
    if layout.kind == "wide":
        out = np.empty((batch.num_rows, d), dtype=dtype)
        for j, name in enumerate(layout.columns):
            out[:, j] = floats(_whole(batch.column(name)), dtype)
        return out
    vectors = _whole(batch.column(layout.columns[0]))
    present: npt.NDArray[np.bool_] | None = None
    if vectors.null_count:  # a null vector's slot may hold any number of values: drop it
        present = vectors.is_valid().to_numpy(zero_copy_only=False)
        vectors = vectors.filter(pa.array(present))
    if layout.kind == "list":
        lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != d)
        if len(bad):
            local = int(bad[0] if present is None else np.flatnonzero(present)[bad[0]])
            raise RaggedRow(local, int(lengths[bad[0]]))
    array = floats(vectors.flatten(), dtype).reshape(-1, d)
    if present is None:
        return np.ascontiguousarray(array, dtype=dtype)
    out = np.full((batch.num_rows, d), np.nan, dtype=dtype)
    out[present] = array
    return out


def _whole(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A table's column as one array (a record batch's already is one)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values


def floats(values: pa.Array, dtype: np.dtype[Any]) -> npt.NDArray[np.floating[Any]]:
    """The values of a float array as numpy, a null as NaN."""
    array = values.to_numpy(zero_copy_only=False)
    if values.null_count:
        array = np.array(array, dtype=dtype)  # a writable copy
        array[values.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return array
