"""``embaudit check``: measure a source, run the checks, decide the verdict, build the report;
with a baseline, audit it the same way and add the drift checks."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from embaudit.checks import REGISTRY, AuditData, Baseline, run_checks
from embaudit.checks.base import threshold_of
from embaudit.compare import compare_files
from embaudit.estimates import Z95
from embaudit.index import (
    BuiltIndex,
    IndexMetric,
    IndexPlan,
    build_index,
    check_plan,
    default_metric,
    objective_metric,
)
from embaudit.index.live import LiveProbe
from embaudit.measurement.gauges import canonical_queries, headline_level
from embaudit.measurement.sample import GEOMETRY_STEPS
from embaudit.measurement.sampling import Sampling
from embaudit.measurement.steps import PARTS, PASS_PARTS, Measurements, measure
from embaudit.model import CheckResult, TrainedWith, Verdict
from embaudit.options import CheckOptions
from embaudit.params import ParameterError, declared
from embaudit.pipelines import TOOL, Run
from embaudit.pipelines.rows import flagged_rows, write_rows
from embaudit.reports import CheckReport
from embaudit.sources import EmbeddingSource
from embaudit.sources.base import StoredIndex
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
    rebuilt = given.index is None or given.index.lower() == REBUILD
    stored = source.stored_index() if rebuilt else None
    measured, data, checks, verdict = _judge(source, options, run, "audit", queries, stored)
    measured_at = time.perf_counter()
    if options.rows_out is not None:
        write_rows(options.rows_out, flagged_rows(data, checks, source))
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
            **({"adaptive": measured.adaptive} if measured.adaptive else {}),
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


@dataclass(frozen=True)
class _Measuring:
    """How :func:`_judge` measures its source, in the first measurement and in each round."""

    source: EmbeddingSource
    options: CheckOptions
    run: Run
    queries: EmbeddingSource | None

    def __call__(
        self,
        sampling: Sampling,
        label: str,
        parts: Collection[str] = PARTS,
        previous: Measurements | None = None,
        judged_level: bool = False,
        part_sizes: Mapping[str, Sampling] | None = None,
    ) -> Measurements:
        """``judged_level``: of the rescaling levels, search only the one EA301 judges (the
        others give s50, which no threshold reads, and keep ``previous``'s overlaps);
        ``part_sizes``: each part's sizes (see :func:`measure`)."""
        run, options = self.run, self.options
        return measure(
            self.source,
            k=options.k,
            seed=options.seed,
            sampling=sampling,
            chunk_rows=run.chunk_rows,
            on_rows=run.reporting(label, self.source) if PASS_PARTS.intersection(parts) else None,
            engine=run.engine,
            dead_ratio=threshold_of(options, "EA004"),
            truncate=options.truncate,
            on_geometry=(
                run.stages(f"geometry of the {label} sample", GEOMETRY_STEPS)
                if "sample" in parts
                else None
            ),
            queries_from=self.queries,
            parts=parts,
            previous=previous,
            levels=(headline_level(sampling.gauge_levels),) if judged_level else None,
            part_sizes=part_sizes,
        )


def _judge(
    source: EmbeddingSource,
    options: CheckOptions,
    run: Run,
    action: str,
    queries: EmbeddingSource | None = None,
    stored: StoredIndex | None = None,
) -> tuple[Measurements, AuditData, list[CheckResult], Verdict]:
    """Measure a source, run the audit checks on it and decide the verdict.

    A check estimated from samples whose threshold lies inside its value's 95% interval, where
    the side of the threshold decides its status, is undecided: the source is measured again
    with the sample sizes it rests on doubled, at most MAX_ROUNDS times, and only the undecided
    checks take their result from the larger sample (every other check keeps the first
    measurement). A round measures only the parts of the measurement its undecided checks read
    (their ``reads``: the gauges' lists for EA301, the sample's graphs for EA501, ...). A check
    still undecided then keeps the status of its point estimate and says "inconclusive at the
    cap"."""
    measuring = _Measuring(source, options, run, queries)
    measured = measuring(options.sampling, action)
    built: BuiltIndex | LiveProbe | None = None
    live = source.live_index() if options.index == LIVE else None
    plan = None if options.index == LIVE else _index_plan(source, options, stored)
    neighbors = measured.neighbors
    if (live or plan) is not None and neighbors is not None and neighbors.search is not None:
        if live is not None:
            built = LiveProbe(source, live)
        else:
            assert plan is not None
            built = build_index(
                source,
                plan,
                neighbors.search.pow2_scale,
                chunk_rows=run.chunk_rows,
                on_rows=_index_progress(run, source, plan),
            )
        indexed = built.search(neighbors.search, objective_metric(options.trained_with))
        measured.timings.update(indexed.timings)
        measured = replace(measured, neighbors=replace(neighbors, index=indexed))
    data = AuditData(options, measured.stats, measured.geometry, measured.neighbors)
    checks = run_checks(data)
    grew = [check.code for check in checks if _undecided(check, data)]
    checks, rounds, pending = _measure_again(measuring, measured, checks, grew, built, action)
    if grew:
        measured = replace(
            measured, adaptive={"rounds": rounds + 1, "grew": grew, "inconclusive": pending}
        )
    return measured, data, checks, decide(checks, options.trained_with)


def _measure_again(
    measuring: _Measuring,
    measured: Measurements,
    checks: list[CheckResult],
    pending: list[str],
    built: BuiltIndex | LiveProbe | None,
    action: str,
) -> tuple[list[CheckResult], int, list[str]]:
    """The rounds of :func:`_judge` for the ``pending`` (undecided) checks: the checks with the
    undecided ones' results from the last round that measured them, the rounds, and the
    checks still undecided at the cap (marked inconclusive)."""
    options = measuring.options
    results = {check.code: check for check in checks}
    rounds, again = 0, measured
    # Each undecided check's own sizes: a round measures with the largest any of them asks
    # for, and each check reads its own (EA301's gauge queries are its own, whatever EA302's).
    own = dict.fromkeys(pending, options.sampling)
    # Queries are drawn from the query file's rows when there is one, else from the corpus's.
    query_rows = measuring.queries.n if measuring.queries is not None else measured.stats.n_clean
    while pending and rounds < MAX_ROUNDS:
        if not any(_on_index(code) for code in pending):
            built = None  # no round searches the index again: it is not kept through them
        grown = {
            code: _grown(
                own[code],
                [code],
                options.sampling,
                measured.stats.n_clean,
                query_rows,
                rounds + 1,
                _error_from(results[code]),
            )
            for code in pending
        }
        if all(sizes is None for sizes in grown.values()):
            break
        own |= {code: sizes for code, sizes in grown.items() if sizes is not None}
        sampling, rounds = _largest([own[code] for code in pending]), rounds + 1
        parts = sorted({part for code in pending for part in REGISTRY[code].reads})
        # Each part at the sizes of the checks that read it (EA301's gauges whatever EA302's
        # gauge queries grew to, and the other way round).
        part_sizes = {
            part: _largest([own[code] for code in pending if part in REGISTRY[code].reads])
            for part in parts
        }
        label = f"{action} (round {rounds + 1})"
        again = measuring(sampling, label, parts, again, True, part_sizes)
        if built is not None and "lists" in parts:
            # The index built once searches the larger query sample (EA701, EA702).
            assert again.neighbors is not None and again.neighbors.search is not None
            searched = built.search(again.neighbors.search, objective_metric(options.trained_with))
            again = replace(again, neighbors=replace(again.neighbors, index=searched))
        still = []
        for code in pending:
            larger = AuditData(
                replace(options, sampling=own[code]), again.stats, again.geometry, again.neighbors
            )
            result = REGISTRY[code].run(larger)
            results[code] = replace(
                result, metrics=result.metrics | {"sampling": _sizes(own[code], code)}
            )
            if _undecided(results[code], larger):
                still.append(code)
        pending = still
    checks = [
        _inconclusive(results[check.code], rounds) if check.code in pending else results[check.code]
        for check in checks
    ]
    return checks, rounds, pending


def _on_index(code: str) -> bool:
    """Whether check ``code`` judges the index of ``--index`` (its value is the index's)."""
    return REGISTRY[code].option == "index"


def _sizes(sampling: Sampling, code: str) -> dict[str, int]:
    """The sample sizes a check was measured with, when more than requested."""
    return {name: getattr(sampling, name) for name in REGISTRY[code].samples}


#: Times the audit measures again, each with the sample sizes of the undecided checks doubled:
#: at most 2**MAX_ROUNDS (8) times the requested sizes.
MAX_ROUNDS = 3


def _undecided(check: CheckResult, data: AuditData) -> bool:
    """Whether the threshold lies inside the value's 95% interval and the side of it decides
    the status under some declaration of the objective (the check run with the threshold at
    either end of the interval differs): what is measured again, and so every value, is the
    same whatever ``--trained-with`` says, which decides statuses only."""
    spec = REGISTRY[check.code]
    if spec.samples and check.metrics.get("undecided_by"):
        return True  # a second estimate the check decides by (EA204's r^2) says so itself
    error = check.metrics.get("standard_error")
    if not spec.samples or check.value is None or check.threshold is None or not error:
        return False
    low, high = check.value - Z95 * error, check.value + Z95 * error
    if not low <= check.threshold <= high:
        return False
    for objective in TrainedWith:
        options = replace(data.params, trained_with=objective, require_objective=False)
        declared = replace(data, params=options)
        if spec.measure(declared, low).status != spec.measure(declared, high).status:
            return True
    return False


#: Sizes whose product is one search's work: a round doubles one of them, so that a round of
#: EA301, whose gauges search every row, searches as many new (gauge query, draw) pairs as were
#: searched before, not three times as many: the one its error mostly comes from (EA301's
#: ``error_from``: the draws' or the queries' mean square), else in turn (the gauge queries on
#: odd rounds, the gauge draws on even ones).
ALTERNATING = ("gauge_queries", "gauge_draws")


def _grown(
    sampling: Sampling,
    codes: list[str],
    first: Sampling,
    n: int,
    query_rows: int | None = None,
    round_number: int = 1,
    prefer: str | None = None,
) -> Sampling | None:
    """``sampling`` with the sizes the checks ``codes`` rest on doubled, each at most
    2**MAX_ROUNDS times its size in ``first``, the sample at most the ``n`` clean rows and the
    queries at most the rows they are drawn from (``query_rows``: a query file's, else ``n``);
    of the :data:`ALTERNATING` sizes, only ``prefer`` (given: the one the checks' errors mostly
    come from) or the ``round_number``-th in turn (the other one when that one cannot grow).
    None when nothing can grow."""
    if any(REGISTRY[code].corpus_queries for code in codes):
        query_rows = None  # such a check's queries are drawn from the corpus
    # EA302's canonical gauge searches canonical_queries(g) of the queries for g gauge queries:
    # past the rows they come from, more gauge queries would search the same ones again.
    reads = {part for code in codes for part in REGISTRY[code].reads}
    share = canonical_queries(1) if reads & {"canonical", "gauges"} == {"canonical"} else 1
    turn = prefer or ALTERNATING[(round_number - 1) % len(ALTERNATING)]
    if not _can_grow(sampling, first, turn, n, query_rows, share):
        turn = next(name for name in ALTERNATING if name != turn)
    resting = [set(REGISTRY[code].samples) for code in codes]
    fields = set().union(
        *[s - set(ALTERNATING) | {turn} if set(ALTERNATING) <= s else s for s in resting]
    )
    changes: dict[str, Any] = {}
    for name in sorted(fields):
        if _can_grow(sampling, first, name, n, query_rows, share):
            limit = _limit(first, name, n, query_rows, share)
            changes[name] = min(2 * getattr(sampling, name), limit)
    return replace(sampling, **changes) if changes else None


def _largest(samplings: list[Sampling]) -> Sampling:
    """Each size the largest of ``samplings`` (the same but for their sizes)."""
    sizes = {
        name: max(getattr(sampling, name) for sampling in samplings)
        for name in ("queries", "gauge_queries", "gauge_draws", "sample", "pairs", "graphs")
    }
    return replace(samplings[0], **sizes)


def _error_from(result: CheckResult) -> str | None:
    """The size of :data:`ALTERNATING` that an undecided check's error mostly comes from (the
    gauge draws or the gauge queries: its ``error_from``); None when it does not say: take
    turns."""
    side = result.metrics.get("error_from")
    return None if side is None else f"gauge_{side}"


def _limit(first: Sampling, name: str, n: int, query_rows: int | None, share: int = 1) -> int:
    """The largest size ``name`` grows to: 2**MAX_ROUNDS times its first size, the queries at
    most the rows they are drawn from (the gauge queries at most 1/``share`` of them, when each
    stands for ``share`` queries searched) and the sample at most every row."""
    limit = int(getattr(first, name)) * 2**MAX_ROUNDS
    if name in ("queries", "gauge_queries"):
        rows = n if query_rows is None else query_rows  # every row there is
        limit = min(limit, -(-rows // share) if name == "gauge_queries" else rows)
    elif name == "sample":
        limit = min(limit, n)  # every row: a larger draw is the same draw
    return limit


def _can_grow(
    sampling: Sampling,
    first: Sampling,
    name: str,
    n: int,
    query_rows: int | None,
    share: int = 1,
) -> bool:
    current = getattr(sampling, name)
    return bool(min(2 * current, _limit(first, name, n, query_rows, share)) > current)


def _inconclusive(check: CheckResult, rounds: int) -> CheckResult:
    """A check whose threshold is still inside its 95% interval after the last round."""
    within = check.metrics.get("undecided_by")
    if not within:
        error = check.metrics["standard_error"]
        within = (
            f"the threshold {check.threshold:g} lies within {check.value:.3g} ± {Z95 * error:.2g}"
        )
    grown = f" after {rounds} more round{'s' if rounds != 1 else ''}" if rounds else ""
    return replace(
        check,
        message=f"{check.message}; inconclusive at the cap{grown}: {within}",
        metrics=check.metrics | {"inconclusive": True},
    )


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
    return Baseline(old.path, comparison, measured.stats.norm_summary, verdict)


#: ``--index`` words that are not faiss specs: search the stored index live through the store,
#: rebuild it in faiss with its parameters, or judge no index.
LIVE, REBUILD, NO_INDEX = "live", "rebuild", "none"


def _with_stored_index(source: EmbeddingSource, options: CheckOptions) -> CheckOptions:
    """``options`` with the index stored with the data (a pgvector or Lance index) as
    ``--index`` when none is given: ``live`` when the source can search it through its own
    query path, else its faiss spec (a rebuild); ``--index rebuild`` asks for the rebuild,
    ``--index none`` for no index (``--index-metric`` other than the stored index's asks for
    the rebuild too). Its metric (or the ``distance`` of an ann-benchmarks file)
    becomes ``--index-metric`` when none is given: the index checks then judge what is
    deployed."""
    word = options.index.lower() if options.index is not None else None
    if word == NO_INDEX:
        return replace(options, index=None)
    stored = source.stored_index()
    changes: dict[str, Any] = {}
    if word in (None, LIVE, REBUILD):
        live = source.live_index() if word != REBUILD else None
        if live is not None and options.index_metric not in (None, live.metric):
            if word == LIVE:
                raise ParameterError(
                    "index_metric",
                    f"the index of {source.path} ranks by {live.metric}, not "
                    f"{options.index_metric}: rebuild it with --index rebuild to try another",
                    declared(CheckOptions)["index_metric"].flag,
                )
            live = None  # another metric than the index's: its faiss rebuild answers
        if live is not None:
            changes["index"] = LIVE
        elif stored is not None and stored.spec is not None:
            changes["index"] = stored.spec
        elif word is not None:
            kind = "searches live" if word == LIVE else "can rebuild"
            raise ParameterError(
                "index",
                f"{word}: {source.path} holds no index embaudit {kind}",
                declared(CheckOptions)["index"].flag,
            )
    if options.index_metric is None and stored is not None and stored.metric is not None:
        changes["index_metric"] = IndexMetric(stored.metric)
    return replace(options, **changes) if changes else options


def _index_plan(
    source: EmbeddingSource, options: CheckOptions, stored: StoredIndex | None = None
) -> IndexPlan | None:
    """The index of ``--index`` (None without it), and the dimensions of ``--truncate``,
    checked against the source before any work starts. With ``stored`` (the index stored with
    the data, when it gave ``--index``), its build and search settings too."""
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
    if stored is not None and stored.spec == options.index:
        plan = replace(
            plan,
            flag="input.index",
            build=stored.build,
            search=stored.search,
            defaults_from=stored.defaults_from or plan.defaults_from,
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
        word = given.index.lower() if given.index is not None else None
        params["index_from"] = (
            "--index" if word not in (None, LIVE, REBUILD, NO_INDEX) else "input.index"
        )
    if options.truncate:
        params["truncate"] = list(options.truncate)
    return params
