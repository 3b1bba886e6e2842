"""Vectors held in memory: a numpy array, or a column of vectors as pandas and pyarrow hold
them (a Series of arrays or lists, a list or fixed-size-list array, a table or DataFrame with
``column`` naming the vectors and ``id_column`` the ids).

A column is read as a parquet column is (:mod:`embaudit.sources.columns`): a null vector, or a
null value inside one, becomes a row of NaN that EA001 reports by position (or id), never an
error; an id column gives the findings their ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.params import ParameterError
from embaudit.sources.arrays import ArraySource
from embaudit.sources.base import RaggedRow, as_row_positions, json_safe

#: The name the vectors of a bare column (a Series, an array) take in the table it is read as.
_VECTORS = "vectors"


class ColumnSource(ArraySource):
    """The vectors of an in-memory column, with the ids of ``id_column`` when there is one."""

    def __init__(self, array: npt.NDArray[Any], ids: list[Any] | None, id_column: str | None):
        super().__init__(array)
        self._row_ids = ids
        self.id_column = id_column

    def ids(self, rows: npt.NDArray[np.integer[Any]]) -> list[Any] | None:
        if self._row_ids is None:
            return None
        return [self._row_ids[row] for row in as_row_positions(rows, self.n).tolist()]


def open_in_memory(source: Any, *, column: str | None, id_column: str | None) -> ArraySource:
    """An in-memory object as a source (see the module's docstring). ``column`` and
    ``id_column`` apply to tables and DataFrames only."""
    import pyarrow as pa

    columns = table_columns(source)
    if columns is None:
        for name, option in (("column", column), ("id_column", id_column)):
            if option is not None:
                raise ParameterError(name, "applies to files and tables, not arrays")
        if isinstance(source, pa.ChunkedArray | pa.Array) or _is_pandas(source, "Series"):
            return _column_source(_as_table(source, None), _VECTORS, None)
        return ArraySource(_numeric(source))
    names = [str(name) for name in columns]
    for name, option in (("column", column), ("id_column", id_column)):
        if option is not None and option not in names:
            raise ParameterError(
                name, f"{option!r} is not a column of the table; it has {', '.join(names)}"
            )
    if column is None:
        if len(columns) != 1:
            kind = "table" if isinstance(source, pa.Table) else "DataFrame"
            raise InputError(
                None, f"a {kind} of {len(columns)} columns: name the vectors' with column="
            )
        column = names[0]
    wanted = [columns[names.index(name)] for name in (column, id_column) if name is not None]
    return _column_source(_as_table(source, wanted), column, id_column)


def table_columns(source: Any) -> list[Any] | None:
    """The column names of a pyarrow table or a pandas DataFrame (None for anything else)."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return list(source.column_names)
    if _is_pandas(source, "DataFrame"):
        return list(source.columns)
    return None


def _is_pandas(source: Any, kind: str) -> bool:
    return type(source).__module__.startswith("pandas") and type(source).__name__ == kind


def _as_table(source: Any, wanted: list[Any] | None) -> Any:
    """``source`` as a pyarrow table: a column alone as the table's ``vectors``, a table or a
    DataFrame cut to the ``wanted`` columns and named as the user sees them (strings)."""
    import pyarrow as pa

    try:
        if wanted is None:
            if _is_pandas(source, "Series"):
                source = pa.array(list(source), from_pandas=True)
            return pa.table({_VECTORS: source})
        if isinstance(source, pa.Table):
            return source.select(wanted)
        picked = source[wanted]
        picked.columns = [str(name) for name in wanted]
        return pa.Table.from_pandas(picked, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InputError(None, f"cannot read the vectors as (n, d) floats ({exc})") from None


def _column_source(table: Any, column: str, id_column: str | None) -> ArraySource:
    """The vectors of ``table[column]`` (null vectors as rows of NaN) and its ids."""
    import pyarrow as pa

    from embaudit.sources.columns import batch_matrix, first_length, is_list, layout_of

    field = table.schema.field(column)
    if pa.types.is_null(field.type):  # every vector None (or none at all): no dimension to read
        raise InputError(None, f"no vectors to read: {table.num_rows} rows, every one null")
    if not is_list(field.type):
        return ArraySource(_numeric(table.column(column)))
    if pa.types.is_integer(field.type.value_type):  # Python ints in lists: read as floats
        table = table.set_column(
            table.schema.get_field_index(column),
            column,
            table.column(column).cast(pa.list_(pa.float64())),
        )
    layout, id_column = layout_of(table.schema, "table", column, id_column)
    d = layout.d
    if d is None:
        d = first_length(table.column(column).combine_chunks()) or 0
    if table.num_rows == 0 or d == 0:
        raise InputError(
            None,
            f"no vectors to read: {table.num_rows} rows, every vector null or empty"
            if table.num_rows
            else "no vectors to read (zero rows)",
        )
    try:
        matrix = batch_matrix(table.select([column]), layout, d, layout.dtype)
    except RaggedRow as ragged:
        raise InputError(
            None,
            f"column {column!r}: vectors of different lengths ({ragged.found} values at row "
            f"{ragged.row}, {d} before it)",
        ) from None
    ids = None
    if id_column is not None:
        ids = [json_safe(value) for value in table.column(id_column).to_pylist()]
    return ColumnSource(matrix, ids, id_column)


def _numeric(source: Any) -> npt.NDArray[Any]:
    try:
        return np.asarray(source)
    except (ValueError, TypeError) as exc:
        raise InputError(None, f"cannot read the array as (n, d) floats ({exc})") from None
