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

:mod:`~embaudit.sources.postgres.catalog` holds the connection and what the catalog says about
the table; :mod:`~embaudit.sources.postgres.reading` the source (:class:`PostgresSource`): the
keys, the fragments and the batched reads; :mod:`~embaudit.sources.postgres.binary` the decoding
of the binary forms and of the ``COPY`` stream.
"""

from __future__ import annotations

from embaudit.sources.postgres.binary import KINDS, decode
from embaudit.sources.postgres.catalog import (
    CONNECT_TIMEOUT,
    HNSW_EF_SEARCH,
    INSTALL,
    IVFFLAT_PROBES,
    OPCLASS_METRICS,
    SCHEMES,
    TableCatalog,
    is_postgres,
    scrub,
)
from embaudit.sources.postgres.reading import FETCH, FRAGMENT_BYTES, PostgresSource

__all__ = [
    "CONNECT_TIMEOUT",
    "FETCH",
    "FRAGMENT_BYTES",
    "HNSW_EF_SEARCH",
    "INSTALL",
    "IVFFLAT_PROBES",
    "KINDS",
    "OPCLASS_METRICS",
    "SCHEMES",
    "PostgresSource",
    "TableCatalog",
    "decode",
    "is_postgres",
    "scrub",
]
