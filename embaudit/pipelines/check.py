"""``embaudit check``: measure a source, run the checks, decide the verdict, build the report;
with a baseline, audit it the same way and add the drift checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from embaudit.checks import AuditData, Baseline, run_checks
from embaudit.compare import compare_files
from embaudit.index import (
    IndexMetric,
    IndexPlan,
    check_plan,
    default_metric,
    measure_index,
    objective_metric,
)
from embaudit.measure import GEOMETRY_STEPS, Measurements, measure
from embaudit.model import CheckResult, Verdict
from embaudit.options import CheckOptions
from embaudit.params import ParameterError, declared
from embaudit.pipelines import TOOL, Run
from embaudit.reports import CheckReport
from embaudit.sources import EmbeddingSource
from embaudit.verdict import decide


def run_check(
    source: EmbeddingSource,
    baseline: EmbeddingSource | None,
    options: CheckOptions,
    run: Run,
    *,
    queries: EmbeddingSource | None = None,
) -> CheckReport:
    """The report of ``embaudit check`` on an opened source (and baseline); ``queries``, the
    source of ``--query-file``, gives the query rows."""
    started = time.perf_counter()
    given, options = options, _with_stored_index(source, options)
    measured, data, checks, verdict = _judge(source, options, run, "audit", queries)
    measured_at = time.perf_counter()
    if baseline is not None:
        data = replace(data, baseline=_baseline(baseline, source, options, run), verdict=verdict)
        checks += run_checks(data, drift=True)
        verdict = decide(checks, options.trained_with)
    input_info = source.describe()
    input_info["n_used"] = measured.stats.n_clean
    input_info["excluded_rows"] = {
        "non-finite": measured.stats.non_finite.count,
        "zero-vectors": measured.stats.zero.count,
    }
    if baseline is not None:
        input_info["baseline"] = baseline.describe()
    if queries is not None:
        drawn = measured.neighbors.queries if measured.neighbors is not None else 0
        input_info["queries"] = queries.describe() | {"drawn": drawn}
    finished = time.perf_counter()
    return CheckReport(
        options=options,
        tool=TOOL,
        input=input_info,
        params={
            "k": options.k,
            "seed": options.seed,
            "trained_with": options.trained_with.value,
            "fail_on": options.fail_on.value,
            **options.sampling.to_dict(),
            **({"query_file": options.query_file} if options.query_file is not None else {}),
            "engine": run.engine.name,
            **_deployment_params(options, given),
        },
        verdict=verdict,
        checks=checks,
        timings={
            **{f"{stage}_seconds": seconds for stage, seconds in measured.timings.items()},
            "measure_seconds": measured_at - started,
            "total_seconds": finished - started,
        },
        fail_on=options.fail_on,
    )


def _judge(
    source: EmbeddingSource,
    options: CheckOptions,
    run: Run,
    action: str,
    queries: EmbeddingSource | None = None,
) -> tuple[Measurements, AuditData, list[CheckResult], Verdict]:
    """Measure a source, run the audit checks on it and decide the verdict."""
    plan = _index_plan(source, options)
    measured = measure(
        source,
        k=options.k,
        seed=options.seed,
        sampling=options.sampling,
        chunk_rows=run.chunk_rows,
        on_rows=run.reporting(action, source),
        engine=run.engine,
        dead_ratio=options.threshold("EA004"),
        truncate=options.truncate,
        on_geometry=run.stages(f"geometry of the {action} sample", GEOMETRY_STEPS),
        queries_from=queries,
    )
    neighbors = measured.neighbors
    if plan is not None and neighbors is not None and neighbors.search is not None:
        indexed = measure_index(
            source,
            neighbors.search,
            plan,
            objective_metric(options.trained_with),
            chunk_rows=run.chunk_rows,
            on_rows=_index_progress(run, source, plan),
        )
        measured.timings.update(indexed.timings)
        neighbors = replace(neighbors, index=indexed)
    data = AuditData(options, measured.stats, measured.geometry, neighbors)
    checks = run_checks(data)
    return measured, data, checks, decide(checks, options.trained_with)


def _baseline(
    old: EmbeddingSource, new: EmbeddingSource, options: CheckOptions, run: Run
) -> Baseline:
    """Audit the baseline with the same options (its verdict and norms), and compare the
    neighbours of the items the two exports share."""
    measured, _, _, verdict = _judge(old, options, run, "baseline")
    comparison = compare_files(
        old,
        new,
        metric=objective_metric(options.trained_with),
        k=options.k,
        seed=options.seed,
        queries=options.sampling.queries,
        chunk_rows=run.chunk_rows,
        on_pass=lambda source: run.reporting("neighbours of", source),
        engine=run.engine,
    )
    return Baseline(old.path, comparison, measured.stats.clean_norms, verdict)


def _with_stored_index(source: EmbeddingSource, options: CheckOptions) -> CheckOptions:
    """``options`` with the index stored with the data (a pgvector or Lance index) as
    ``--index`` when none is given, and its metric (or the ``distance`` of an ann-benchmarks
    file) as ``--index-metric`` when none is given: the index checks then judge what is
    deployed."""
    stored = source.stored_index()
    if stored is None:
        return options
    changes: dict[str, Any] = {}
    if options.index is None and stored.spec is not None:
        changes["index"] = stored.spec
    if options.index_metric is None and stored.metric is not None:
        changes["index_metric"] = IndexMetric(stored.metric)
    return replace(options, **changes) if changes else options


def _index_plan(source: EmbeddingSource, options: CheckOptions) -> IndexPlan | None:
    """The index of ``--index`` (None without it), and the dimensions of ``--truncate``,
    checked against the source before any work starts."""
    flags = declared(CheckOptions)
    for m in options.truncate:
        if m >= source.d:
            raise ParameterError(
                "truncate",
                f"must be below the dimension d = {source.d}, got {m}",
                flags["truncate"].flag,
            )
    if options.index is None:
        return None
    plan = IndexPlan(
        spec=options.index,
        metric=options.index_metric or default_metric(options.trained_with),
        sample=options.index_sample,
        seed=options.seed,
        flag=flags["index"].flag,
    )
    check_plan(source.d, plan)
    return plan


def _index_progress(
    run: Run, source: EmbeddingSource, plan: IndexPlan
) -> Callable[[int], None] | None:
    """The progress of the index build: every row read, or the rows of the sample added."""
    if plan.sample is None:
        return run.reporting(f"index {plan.spec}", source)
    if run.progress is None:
        return None
    return run.progress(f"index {plan.spec} on a sample", min(plan.sample, source.n))


def _deployment_params(options: CheckOptions, given: CheckOptions) -> dict[str, Any]:
    """The index and truncation parameters, in the report when given; ``index_from`` says
    whether the index is ``--index`` or the one stored with the data (``input.index``)."""
    params: dict[str, Any] = {}
    if options.index is not None:
        params["index"] = options.index
        params["index_metric"] = (
            options.index_metric or default_metric(options.trained_with)
        ).value
        params["index_sample"] = options.index_sample
        params["index_from"] = "--index" if given.index is not None else "input.index"
    if options.truncate:
        params["truncate"] = list(options.truncate)
    return params
