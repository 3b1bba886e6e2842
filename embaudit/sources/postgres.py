"""PostgreSQL tables with pgvector, read over a real connection through psycopg (extra
``embaudit[pgvector]``).

``embaudit check postgresql://USER@HOST/DB --table TABLE [--column COLUMN] [--id-column ID]``:
any libpq URI; the password comes from the environment (``PGPASSWORD``), ``~/.pgpass`` or the
URI, and is never printed (it is scrubbed from ``input.path`` and from every message). Columns of
type ``vector``, ``halfvec``, ``real[]`` or ``double precision[]`` are read in their binary form
(``vector_send``, …) and decoded in bulk.

Everything happens in one read-only ``REPEATABLE READ`` transaction, so every pass sees the same
snapshot of the table. Rows are ordered by the primary key when it is one column, else by
``ctid`` (the physical position); that order is what row positions, ``take`` and ``ids`` refer
to. Opening reads the ordered keys once (an index-only scan of the primary key); fragments are
ranges of keys, each read with one ordered range query, streamed by a server-side cursor or a
binary ``COPY`` (see :data:`FETCH`).

The table's vector indexes (``hnsw`` with ``m`` / ``ef_construction``, ``ivfflat`` with
``lists``) are read from the catalog with their operator class (``vector_l2_ops``,
``vector_ip_ops``, ``vector_cosine_ops``, …) and reported in ``input.index``, with the metric
in ``--index-metric``'s names and the faiss ``index_factory`` string of the same structure.
"""

from __future__ import annotations

import os
import re
import struct
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.errors import InputError
from embaudit.params import ParameterError
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    StoredIndex,
    as_row_positions,
    check_shape,
    exact_chunks,
)
from embaudit.sources.columns import RaggedRow, json_safe

INSTALL = "pip install 'embaudit[pgvector]'"
SCHEMES = ("postgresql://", "postgres://")

#: How a fragment's rows travel: "cursor" (a server-side cursor, fetched in batches) or "copy"
#: (a binary COPY of the ordered range query). benchmarks/bench_sources.py measures both; the
#: faster one is the default (benchmarks/RESULTS.md).
FETCH = "copy"

#: Target size of a fragment, in bytes of vectors.
FRAGMENT_BYTES = 64 * 2**20
#: Keys sent at once by ``take`` and ``ids``.
_TAKE_KEYS = 10_000
#: Seconds to wait for a server that does not answer, unless the URI says otherwise.
CONNECT_TIMEOUT = 10

_INT_TYPES = ("smallint", "integer", "bigint")


@dataclass(frozen=True)
class _Kind:
    """A vector column type: its binary form and the dtype of its chunks."""

    name: str  # "vector", "halfvec", "real[]" or "double precision[]"
    value: np.dtype[Any]  # one element, as sent (big-endian)
    array: bool  # array_send's layout, else pgvector's (int16 dim, int16 unused, values)


KINDS = {
    "vector": _Kind("vector", np.dtype(">f4"), False),
    "halfvec": _Kind("halfvec", np.dtype(">f2"), False),
    "real[]": _Kind("real[]", np.dtype(">f4"), True),
    "double precision[]": _Kind("double precision[]", np.dtype(">f8"), True),
}

#: pgvector's search defaults, where the server sets none (hnsw.ef_search, ivfflat.probes).
HNSW_EF_SEARCH, IVFFLAT_PROBES = 40, 1

#: pgvector operator classes and the metric they rank with, in --index-metric's names.
OPCLASS_METRICS = {"l2": "l2", "ip": "ip", "cosine": "cosine", "l1": "l1"}


def is_postgres(location: str) -> bool:
    return location.lower().startswith(SCHEMES)


def scrub(uri: str) -> str:
    """The URI without its password (in the user part or as a ``password=`` parameter)."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in query if name.lower() != "password"]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(kept, safe="/:"), parts.fragment)
    )


def _password(uri: str) -> str | None:
    parts = urllib.parse.urlsplit(uri)
    for name, value in urllib.parse.parse_qsl(parts.query):
        if name.lower() == "password":
            return value
    return parts.password


def _psycopg(where: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise InputError(where, f"reading PostgreSQL needs psycopg: {INSTALL}") from None
    return psycopg


class PostgresSource(EmbeddingSource):
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
    ) -> None:
        self.path = self._uri = scrub(uri)
        self._secrets = [s for s in (_password(uri), os.environ.get("PGPASSWORD")) if s]
        if table is None:
            raise ParameterError(
                "table", f"is needed to read a PostgreSQL database ({self._uri})", "--table"
            )
        self._fetch = fetch or FETCH
        self._psycopg = _psycopg(self._uri)
        self._connection = self._connect(uri)
        self._where = f"{self._uri}[{table}]"
        with self._reading():
            self._table, relation = self._relation(table)
            self.path = self._where = f"{self._uri}[{self._table}]"
            attributes = self._attributes(relation)
            self._column, self._kind, self._send, typmod = self._vector_column(attributes, column)
            self._order, self._order_type = self._order_key(relation)
            self.id_column = self._id_column(attributes, id_column)
            self._keys = self._load_keys()
            self.n = len(self._keys)
            d = typmod if typmod > 0 else self._first_length()
            self.n, self.d = check_shape((self.n, d), self._where, "table")
            self.dtype = self._kind.value.newbyteorder("=")
            self._fragments = self._cut()
            self.indexes = self._indexes(relation)

    # Connecting --------------------------------------------------------------------------------

    def _connect(self, uri: str) -> Any:
        psycopg = self._psycopg
        settings: dict[str, Any] = {"application_name": "embaudit"}
        try:
            given = psycopg.conninfo.conninfo_to_dict(uri)
        except psycopg.ProgrammingError as exc:
            raise InputError(self._uri, f"not a valid PostgreSQL URI ({self._text(exc)})") from None
        if "connect_timeout" not in given:
            settings["connect_timeout"] = CONNECT_TIMEOUT
        try:
            connection = psycopg.connect(uri, autocommit=False, **settings)
        except psycopg.Error as exc:
            raise InputError(self._uri, f"cannot connect: {self._text(exc)}") from None
        # One read-only snapshot for every pass: the rows cannot change under the audit.
        connection.read_only = True
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return connection

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a PostgreSQL source holds a connection and stays in its process")

    def close(self) -> None:
        """End the transaction (nothing was written) and the connection."""
        if not self._connection.closed:
            self._connection.rollback()
            self._connection.close()

    def __del__(self) -> None:
        connection = getattr(self, "_connection", None)
        if connection is not None and not connection.closed:
            connection.close()

    def _text(self, error: BaseException) -> str:
        """An error's message on one line, without a password."""
        text = " ".join(str(error).split())
        text = re.sub(r"^connection failed: ", "", text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text or type(error).__name__

    def _reading(self) -> _Reading:
        return _Reading(self)

    def _query(self, statement: Any, params: Any = None, *, binary: bool = False) -> list[Any]:
        with self._connection.cursor(binary=binary) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    # The table ---------------------------------------------------------------------------------

    def _relation(self, table: str) -> tuple[str, int]:
        rows = self._query(
            "SELECT c.oid::regclass::text, c.oid::bigint, c.relkind FROM pg_class c "
            "WHERE c.oid = to_regclass(%s)",
            (table,),
        )
        if not rows:
            raise InputError(self._where, f"table {table!r} not found")
        name, oid, kind = rows[0]
        if kind not in ("r", "p", "v", "m", "f"):
            raise InputError(self._where, f"{table!r} is not a table or view")
        return str(name), int(oid)

    def _attributes(self, relation: int) -> list[tuple[str, str, int, str, int]]:
        """(name, type as written, typmod, binary output function, number) of each column."""
        rows = self._query(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.atttypmod, t.typsend::text, "
            "a.attnum FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (relation,),
        )
        return [(str(n), str(t), int(m), str(s), int(k)) for n, t, m, s, k in rows]

    def _vector_column(
        self, attributes: list[tuple[str, str, int, str, int]], column: str | None
    ) -> tuple[str, _Kind, str, int]:
        names = [a[0] for a in attributes]
        vectors = [a for a in attributes if _kind_name(a[1]) in KINDS]
        if column is None:
            if len(vectors) != 1:
                found = ", ".join(f"{a[0]} ({a[1]})" for a in vectors) or "none"
                raise InputError(
                    self._where,
                    f"{len(vectors) or 'no'} vector columns ({found}); "
                    + (
                        "choose one with --column"
                        if vectors
                        else "columns are: " + ", ".join(names)
                    ),
                )
            chosen = vectors[0]
        else:
            matches = [a for a in attributes if a[0] == column]
            if not matches:
                raise InputError(
                    self._where, f"--column {column!r} not found; columns are: {', '.join(names)}"
                )
            chosen = matches[0]
            if _kind_name(chosen[1]) not in KINDS:
                raise InputError(
                    self._where,
                    f"column {column!r} is {chosen[1]}; expected vector, halfvec, real[] or "
                    "double precision[]",
                )
        name, type_name, typmod, send, _ = chosen
        kind = KINDS[_kind_name(type_name)]
        return name, kind, send, typmod if not kind.array else -1

    def _order_key(self, relation: int) -> tuple[str | None, str | None]:
        """The primary key column and its type when the key is one column; (None, None) for
        ctid order."""
        rows = self._query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s AND i.indisprimary",
            (relation,),
        )
        if len(rows) == 1:
            return str(rows[0][0]), str(rows[0][1])
        return None, None

    def _id_column(
        self, attributes: list[tuple[str, str, int, str, int]], id_column: str | None
    ) -> str | None:
        """The id column: the one named, else the primary key when it is one column."""
        names = [a[0] for a in attributes]
        if id_column is not None and id_column not in names:
            raise InputError(
                self._where,
                f"--id-column {id_column!r} not found; columns are: {', '.join(names)}",
            )
        if id_column == self._column:
            raise InputError(
                self._where, f"column {id_column!r} cannot be both the vectors and the ids"
            )
        return id_column if id_column is not None else self._order

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
        statement = sql.SQL("SELECT {key} FROM {table} ORDER BY {order}").format(
            key=self._key_expression(), table=sql.SQL(self._table), order=self._order_by()
        )
        rows = self._query(statement, binary=True)
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

    def _indexes(self, relation: int) -> list[dict[str, Any]]:
        """The hnsw / ivfflat indexes on the vector column (or an expression of it)."""
        rows = self._query(
            "SELECT c.relname, am.amname, opc.opcname, c.reloptions, "
            "pg_get_expr(x.indexprs, x.indrelid), pg_get_expr(x.indpred, x.indrelid), "
            "x.indkey[0] = a.attnum "
            "FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam JOIN pg_opclass opc ON opc.oid = x.indclass[0] "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attname = %s "
            "WHERE x.indrelid = %s AND am.amname IN ('hnsw', 'ivfflat') ORDER BY c.relname",
            (self._column, relation),
        )
        searched = self._query(
            "SELECT current_setting('hnsw.ef_search', true), "
            "current_setting('ivfflat.probes', true)"
        )[0]
        found = []
        for name, method, opclass, options, expression, predicate, on_column in rows:
            if not on_column and not (expression and _mentions(expression, self._column)):
                continue
            info = _index_info(str(name), str(method), str(opclass), options, expression, predicate)
            # The search setting queries get: the server's (pgvector's defaults: 40 and 1).
            if method == "hnsw":
                info["ef_search"] = int(searched[0] or HNSW_EF_SEARCH)
            else:
                info["probes"] = int(searched[1] or IVFFLAT_PROBES)
            found.append(info)
        return found

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

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["table"] = self._table
        info["column"] = self._column
        info["column_type"] = self._kind.name
        info["order"] = f"primary key {self._order}" if self._order else "ctid"
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
            "{order} <= {high}::{cast} ORDER BY {order}"
        ).format(
            send=sql.SQL(self._send),
            column=sql.Identifier(self._column),
            table=sql.SQL(self._table),
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


class _Reading:
    """Turn database errors into input errors that name the table, without a password."""

    def __init__(self, source: PostgresSource) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if isinstance(error, self.source._psycopg.Error):
            message = self.source._text(error)
            raise InputError(self.source._where, f"cannot read: {message}") from None


# Decoding ------------------------------------------------------------------------------------


def _kind_name(type_name: str) -> str:
    """``vector(384)`` → ``vector``; ``real[]`` and ``double precision[]`` as they are."""
    return type_name.split("(")[0].strip() if "[" not in type_name else type_name


def _length(value: bytes, kind: _Kind) -> int:
    if kind.array:
        ndim = struct.unpack(">i", value[:4])[0]
        return struct.unpack(">i", value[12:16])[0] if ndim == 1 else 0
    return int(struct.unpack(">H", value[:2])[0])


def decode(values: list[Any], kind: _Kind, d: int) -> npt.NDArray[np.floating[Any]]:
    """(rows, d) values from their binary form (``vector_send``, ``halfvec_send``,
    ``array_send``); a null vector or element is NaN. Rows of the usual size are decoded in
    bulk; others (nulls inside an array) one by one."""
    dtype = kind.value.newbyteorder("=")
    out = np.full((len(values), d), np.nan, dtype=dtype)
    size = kind.value.itemsize
    header, stride = (20, 4 + size) if kind.array else (4, size)
    expected = header + d * stride
    regular = [i for i, v in enumerate(values) if v is not None and len(v) == expected]
    if regular:
        raw = np.frombuffer(b"".join(bytes(values[i]) for i in regular), dtype=np.uint8)
        raw = raw.reshape(len(regular), expected)
        heads = np.ascontiguousarray(raw[:, :header]).view(">i4" if kind.array else ">u2")
        if kind.array:
            bad = np.flatnonzero((heads[:, 0] != 1) | (heads[:, 1] != 0) | (heads[:, 3] != d))
        else:
            bad = np.flatnonzero(heads[:, 0] != d)
        if len(bad):  # the same size by chance: decode those one by one
            regular = [r for j, r in enumerate(regular) if j not in set(bad.tolist())]
            raw = np.delete(raw, bad, axis=0)
        body = raw[:, header:].reshape(len(regular), d, stride)[:, :, stride - size :]
        out[regular] = np.ascontiguousarray(body).view(kind.value).reshape(len(regular), d)
    done = set(regular)
    for row, value in enumerate(values):
        if value is not None and row not in done:
            out[row] = _decode_one(bytes(value), kind, d, row)
    return out


def _decode_one(value: bytes, kind: _Kind, d: int, row: int) -> npt.NDArray[Any]:
    if not kind.array:
        found = int(struct.unpack(">H", value[:2])[0])
        if found != d:
            raise RaggedRow(row, found)
        return np.frombuffer(value[4:], dtype=kind.value)
    ndim = struct.unpack(">i", value[:4])[0]
    if ndim != 1:
        found = (
            0
            if ndim == 0
            else int(np.prod(struct.unpack(f">{2 * ndim}i", value[12 : 12 + 8 * ndim])[::2]))
        )
        raise RaggedRow(row, found)
    found = struct.unpack(">i", value[12:16])[0]
    if found != d:
        raise RaggedRow(row, found)
    out = np.full(d, np.nan, dtype=kind.value.newbyteorder("="))
    offset = 20
    for j in range(d):
        (length,) = struct.unpack(">i", value[offset : offset + 4])
        offset += 4
        if length >= 0:
            out[j] = np.frombuffer(value[offset : offset + length], dtype=kind.value)[0]
            offset += length
    return out


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


class _CopyParser:
    """The tuples of a binary COPY of one column, as they arrive in blocks of bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._header_read = False
        self._ended = False

    def feed(self, data: bytes) -> list[bytes | None]:
        self._buffer += data
        buffer = self._buffer
        position = 0
        if not self._header_read:
            if len(buffer) < 19:
                return []
            (extension,) = struct.unpack(">i", buffer[15:19])
            position = 19 + extension
            if len(buffer) < position:
                return []
            self._header_read = True
        values: list[bytes | None] = []
        size = len(buffer)
        while position + 2 <= size:
            (fields,) = struct.unpack_from(">h", buffer, position)
            if fields == -1:
                self._ended = True
                position += 2
                break
            if position + 6 > size:
                break
            (length,) = struct.unpack_from(">i", buffer, position + 2)
            end = position + 6 + max(length, 0)
            if end > size:
                break
            values.append(None if length < 0 else buffer[position + 6 : end])
            position = end
        self._buffer = buffer[position:]
        return values

    def finish(self, where: str) -> None:
        if not self._ended or self._buffer:
            raise InputError(where, "the COPY stream ended early")


# Indexes -------------------------------------------------------------------------------------


def _index_info(
    name: str,
    method: str,
    opclass: str,
    options: list[str] | None,
    expression: str | None,
    predicate: str | None,
) -> dict[str, Any]:
    """An index as the report shows it: method, operator class, metric, parameters (pgvector's
    defaults where the index sets none) and the faiss index_factory string of that structure."""
    settings = dict(option.split("=", 1) for option in options or [])
    operator = opclass.rsplit("_ops", 1)[0].rsplit("_", 1)[-1]
    info: dict[str, Any] = {
        "name": name,
        "type": method,
        "opclass": opclass,
        "metric": OPCLASS_METRICS.get(operator, operator),
    }
    if method == "hnsw":
        info["m"] = int(settings.get("m", 16))
        info["ef_construction"] = int(settings.get("ef_construction", 64))
        info["spec"] = f"HNSW{info['m']}"
    else:
        info["lists"] = int(settings.get("lists", 100))
        info["spec"] = f"IVF{info['lists']},Flat"
    if expression:
        info["expression"] = expression
    if predicate:
        info["where"] = predicate
    return info


def _mentions(expression: str, column: str) -> bool:
    return (
        re.search(rf'(?<![\w"]){re.escape(column)}(?![\w"])|"{re.escape(column)}"', expression)
        is not None
    )
