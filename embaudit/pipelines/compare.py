"""``embaudit compare-knn``: the neighbours of three metrics on one file, or of the same items
in two exports, as a report with an optional gate (``min_overlap``)."""

from __future__ import annotations

import time
from dataclasses import replace

from embaudit.compare import compare_files, compare_metrics
from embaudit.figures import beside
from embaudit.model import CheckResult, Status
from embaudit.options import CompareOptions
from embaudit.pipelines import TOOL, Run
from embaudit.pipelines.rows import changed_items, write_rows
from embaudit.reports import FilesReport, MetricsReport
from embaudit.sources import EmbeddingSource


def _params(options: CompareOptions, run: Run) -> dict[str, object]:
    return {
        "k": options.k,
        "seed": options.seed,
        "queries": options.queries,
        "min_overlap": options.min_overlap,
        "fail_on": options.fail_on.value,
        **({"query_file": options.query_file} if options.query_file is not None else {}),
    }


def run_metrics(
    source: EmbeddingSource,
    options: CompareOptions,
    run: Run,
    *,
    queries: EmbeddingSource | None = None,
) -> MetricsReport:
    """overlap@k of cosine, L2 and inner-product neighbours on one file (of the rows of
    ``queries``, the source of ``--query-file``, when given)."""
    started = time.perf_counter()
    result = compare_metrics(
        source,
        k=options.k,
        seed=options.seed,
        queries=options.queries,
        chunk_rows=run.chunk_rows,
        on_rows=run.reporting("neighbours of", source),
        engine=run.engine,
        queries_from=queries,
    )
    input_info = source.describe()
    if queries is not None:
        input_info["queries"] = queries.describe() | {"drawn": result.queries}
    checks = [
        _gate_row(
            f"{pair.a}-vs-{pair.b}",
            pair.by_k[result.k],
            options.min_overlap,
            f"overlap@{result.k} {_shown(pair.by_k[result.k], options.min_overlap)}; top-1 "
            "differs for "
            f"{pair.top1_differs:.1%} of {result.queries} queries",
        )
        for pair in result.pairs
    ]
    return MetricsReport(
        options=options,
        tool=TOOL,
        input=input_info,
        params=_params(options, run) | {"ladder": result.ladder, "engine": run.engine.name},
        comparison=result,
        checks=checks,
        timings={"total_seconds": time.perf_counter() - started},
        fail_on=options.fail_on,
    )


def run_files(
    old: EmbeddingSource, new: EmbeddingSource, options: CompareOptions, run: Run
) -> FilesReport:
    """How many neighbours of the same items survive from ``old`` to ``new``."""
    started = time.perf_counter()
    metric = options.metric.value
    comparison = compare_files(
        old,
        new,
        metric=metric,
        k=options.k,
        seed=options.seed,
        queries=options.queries,
        chunk_rows=run.chunk_rows,
        on_pass=lambda source: run.reporting("neighbours of", source),
        engine=run.engine,
    )
    if options.rows_out is not None:
        write_rows(options.rows_out, changed_items(comparison))
    value = comparison.overlap_at_k
    row = _gate_row(
        "neighbour-stability",
        value,
        options.min_overlap,
        f"overlap@{comparison.k} {_shown(value, options.min_overlap)} of {metric} neighbours for "
        f"{comparison.queries} of {comparison.n_matched:,} matched items",
    )
    if row.status == Status.FAIL and comparison.id_candidates:
        row = replace(row, message=row.message + _by_id_hint(comparison.id_candidates))
    params = _params(options, run) | {"metric": metric, "ladder": comparison.ladder}
    return FilesReport(
        options=options,
        tool=TOOL,
        old=old.describe(),
        new=new.describe(),
        params=params | {"engine": run.engine.name},
        comparison=comparison,
        checks=[row],
        timings={"total_seconds": time.perf_counter() - started},
        fail_on=options.fail_on,
    )


def _by_id_hint(columns: tuple[str, ...]) -> str:
    """Items matched by row order while both files hold ``columns`` that could name them."""
    named = ", ".join(repr(c) for c in columns)
    both = "a column" if len(columns) == 1 else "columns"
    return (
        f"; the items were matched by row order, but both files have {both} {named} that may "
        f"identify them: match by id with --id-column {columns[0]}"
    )


def _shown(overlap: float, min_overlap: float | None) -> str:
    """An overlap to 3 decimals, or as many more as tell its side of ``--min-overlap``."""
    return f"{overlap:.3f}" if min_overlap is None else beside(overlap, min_overlap, ".3f")


def _gate_row(name: str, value: float, min_overlap: float | None, message: str) -> CheckResult:
    failed = min_overlap is not None and value < min_overlap
    if failed:
        message = f"{message}: below --min-overlap {min_overlap:g}"
    return CheckResult(
        code="",
        name=name,
        status=Status.FAIL if failed else Status.PASS,
        value=value,
        threshold=min_overlap,
        message=message,
        metrics={},
    )
