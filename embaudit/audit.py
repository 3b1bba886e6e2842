"""The front door of the library: validate the options, open the sources, choose the engine,
and hand over to the pipelines (:mod:`embaudit.pipelines`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.engines import Engine, make_engine
from embaudit.errors import UsageError
from embaudit.measurement.sampling import Sampling
from embaudit.options import (
    CheckOptions,
    CompareOptions,
    GaugeOptions,
    Options,
    blamed_on,
    build,
    merge,
    read_config,
)
from embaudit.params import (
    QUERY_COLUMN,
    QUERY_FILE,
    QUERY_KEY,
    ROWS_OUT,
    ParameterError,
    declared,
)
from embaudit.pipelines import TOOL, Run
from embaudit.pipelines.check import run_check
from embaudit.pipelines.compare import run_files, run_metrics
from embaudit.pipelines.gauge import run_gauge
from embaudit.progress import PassReporter
from embaudit.reports import (
    CheckReport,
    FilesReport,
    GaugeReport,
    MetricsReport,
    ProjectReport,
)
from embaudit.sources import EmbeddingSource, accepts, open_source

#: What the functions read: a path (a file, a directory of files of one kind, a URI), an (n, d)
#: float array, or an opened source.
Source = str | os.PathLike[str] | npt.NDArray[np.floating[Any]] | EmbeddingSource


def audit(
    source: Source,
    options: CheckOptions | None = None,
    *,
    baseline: Source | None = None,
    progress: PassReporter | None = None,
    config: str | os.PathLike[str] | bool | None = None,
    **parameters: Any,
) -> CheckReport:
    """Audit embeddings and return the typed report that ``embaudit check`` renders.

    ``source`` is a path (``.npy``, ``.npz``, ``.parquet``, a directory of files of one kind, a URI
    of a parquet, ``.npy``, big-ann or ``.safetensors`` file or prefix), a 2-D float array of shape
    (n, d), or a column of vectors in memory (a pandas Series, a pyarrow array, or a table or
    DataFrame with ``column`` naming it and ``id_column`` its ids; a null vector is a row EA001
    reports, as in a file). The options are a :class:`~embaudit.options.CheckOptions` and/or its
    fields as keywords, e.g. ``k`` (neighbour count of the kNN checks), ``seed`` (every random
    choice), ``trained_with`` (the training objective: cosine, dot, dot-regularized, l2 or unknown),
    ``key`` / ``column`` / ``id_column`` (what to read), ``thresholds`` and ``severities`` by code,
    ``select`` / ``extend_select`` / ``ignore`` (code prefixes, as ruff), ``fail_on`` (the gate of
    :meth:`CheckReport.failed`), ``sampling`` (:class:`~embaudit.measurement.sampling.Sampling`),
    ``engine`` (``"local"``, ``"ray"`` with ``ray_address``, or an
    :class:`~embaudit.engines.Engine`; both give the same report). ``baseline`` (a previous export,
    read with the same options) adds the drift checks EA6xx. ``progress`` is told of each pass over
    the data (see :mod:`embaudit.progress`). ``config`` reads a configuration file as the command
    line does: a path, or ``True`` for the nearest ``embaudit.toml`` / ``pyproject.toml`` (keywords
    given here override it).

    Raises :class:`~embaudit.errors.InputError` for unreadable input,
    :class:`~embaudit.errors.UsageError` (a :class:`~embaudit.params.ParameterError` naming
    the parameter) for invalid options, and :class:`~embaudit.errors.ConfigError` naming the
    file and key for a value the configuration set that is invalid, or does not apply to the
    input.
    """
    with _configured(CheckOptions, options, config, parameters, source) as options:
        opened = _open(source, options, ids_from=options.ids_from)
        queries = _query_source(opened, options)
        old = None if baseline is None else _open(baseline, options)
        with _engine(options.engine, options.ray_address, opened, old) as engine:
            run = Run(engine, options.chunk_rows, progress)
            return run_check(opened, old, options, run, queries=queries)


def audit_project(
    config: str | os.PathLike[str] | None = None,
    *,
    progress: PassReporter | None = None,
    **parameters: Any,
) -> ProjectReport:
    """Audit every export a configuration lists (``[[tool.embaudit.files]]``: globs relative to
    the configuration's directory), each with the settings of the globs it matches, and return
    their reports together, as ``embaudit check`` with no path does.

    ``config`` is the configuration file (default: the nearest ``embaudit.toml`` /
    ``pyproject.toml`` with ``[tool.embaudit]``). ``parameters`` (fields of
    :class:`~embaudit.options.CheckOptions` and :class:`~embaudit.measurement.sampling.Sampling`)
    are laid over every export's settings as the command line's flags are: ``select`` replaces
    the configured selection, ``extend_select`` and ``ignore`` add to it, ``fail_on`` sets every
    export's gate. A glob that matches nothing raises :class:`~embaudit.errors.ConfigError`
    naming it.
    """
    known = {*declared(CheckOptions), *declared(Sampling)} - {"sampling"}
    for name in parameters:
        if name not in known:
            raise UsageError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}")
    if parameters.get("rows_out") is not None:
        raise ParameterError("rows_out", "applies to one export: give a FILE", ROWS_OUT.flag)
    found = read_config(None if config is None else Path(config))
    reports = []
    for path, settings in found.exports():
        with blamed_on(settings, parameters):
            options = merge(CheckOptions, settings, parameters)
            reports.append(audit(path, options, progress=progress))
    return ProjectReport(tool=TOOL, config=str(found.path), reports=reports)


def compare_knn(
    old: Source,
    new: Source | None = None,
    options: CompareOptions | None = None,
    *,
    progress: PassReporter | None = None,
    config: str | os.PathLike[str] | bool | None = None,
    **parameters: Any,
) -> MetricsReport | FilesReport:
    """Compare nearest neighbours: of cosine, L2 and inner product on one file (``new`` None),
    or of the same items in two exports (matched by id column, else by row order).

    Options as :class:`~embaudit.options.CompareOptions` and/or keywords (``k``, ``seed``,
    ``queries``, ``metric``, ``min_overlap`` — a gate: a comparison below it fails — ``engine``
    ...).
    """
    with _configured(CompareOptions, options, config, parameters, old) as options:
        first = _open(old, options)
        second = None if new is None else _open(new, options)
        if second is not None and options.query_file is not None:
            raise ParameterError(
                "query_file",
                "applies to one file (the metrics of its neighbours), not to two exports: a new "
                "export needs queries embedded by its own model",
                QUERY_FILE.flag,
            )
        if second is None and options.rows_out is not None:
            raise ParameterError(
                "rows_out",
                "applies to two exports (the items whose neighbours changed), not to one file",
                ROWS_OUT.flag,
            )
        queries = _query_source(first, options)
        with _engine(options.engine, options.ray_address, first, second) as engine:
            run = Run(engine, options.chunk_rows, progress)
            if second is None:
                return run_metrics(first, options, run, queries=queries)
            return run_files(first, second, options, run)


def audit_gauge(
    items: Source,
    users: Source,
    options: GaugeOptions | None = None,
    *,
    config: str | os.PathLike[str] | bool | None = None,
    **parameters: Any,
) -> GaugeReport:
    """Two-tower gauge audit (see :mod:`embaudit.gauge`): how far the cosine neighbours of
    items (``side="items"``), users, or ``"both"`` move under diagonal gauges
    (items·D, users·D⁻¹) with condition number at most ``max_condition``, which leave every
    user–item score unchanged, and the balance of the towers. Fails when the worst overlap@k
    found is below ``min_overlap``: the model does not determine those neighbours. Options as
    :class:`~embaudit.options.GaugeOptions` and/or keywords.
    """
    with _configured(GaugeOptions, options, config, parameters, items) as options:
        keys = (options.items_key or options.key, options.users_key or options.key)
        if _same_location(items, users) and keys[0] == keys[1]:
            raise UsageError(
                "the item and user towers are the same array: give the other tower, or "
                "items_key / users_key (--items-key / --users-key) for an archive that holds both"
            )
        towers = [
            open_source(
                tower,
                key=key,
                column=options.column,
                id_column=options.id_column,
                table=options.table,
            )
            for tower, key in zip((items, users), keys, strict=True)
        ]
        return run_gauge(towers[0], towers[1], options)


def _same_location(first: Source, second: Source) -> bool:
    """Whether two sources are the same file (or the same array object)."""
    if isinstance(first, str | os.PathLike) and isinstance(second, str | os.PathLike):
        return os.path.realpath(first) == os.path.realpath(second)
    return first is second


@contextmanager
def _configured(
    kind: type[Options],
    given: Options | None,
    config: str | os.PathLike[str] | bool | None,
    parameters: dict[str, Any],
    source: Source | Any,
) -> Iterator[Options]:
    """The options of one call: ``given`` or the configuration file (``config``), as the command
    line reads it for ``source`` (with the settings of the ``[[files]]`` globs a path matches),
    with the keyword ``parameters`` over them. Within it, an error about a value the
    configuration set names its file and key (:func:`~embaudit.options.blamed_on`)."""
    if config is None or config is False:
        yield build(kind, given, **parameters)
        return
    if given is not None:
        raise UsageError("give options or config, not both: options already hold every value")
    found = read_config(None if config is True else Path(config))
    if isinstance(source, str | os.PathLike):
        found = found.for_path(source)
    else:  # an array or a table in memory: no glob matches it
        found = dataclasses.replace(found, files=())
    with blamed_on(found, parameters):
        yield build(kind, merge(kind, found, {}), **parameters)


def _open(
    source: Source,
    options: CheckOptions | CompareOptions | GaugeOptions,
    ids_from: str | None = None,
) -> EmbeddingSource:
    return open_source(
        source,
        key=options.key,
        column=options.column,
        id_column=options.id_column,
        table=options.table,
        where=options.where,
        ids_from=ids_from,
    )


def _query_source(
    corpus: EmbeddingSource, options: CheckOptions | CompareOptions
) -> EmbeddingSource | None:
    """The source of ``query_file``, or None; its dimension must be the corpus's. It is read
    with ``query_key`` / ``query_column``, else with the corpus's ``key`` / ``column`` when its
    format takes them (an ``.npy`` query file for a table's column takes neither)."""
    if options.query_file is None:
        return None
    location = options.query_file
    for name, flag in (("query_key", QUERY_KEY.flag), ("query_column", QUERY_COLUMN.flag)):
        if getattr(options, name) is not None and not accepts(location, name[6:]):
            raise ParameterError(name, f"does not apply to {location}", flag)
    key = options.query_key or (options.key if accepts(location, "key") else None)
    column = options.query_column or (options.column if accepts(location, "column") else None)
    id_column = options.id_column if accepts(location, "id_column") else None
    queries = open_source(location, key=key, column=column, id_column=id_column)
    if queries.d != corpus.d:
        raise ParameterError(
            "query_file",
            f"{options.query_file} has d = {queries.d}; the corpus {corpus.path or ''} has "
            f"d = {corpus.d}: the queries must come from the same model",
            QUERY_FILE.flag,
        )
    return queries


@contextmanager
def _engine(
    engine: str | Engine, address: str | None, *sources: EmbeddingSource | None
) -> Iterator[Engine]:
    """The engine to run on, checked against the sources before any work starts. An engine
    made here (from its name) is closed at the end; one passed in stays open for the caller."""
    given = [source for source in sources if source is not None]
    if isinstance(engine, Engine):
        if address is not None:
            raise UsageError("ray_address applies to an engine given by name, not an Engine")
        for source in given:
            engine.check_source(source)
        yield engine
        return
    with make_engine(engine, address, given) as runner:
        yield runner
