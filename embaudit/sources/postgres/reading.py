"""A PostgreSQL vector column as an :class:`~embaudit.sources.base.EmbeddingSource`: every row's
key read once, in order (the primary key when it is one column, else ``ctid``); fragments as
ranges of keys, each read with one ordered range query in batches (a server-side cursor or a
binary ``COPY``, see :data:`FETCH`); rows and ids at given positions fetched by key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.params import ParameterError
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    LiveIndex,
    RaggedRow,
    StoredIndex,
    as_row_positions,
    check_shape,
    exact_chunks,
    json_safe,
)
from embaudit.sources.postgres.binary import _CopyParser, _length, decode
from embaudit.sources.postgres.catalog import TableCatalog, _password, _psycopg, scrub
from embaudit.sources.postgres.live import OPERATORS, PgvectorIndex

#: How a fragment's rows travel: "cursor" (a server-side cursor, fetched in batches) or "copy"
#: (a binary COPY of the ordered range query). benchmarks/bench_sources.py measures both; the
#: faster one is the default (benchmarks/RESULTS.md).
FETCH = "copy"

#: Target size of a fragment, in bytes of vectors.
FRAGMENT_BYTES = 64 * 2**20
#: Keys sent at once by ``take`` and ``ids``.
_TAKE_KEYS = 10_000

_INT_TYPES = ("smallint", "integer", "bigint")


class PostgresSource(TableCatalog, EmbeddingSource):
    """A vector column of a PostgreSQL table, ordered by its primary key (or ctid)."""

    format = "pgvector"

    def __init__(
        self,
        uri: str,
        *,
        table: str | None,
        column: str | None = None,
        id_column: str | None = None,
        fetch: str | None = None,
        where: str | None = None,
    ) -> None:
        self.path = self._uri = scrub(uri)
        self._secrets = [s for s in (_password(uri), os.environ.get("PGPASSWORD")) if s]
        if table is None:
            raise ParameterError(
                "table", f"is needed to read a PostgreSQL database ({self._uri})", "--table"
            )
        self._fetch = fetch or FETCH
        self._filter = where
        self._psycopg = _psycopg(self._uri)
        self._connection = self._connect(uri)
        self._where = f"{self._uri}[{table}]"
        with self._reading():
            self._table, relation = self._relation(table)
            self.path = self._where = f"{self._uri}[{self._table}]"
            attributes = self._attributes(relation)
            self._column, self._kind, self._send, typmod = self._vector_column(attributes, column)
            self._order, self._order_type = self._order_key(relation)
            self._check_filter()
            self.id_column = self._id_column(attributes, id_column)
            self._keys = self._load_keys()
            self.n = len(self._keys)
            d = typmod if typmod > 0 else self._first_length()
            self.n, self.d = check_shape((self.n, d), self._where, "table")
            self.dtype = self._kind.value.newbyteorder("=")
            self._fragments = self._cut()
            self.indexes = self._indexes(relation)

    # The keys and the fragments ----------------------------------------------------------------

    def _filter_clause(self) -> Any:
        """`` WHERE (filter)`` of ``--where`` (nothing without one), for a statement run with
        parameters (a ``%`` in the filter is doubled)."""
        sql = self._psycopg.sql
        if self._filter is None:
            return sql.SQL("")
        return sql.SQL(" WHERE ({})").format(sql.SQL(self._filter.replace("%", "%%")))

    def _check_filter(self) -> None:
        """Run ``--where`` once on no rows: a filter the server refuses is an input error that
        names it."""
        if self._filter is None:
            return
        sql = self._psycopg.sql
        statement = sql.SQL("SELECT 1 FROM {table}{where} LIMIT 0").format(
            table=sql.SQL(self._table), where=self._filter_clause()
        )
        try:
            self._query(statement, ())
        except self._psycopg.Error as error:
            raise InputError(
                self._where, f"--where {self._filter!r} fails: {self._text(error)}"
            ) from None

    def _order_by(self) -> Any:
        """The ordering expression: the primary key, or ctid."""
        sql = self._psycopg.sql
        return sql.Identifier(self._order) if self._order else sql.SQL("ctid")

    def _key_expression(self) -> Any:
        """The key as fetched: the primary key, or ctid as block << 16 | offset (an int8)."""
        sql = self._psycopg.sql
        if self._order:
            return sql.Identifier(self._order)
        return sql.SQL("(((ctid::text::point)[0]::bigint << 16) | (ctid::text::point)[1]::bigint)")

    def _key_literal(self, key: Any) -> Any:
        """A key as a query parameter (ctid as its text, cast to tid in the query)."""
        if self._order:
            return key.item() if isinstance(key, np.generic) else key
        return f"({int(key) >> 16},{int(key) & 0xFFFF})"

    def _key_cast(self) -> Any:
        sql = self._psycopg.sql
        return sql.SQL(self._order_type or "tid")

    def _load_keys(self) -> Any:
        """Every row's key, in order (numpy int64 for integer keys and ctid, else a list)."""
        sql = self._psycopg.sql
        statement = sql.SQL("SELECT {key} FROM {table}{where} ORDER BY {order}").format(
            key=self._key_expression(),
            table=sql.SQL(self._table),
            where=self._filter_clause(),
            order=self._order_by(),
        )
        rows = self._query(statement, (), binary=True)
        if self._order is None or self._order_type in _INT_TYPES:
            return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        if any(row[0] is None for row in rows):  # a primary key is never null; a view's may be
            raise InputError(self._where, f"key column {self._order!r} holds nulls")
        return [row[0] for row in rows]

    def _first_length(self) -> int:
        sql = self._psycopg.sql
        statement = sql.SQL(
            "SELECT {send}({column}) FROM {table} WHERE {column} IS NOT NULL LIMIT 1"
        )
        rows = self._query(
            statement.format(
                send=sql.SQL(self._send),
                column=sql.Identifier(self._column),
                table=sql.SQL(self._table),
            ),
            binary=True,
        )
        if not rows:
            if self.n:
                raise InputError(self._where, f"column {self._column!r}: every vector is null")
            return 0
        return _length(bytes(rows[0][0]), self._kind)

    def _cut(self) -> list[Fragment]:
        step = max(1, FRAGMENT_BYTES // (self.d * self.dtype.itemsize))
        return [
            Fragment(index, start, min(start + step, self.n), self._where)
            for index, start in enumerate(range(0, self.n, step))
        ]

    # Describing --------------------------------------------------------------------------------

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def stored_index(self) -> StoredIndex | None:
        """The first index on the vector column (by name), as ``input.index`` shows it."""
        if not self.indexes:
            return None
        index = self.indexes[0]
        metric = index["metric"] if index["metric"] in ("cosine", "l2", "ip") else None
        if index["type"] == "hnsw":
            return StoredIndex(
                index["spec"],
                metric,
                build=(("efConstruction", index["ef_construction"]),),
                search=(("efSearch", index["ef_search"]),),
                defaults_from="the server's hnsw.ef_search",
            )
        return StoredIndex(
            index["spec"],
            metric,
            search=(("nprobe", index["probes"]),),
            defaults_from="the server's ivfflat.probes",
        )

    def live_index(self) -> LiveIndex | None:
        """The first index on the vector column, searched through SQL: an hnsw or ivfflat
        index on the column itself (not an expression) of a ``vector`` or ``halfvec`` column,
        ranking by cosine, L2 or inner product. None for the others."""
        if not self.indexes:
            return None
        index = self.indexes[0]
        if (
            "expression" in index
            or index["metric"] not in OPERATORS
            or self._kind.name not in ("vector", "halfvec")
        ):
            return None
        with self._reading():
            return PgvectorIndex(self, index, self._filter)

    def _positions_of(self, keys: list[Any]) -> npt.NDArray[np.int64]:
        """The row positions of ``keys`` as the key expression returns them (-1 for a key the
        audit does not hold)."""
        if isinstance(self._keys, np.ndarray):
            wanted = np.asarray(keys, dtype=np.int64)
            at = np.searchsorted(self._keys, wanted)
            clipped = np.minimum(at, max(self.n - 1, 0))
            found = (at < self.n) & (self._keys[clipped] == wanted) if self.n else at < 0
            return np.where(found, at, -1).astype(np.int64)
        if not hasattr(self, "_key_positions"):
            self._key_positions = {key: row for row, key in enumerate(self._keys)}
        return np.asarray([self._key_positions.get(key, -1) for key in keys], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["table"] = self._table
        info["column"] = self._column
        info["column_type"] = self._kind.name
        info["order"] = f"primary key {self._order}" if self._order else "ctid"
        if self._filter is not None:
            info["where"] = self._filter
        if self.indexes:
            info["index"] = self.indexes[0]
            if len(self.indexes) > 1:
                info["indexes"] = self.indexes
        return info

    # Reading ----------------------------------------------------------------------------------

    def _range_query(self, fragment: Fragment) -> tuple[Any, tuple[Any, Any]]:
        sql = self._psycopg.sql
        statement = sql.SQL(
            "SELECT {send}({column}) FROM {table} WHERE {order} >= {low}::{cast} AND "
            "{order} <= {high}::{cast}{filter} ORDER BY {order}"
        ).format(
            send=sql.SQL(self._send),
            column=sql.Identifier(self._column),
            table=sql.SQL(self._table),
            filter=sql.SQL("")
            if self._filter is None
            else sql.SQL(" AND ({})").format(sql.SQL(self._filter.replace("%", "%%"))),
            order=self._order_by(),
            low=sql.Placeholder(),
            high=sql.Placeholder(),
            cast=self._key_cast(),
        )
        bounds = (
            self._key_literal(self._keys[fragment.start]),
            self._key_literal(self._keys[fragment.stop - 1]),
        )
        return statement, bounds

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        blocks = (
            self._copy(fragment, step) if self._fetch == "copy" else self._cursor(fragment, step)
        )
        read = fragment.start
        for chunk in exact_chunks(blocks, fragment.start, step):
            read = chunk.stop
            yield chunk
        if read != fragment.stop:
            raise InputError(
                self._where,
                f"read {read - fragment.start} rows of a key range that held {fragment.n} "
                "when the audit started",
            )

    def _cursor(self, fragment: Fragment, step: int) -> Iterator[npt.NDArray[Any]]:
        """A fragment through a server-side cursor, ``step`` rows per round trip."""
        statement, bounds = self._range_query(fragment)
        row = fragment.start
        with (
            self._reading(),
            self._connection.cursor(name=f"embaudit_{fragment.index}", binary=True) as cursor,
        ):
            cursor.itersize = step
            cursor.execute(statement, bounds)
            while batch := cursor.fetchmany(step):
                yield self._decode([value for (value,) in batch], row)
                row += len(batch)

    def _copy(self, fragment: Fragment, step: int) -> Iterator[npt.NDArray[Any]]:
        """A fragment through ``COPY (range query) TO STDOUT (FORMAT BINARY)``, decoded ``step``
        rows at a time (libpq hands the stream over in blocks of a row or a few)."""
        sql = self._psycopg.sql
        statement, bounds = self._range_query(fragment)
        copy_statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(statement)
        parser = _CopyParser()
        row = fragment.start
        pending: list[bytes | None] = []
        with self._reading(), self._connection.cursor() as cursor:
            with cursor.copy(copy_statement, bounds) as copy:
                for data in copy:
                    pending += parser.feed(bytes(data))
                    if len(pending) >= step:
                        yield self._decode(pending, row)
                        row += len(pending)
                        pending = []
            parser.finish(self._where)
        if pending:
            yield self._decode(pending, row)

    def _decode(self, values: list[Any], first_row: int) -> npt.NDArray[np.floating[Any]]:
        try:
            return decode(values, self._kind, self.d)
        except RaggedRow as ragged:
            raise InputError(
                self._where,
                f"column {self._column!r}: ragged vectors ({ragged.found} values, expected "
                f"{self.d}) at row {first_row + ragged.row} (key "
                f"{self._key_literal(self._keys[first_row + ragged.row])})",
            ) from None

    def _by_keys(self, positions: Any, selected: Any) -> dict[Any, Any]:
        """``selected`` (an SQL expression) of the rows at sorted, distinct positions, by
        position, fetched ``_TAKE_KEYS`` keys at a time."""
        sql = self._psycopg.sql
        statement = sql.SQL(
            "SELECT {key}, {selected} FROM {table} WHERE {order} = ANY({keys}::{cast}[])"
        ).format(
            key=self._key_expression(),
            selected=selected,
            table=sql.SQL(self._table),
            order=self._order_by(),
            keys=sql.Placeholder(),
            cast=self._key_cast(),
        )
        found: dict[Any, Any] = {}
        with self._reading():
            for begin in range(0, len(positions), _TAKE_KEYS):
                batch = positions[begin : begin + _TAKE_KEYS].tolist()
                wanted = {self._plain(self._keys[p]): p for p in batch}
                literals = [self._key_literal(self._keys[p]) for p in batch]
                for key, value in self._query(statement, (literals,), binary=True):
                    found[wanted[self._plain(key)]] = value
        return found

    @staticmethod
    def _plain(key: Any) -> Any:
        return key.item() if isinstance(key, np.generic) else key

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        unique, inverse = np.unique(positions, return_inverse=True)
        sql = self._psycopg.sql
        selected = sql.SQL("{send}({column})").format(
            send=sql.SQL(self._send), column=sql.Identifier(self._column)
        )
        found = self._by_keys(unique, selected)
        if len(found) != len(unique):
            raise InputError(self._where, "rows vanished from the table during the audit")
        values = self._decode([found[p] for p in unique.tolist()], 0)
        return values[inverse.reshape(-1)]

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        if self.id_column is None:
            return None
        positions = as_row_positions(rows, self.n)
        if self.id_column == self._order:
            return [json_safe(self._plain(self._keys[p])) for p in positions.tolist()]
        unique, inverse = np.unique(positions, return_inverse=True)
        found = self._by_keys(unique, self._psycopg.sql.Identifier(self.id_column))
        ordered = [json_safe(found.get(p)) for p in unique.tolist()]
        return [ordered[i] for i in inverse.reshape(-1).tolist()]
