"""The connection to PostgreSQL and what its catalog says about the table: the URI without its
password, one read-only ``REPEATABLE READ`` transaction, database errors as input errors that name
the table, and the table's columns, vector column, key, id column and vector indexes
(``hnsw``, ``ivfflat``) with their operator class and settings.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from embaudit.errors import InputError
from embaudit.sources.postgres.binary import KINDS, _Kind, _kind_name
from embaudit.sources.readers import ReadErrors, optional_library

INSTALL = "pip install 'embaudit[pgvector]'"
SCHEMES = ("postgresql://", "postgres://")

#: Seconds to wait for a server that does not answer, unless the URI says otherwise.
CONNECT_TIMEOUT = 10

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
    return optional_library("psycopg", where, f"reading PostgreSQL needs psycopg: {INSTALL}")


class TableCatalog:
    """The connection half of :class:`~embaudit.sources.postgres.reading.PostgresSource`: one
    read-only ``REPEATABLE READ`` transaction, errors on one line without a password, and what the
    catalog says about the table (its columns, the vector column, the key, the id column, the
    vector indexes on the vector column).

    The attributes below are set by the source as it opens (``PostgresSource.__init__``)."""

    _psycopg: Any
    _connection: Any
    _uri: str
    _where: str
    _secrets: list[str]
    _column: str
    _order: str | None

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


class _Reading(ReadErrors):
    """Turn database errors into input errors that name the table (as the source names it when
    the error comes), without a password."""

    def __init__(self, source: TableCatalog) -> None:
        self.source = source

    def problem(self, error: BaseException) -> InputError | None:
        if not isinstance(error, self.source._psycopg.Error):
            return None
        return InputError(self.source._where, f"cannot read: {self.source._text(error)}")


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
