"""pgvector's own index, searched live: the queries go to the server as
``SELECT key FROM table [WHERE (filter)] ORDER BY column <op> q LIMIT n`` with the operator of the
index's operator class, in the source's read-only transaction (the same snapshot as the rows it
reads), at the search settings the server gives the session (``hnsw.ef_search``,
``ivfflat.probes``, ``hnsw.iterative_scan``) or at one set with ``SET LOCAL`` inside a savepoint
that is rolled back after the batch. Each query is also run under ``EXPLAIN (ANALYZE, TIMING
OFF)``: its execution time on the server, and whether the plan searched the index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.sources.base import LiveIndex, LiveResults

#: The distance operator of each pgvector operator class's metric.
OPERATORS = {"l2": "<->", "ip": "<#>", "cosine": "<=>"}
#: hnsw.ef_search settings a sweep tries (pgvector accepts 1 to 1000).
EF_SEARCH_LADDER = (16, 32, 64, 128, 256, 512, 1000)
#: pgvector's build defaults, the least a stronger HNSW index gets.
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64
#: The iterative-scan modes of each method (pgvector 0.8 and later).
ITERATIVE_MODES = {"hnsw": ("relaxed_order", "strict_order"), "ivfflat": ("relaxed_order",)}
_SAVEPOINT = "embaudit_probe"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def _ladder(info: dict[str, Any]) -> tuple[int, ...]:
    if info["type"] == "hnsw":
        return EF_SEARCH_LADDER
    lists = int(info["lists"])
    ladder = [2**i for i in range(lists.bit_length()) if 2**i <= lists]
    return tuple(ladder if ladder[-1] == lists else [*ladder, lists])


def _uses(plan: Any, index: str) -> bool:
    """Whether an EXPLAIN (FORMAT JSON) plan node, or one below it, scans ``index``."""
    if plan.get("Index Name") == index:
        return True
    return any(_uses(child, index) for child in plan.get("Plans", ()))


class PgvectorIndex(LiveIndex):
    """An hnsw or ivfflat index on a table's vector column, searched through SQL."""

    def __init__(self, source: Any, info: dict[str, Any], where: str | None) -> None:
        """``source`` is the :class:`~embaudit.sources.postgres.reading.PostgresSource` of the
        table (its connection, key and filter), ``info`` its index as the catalog reads it."""
        self._source, self._info = source, info
        self.metric = str(info["metric"])
        self.where = where
        method = str(info["type"])
        self.knob = "hnsw.ef_search" if method == "hnsw" else "ivfflat.probes"
        self.default = int(info["ef_search"] if method == "hnsw" else info["probes"])
        self.ladder = _ladder(info)
        version, iterative, database = source._query(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
            f"current_setting('{method}.iterative_scan', true), current_database()"
        )[0]
        self._version, self._database = str(version or ""), str(database)
        if _version(self._version) >= (0, 8):
            self.iterative = ITERATIVE_MODES[method]
            self.iterative_default = str(iterative or "off")

    def title(self) -> str:
        info = self._info
        if info["type"] == "hnsw":
            built = f"m {info['m']}, ef_construction {info['ef_construction']}"
        else:
            built = f"lists {info['lists']}"
        return f"{info['type']} index {info['name']} ({info['opclass']}, {built})"

    def describe(self) -> dict[str, Any]:
        info = {name: value for name, value in self._info.items() if name != "spec"}
        settings: dict[str, Any] = {self.knob: self.default}
        if self.iterative_default is not None:
            settings[f"{self._info['type']}.iterative_scan"] = self.iterative_default
        info |= {"probed": "live", "pgvector": self._version, "search_settings": settings}
        if self.where is not None:
            info["filter"] = self.where
        return info

    def _statement(self, explain: bool) -> Any:
        source = self._source
        sql = source._psycopg.sql
        cast = "halfvec" if source._kind.name == "halfvec" else "vector"
        statement = sql.SQL(
            "SELECT {key} FROM {table}{where} ORDER BY {column} {operator} %s::{cast} LIMIT %s"
        ).format(
            key=source._key_expression(),
            table=sql.SQL(source._table),
            where=source._filter_clause(),
            column=sql.Identifier(source._column),
            operator=sql.SQL(OPERATORS[self.metric]),
            cast=sql.SQL(cast),
        )
        if explain:
            return sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ") + statement
        return statement

    def search(
        self,
        queries: npt.NDArray[np.floating[Any]],
        limit: int,
        setting: int | None = None,
        iterative: str | None = None,
    ) -> LiveResults:
        source = self._source
        select, explain = self._statement(False), self._statement(True)
        rows = np.full((len(queries), limit), -1, dtype=np.int64)
        server_ms = np.zeros(len(queries))
        used = 0
        with source._reading(), source._connection.cursor() as cursor:
            cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                if setting is not None:
                    cursor.execute("SELECT set_config(%s, %s, true)", (self.knob, str(setting)))
                if iterative is not None:
                    name = f"{self._info['type']}.iterative_scan"
                    cursor.execute("SELECT set_config(%s, %s, true)", (name, iterative))
                for at, query in enumerate(np.asarray(queries, dtype=np.float32)):
                    literal = "[" + ",".join(map(repr, query.tolist())) + "]"
                    keys = [key for (key,) in cursor.execute(select, (literal, limit)).fetchall()]
                    rows[at, : len(keys)] = source._positions_of(keys)
                    (plan,) = cursor.execute(explain, (literal, limit)).fetchone()
                    server_ms[at] = float(plan[0]["Execution Time"])
                    used += _uses(plan[0]["Plan"], str(self._info["name"]))
            finally:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        return LiveResults(rows, server_ms, used)

    def _quoted(self, name: str) -> str:
        sql = self._source._psycopg.sql
        return str(sql.Identifier(name).as_string(self._source._connection))

    def set_statements(self, setting: int) -> list[str]:
        return [
            f"SET {self.knob} = {setting};",
            f"ALTER DATABASE {self._quoted(self._database)} SET {self.knob} = {setting};",
        ]

    def iterative_statement(self, mode: str) -> str:
        return f"SET {self._info['type']}.iterative_scan = {mode};"

    def build_statement(self, where: str | None = None, metric: str | None = None) -> str:
        info = self._info
        opclass = str(info["opclass"])
        if metric is not None and metric != self.metric:
            opclass = f"{opclass.split('_', 1)[0]}_{metric}_ops"
        m = max(HNSW_M, 2 * int(info.get("m", HNSW_M // 2)))
        ef = max(HNSW_EF_CONSTRUCTION, 2 * int(info.get("ef_construction", 0)), 2 * m)
        column = self._quoted(self._source._column)
        partial = f" WHERE {where}" if where is not None else ""
        return (
            f"CREATE INDEX ON {self._source._table} USING hnsw ({column} {opclass}) "
            f"WITH (m = {m}, ef_construction = {ef}){partial};"
        )
