"""The pipelines: source → scan → checks → verdict → report, and the neighbour comparisons."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embaudit._version import __version__
from embaudit.checks import REGISTRY, AuditData, AuditParams, Baseline, run_checks
from embaudit.compare import compare_files, compare_metrics
from embaudit.config import enabled_codes, parse_selectors
from embaudit.draw import draw_clean_rows
from embaudit.engines import Engine, make_engine
from embaudit.errors import InputError, UsageError
from embaudit.gauge import (
    Balance,
    GaugeSettings,
    SideResult,
    audit_side,
    balance,
    column_norms,
    prediction_change,
)
from embaudit.measure import Measurements, Sampling, measure
from embaudit.model import CheckResult, CompareReport, Report, Status, TrainedWith, Verdict
from embaudit.progress import PassReporter
from embaudit.sources import EmbeddingSource, open_source
from embaudit.verdict import decide

Source = str | os.PathLike[str] | EmbeddingSource | Any
TOOL = {"name": "embaudit", "version": __version__}
#: The metric neighbours are compared with, per declared objective (cosine when unknown).
OBJECTIVE_METRIC = {
    TrainedWith.COSINE: "cosine",
    TrainedWith.DOT: "dot",
    TrainedWith.L2: "l2",
    TrainedWith.UNKNOWN: "cosine",
}


#: Largest neighbour count: trust in cosine is about the nearest neighbours, and the lists of
#: every query are held in memory.
MAX_K = 1000


def _positive(name: str, value: Any, smallest: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        kind = "a positive integer" if smallest == 1 else f"an integer >= {smallest}"
        raise UsageError(f"{name} must be {kind}, got {value!r}")


def _check_k(k: Any) -> None:
    _positive("-k", k)
    if k > MAX_K:
        raise UsageError(f"-k must be at most {MAX_K}, got {k!r}")


def _selectors(name: str, value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None

    def fail(problem: str) -> UsageError:
        return UsageError(f"{name}: {problem}")

    return tuple(
        parse_selectors(value if isinstance(value, str) else list(value), set(REGISTRY), fail)
    )


def validate_params(
    *,
    k: int,
    seed: int,
    trained_with: str | TrainedWith,
    thresholds: Mapping[str, float] | None = None,
    sampling: Sampling | None = None,
    select: Iterable[str] | str | None = None,
    extend_select: Iterable[str] | str | None = None,
    ignore: Iterable[str] | str | None = None,
    severities: Mapping[str, str | Status] | None = None,
) -> AuditParams:
    """Check the audit options, naming the option at fault."""
    _check_k(k)
    _positive("--seed", seed, smallest=0)
    try:
        objective = TrainedWith(trained_with)
    except ValueError:
        choices = ", ".join(t.value for t in TrainedWith)
        raise UsageError(f"--trained-with must be one of {choices}, got {trained_with!r}") from None
    sampling = sampling or Sampling()
    for name in ("queries", "gauge_queries", "gauge_draws", "sample", "pairs"):
        _positive("--" + name.replace("_", "-"), getattr(sampling, name))
    if not sampling.gauge_levels or any(not s > 0 for s in sampling.gauge_levels):
        raise UsageError(f"gauge levels must be positive, got {sampling.gauge_levels!r}")
    for code in (*(thresholds or {}), *(severities or {})):
        if code not in REGISTRY:
            raise UsageError(f"unknown check code {code!r}")
    for code, value in (thresholds or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise UsageError(f"threshold of {code} must be a number, got {value!r}")
    for code, level in (severities or {}).items():
        if level not in ("warn", "fail"):
            raise UsageError(f"severity of {code} must be 'warn' or 'fail', got {level!r}")
    enabled = None
    if select is not None or extend_select is not None or ignore is not None:
        enabled = enabled_codes(
            set(REGISTRY),
            _selectors("--select", select),
            _selectors("--extend-select", extend_select) or (),
            _selectors("--ignore", ignore) or (),
        )
        if not enabled:
            raise UsageError("the selection (--select, --extend-select, --ignore) runs no check")
    return AuditParams(
        k=k,
        seed=seed,
        trained_with=objective,
        thresholds=dict(thresholds or {}),
        sampling=sampling,
        enabled=enabled,
        severities={code: Status(level) for code, level in (severities or {}).items()},
    )


def _fail_on(value: str | Status) -> Status:
    if value not in ("warn", "fail"):
        raise UsageError(f"--fail-on must be 'warn' or 'fail', got {value!r}")
    return Status(value)


def audit(
    source: Source,
    *,
    k: int = 10,
    seed: int = 0,
    trained_with: str | TrainedWith = TrainedWith.UNKNOWN,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    sampling: Sampling | None = None,
    select: Iterable[str] | str | None = None,
    extend_select: Iterable[str] | str | None = None,
    ignore: Iterable[str] | str | None = None,
    severities: Mapping[str, str | Status] | None = None,
    fail_on: str | Status = Status.FAIL,
    baseline: Source | None = None,
    chunk_rows: int | None = None,
    progress: PassReporter | None = None,
    engine: str | Engine = "local",
    ray_address: str | None = None,
) -> Report:
    """Audit embeddings and return the typed report that ``embaudit check`` renders.

    ``source`` is a path (``.npy``, ``.npz``, ``.parquet``, a directory of parquet files) or a
    2-D float array of shape (n, d). ``k`` is the neighbour count of the kNN checks, ``seed`` fixes
    every random choice, ``trained_with`` declares the training objective (cosine, dot, l2 or
    unknown). ``key`` picks an ``.npz`` array; ``column`` and ``id_column`` name parquet columns.
    ``thresholds`` and ``severities`` ("warn" or "fail") override checks by code; ``select``,
    ``extend_select`` and ``ignore`` take code prefixes as ruff does. ``fail_on`` sets the gate of
    :meth:`Report.failed`. ``baseline`` (a previous export, read with the same options) adds the
    drift checks EA6xx. ``progress`` is told of each pass over the data (see
    :mod:`embaudit.progress`). ``engine`` runs the passes: ``"local"`` (this process) or
    ``"ray"`` (a Ray cluster at ``ray_address``, see :mod:`embaudit.engines`); both give the
    same report.

    Raises :class:`~embaudit.errors.InputError` for unreadable input and
    :class:`~embaudit.errors.UsageError` for invalid options.
    """
    started = time.perf_counter()
    params = validate_params(
        k=k,
        seed=seed,
        trained_with=trained_with,
        thresholds=thresholds,
        sampling=sampling,
        select=select,
        extend_select=extend_select,
        ignore=ignore,
        severities=severities,
    )
    gate = _fail_on(fail_on)
    opened = open_source(source, key=key, column=column, id_column=id_column)
    old = (
        None
        if baseline is None
        else open_source(baseline, key=key, column=column, id_column=id_column)
    )
    with _engine(engine, ray_address, opened, old) as runner:
        run = _Run(runner, chunk_rows, progress)
        measured, data, checks, verdict = _judge(opened, params, run, "audit")
        measured_at = time.perf_counter()
        if old is not None:
            baseline_data = _baseline(old, opened, params, run)
            data = replace(data, baseline=baseline_data, verdict=verdict)
            checks += run_checks(data, drift=True)
            verdict = decide(checks, params.trained_with)
    input_info = opened.describe()
    input_info["n_used"] = measured.stats.n_clean
    input_info["excluded_rows"] = {
        "non-finite": measured.stats.non_finite.count,
        "zero-vectors": measured.stats.zero.count,
    }
    if old is not None:
        input_info["baseline"] = old.describe()
    finished = time.perf_counter()
    return Report(
        tool=TOOL,
        input=input_info,
        params={
            "k": params.k,
            "seed": params.seed,
            "trained_with": params.trained_with.value,
            "fail_on": gate.value,
            **params.sampling.to_dict(),
            "engine": runner.name,
        },
        verdict=verdict,
        checks=checks,
        timings={
            **{f"{stage}_seconds": seconds for stage, seconds in measured.timings.items()},
            "measure_seconds": measured_at - started,
            "total_seconds": finished - started,
        },
        fail_on=gate,
    )


@dataclass(frozen=True)
class _Run:
    """How the passes of one command run: the engine, the chunk size, the progress display."""

    engine: Engine
    chunk_rows: int | None
    progress: PassReporter | None

    def reporting(self, action: str, source: EmbeddingSource) -> Callable[[int], None] | None:
        """The advance callback of one pass over ``source``, if progress is shown."""
        if self.progress is None:
            return None
        name = Path(source.path).name if source.path else "array"
        return self.progress(f"{action} {name}", source.n)


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


def _judge(
    source: EmbeddingSource, params: AuditParams, run: _Run, action: str
) -> tuple[Measurements, AuditData, list[CheckResult], Verdict]:
    """Measure a source, run the audit checks on it and decide the verdict."""
    measured = measure(
        source,
        k=params.k,
        seed=params.seed,
        sampling=params.sampling,
        chunk_rows=run.chunk_rows,
        on_rows=run.reporting(action, source),
        engine=run.engine,
        dead_ratio=params.threshold("EA004"),
    )
    data = AuditData(params, measured.stats, measured.geometry, measured.neighbors)
    checks = run_checks(data)
    return measured, data, checks, decide(checks, params.trained_with)


def _baseline(
    old: EmbeddingSource, new: EmbeddingSource, params: AuditParams, run: _Run
) -> Baseline:
    """Audit the baseline with the same options (its verdict and norms), and compare the
    neighbours of the items the two exports share."""
    measured, _, _, verdict = _judge(old, params, run, "baseline")
    comparison = compare_files(
        old,
        new,
        metric=OBJECTIVE_METRIC[params.trained_with],
        k=params.k,
        seed=params.seed,
        queries=params.sampling.queries,
        chunk_rows=run.chunk_rows,
        on_pass=lambda source: run.reporting("neighbours of", source),
        engine=run.engine,
    )
    return Baseline(old.path, comparison, measured.stats.clean_norms, verdict)


def compare_knn(
    old: Source,
    new: Source | None = None,
    *,
    k: int = 10,
    seed: int = 0,
    metric: str = "cosine",
    queries: int = 500,
    min_overlap: float | None = None,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    fail_on: str | Status = Status.FAIL,
    chunk_rows: int | None = None,
    progress: PassReporter | None = None,
    engine: str | Engine = "local",
    ray_address: str | None = None,
) -> CompareReport:
    """Compare nearest neighbours: of cosine, L2 and inner product on one file (``new`` None),
    or of the same items in two exports (matched by id column, else by row order).

    ``min_overlap`` turns the result into a gate: a comparison below it fails. ``engine`` and
    ``ray_address`` as in :func:`audit`.
    """
    started = time.perf_counter()
    _check_k(k)
    _positive("--seed", seed, smallest=0)
    _positive("--queries", queries)
    gate = _fail_on(fail_on)
    if metric not in ("cosine", "l2", "dot"):
        raise UsageError(f"--metric must be one of cosine, l2, dot, got {metric!r}")
    if min_overlap is not None and not 0.0 <= min_overlap <= 1.0:
        raise UsageError(f"--min-overlap must lie in [0, 1], got {min_overlap!r}")
    first = open_source(old, key=key, column=column, id_column=id_column)
    second = None if new is None else open_source(new, key=key, column=column, id_column=id_column)
    params: dict[str, Any] = {"k": k, "seed": seed, "queries": queries, "min_overlap": min_overlap}
    params["fail_on"] = gate.value
    with _engine(engine, ray_address, first, second) as runner:
        run = _Run(runner, chunk_rows, progress)
        report = _compare(first, second, run, k, seed, queries, metric, min_overlap, params, gate)
    return replace(
        report,
        params=report.params | {"engine": runner.name},
        timings={"total_seconds": time.perf_counter() - started},
    )


def _compare(
    first: EmbeddingSource,
    second: EmbeddingSource | None,
    run: _Run,
    k: int,
    seed: int,
    queries: int,
    metric: str,
    min_overlap: float | None,
    params: dict[str, Any],
    gate: Status,
) -> CompareReport:
    if second is None:
        result = compare_metrics(
            first,
            k=k,
            seed=seed,
            queries=queries,
            chunk_rows=run.chunk_rows,
            on_rows=run.reporting("neighbours of", first),
            engine=run.engine,
        )
        checks = [
            _gate_row(
                f"{pair.a}-vs-{pair.b}",
                pair.by_k[result.k],
                min_overlap,
                f"overlap@{result.k} {pair.by_k[result.k]:.3f}; top-1 differs for "
                f"{pair.top1_differs:.1%} of {result.queries} queries",
            )
            for pair in result.pairs
        ]
        report = CompareReport(
            tool=TOOL,
            mode="metrics",
            input=first.describe(),
            params=params | {"ladder": result.ladder},
            k=result.k,
            results={
                "queries": result.queries,
                "excluded_rows": result.excluded_rows,
                "pairs": [pair.to_dict(result.k) for pair in result.pairs],
            },
            checks=checks,
            fail_on=gate,
        )
    else:
        comparison = compare_files(
            first,
            second,
            metric=metric,
            k=k,
            seed=seed,
            queries=queries,
            chunk_rows=run.chunk_rows,
            on_pass=lambda source: run.reporting("neighbours of", source),
            engine=run.engine,
        )
        value = comparison.overlap_at_k
        report = CompareReport(
            tool=TOOL,
            mode="files",
            input={"old": first.describe(), "new": second.describe()},
            params=params | {"metric": metric, "ladder": comparison.ladder},
            k=comparison.k,
            results=comparison.to_dict(),
            checks=[
                _gate_row(
                    "neighbour-stability",
                    value,
                    min_overlap,
                    f"overlap@{comparison.k} {value:.3f} of {metric} neighbours for "
                    f"{comparison.queries} of {comparison.n_matched:,} matched items",
                )
            ],
            fail_on=gate,
        )
    return report


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


def audit_gauge(
    items: Source,
    users: Source,
    *,
    side: str = "items",
    k: int = 10,
    seed: int = 0,
    max_condition: float = 10.0,
    min_overlap: float = 0.5,
    sample: int = 2000,
    key: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    fail_on: str | Status = Status.FAIL,
) -> CompareReport:
    """Two-tower gauge audit (see :mod:`embaudit.gauge`): how far the cosine neighbours of
    items (``side="items"``), users, or ``"both"`` move under diagonal gauges
    (items·D, users·D⁻¹) with condition number at most ``max_condition``, which leave every
    user–item score unchanged. Fails when the worst overlap@k found is below ``min_overlap``:
    the model does not determine those neighbours.
    """
    started = time.perf_counter()
    _check_k(k)
    _positive("--seed", seed, smallest=0)
    _positive("--sample", sample, smallest=2)
    if k >= sample - 1:
        raise UsageError(f"-k {k} needs --sample larger than k + 1, got --sample {sample}")
    gate = _fail_on(fail_on)
    if side not in ("items", "users", "both"):
        raise UsageError(f"--side must be items, users or both, got {side!r}")
    if not 1.0 <= max_condition < float("inf"):
        raise UsageError(f"--max-condition must be finite and at least 1, got {max_condition!r}")
    if not 0.0 <= min_overlap <= 1.0:
        raise UsageError(f"--min-overlap must lie in [0, 1], got {min_overlap!r}")
    item_source = open_source(items, key=key, column=column, id_column=id_column)
    user_source = open_source(users, key=key, column=column, id_column=id_column)
    if item_source.d != user_source.d:
        raise InputError(
            user_source.path,
            f"has dimension {user_source.d}, but {item_source.path} has {item_source.d}: the "
            "two towers of a dot-product model share d",
        )
    settings = GaugeSettings(k=k, seed=seed, max_condition=max_condition, sample=sample)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    samples = {
        "items": draw_clean_rows(item_source, settings.sample, rng),
        "users": draw_clean_rows(user_source, settings.sample, rng),
    }
    towers = {name: rows for name, (_, rows, _) in samples.items()}
    left_out = {name: dropped for name, (_, _, dropped) in samples.items()}
    _, pair_items, _ = draw_clean_rows(item_source, settings.pairs, rng)
    _, pair_users, _ = draw_clean_rows(user_source, settings.pairs, rng)
    results, changes = [], []
    for name in ("items", "users") if side == "both" else (side,):
        if len(towers[name]) < 2:
            source = item_source if name == "items" else user_source
            raise InputError(source.path, "needs at least two finite, non-zero rows")
        result, worst = audit_side(name, towers[name], settings)
        results.append(result)
        # The worst gauge of the user side is D⁻¹ for the items.
        item_scale = worst if name == "items" else 1.0 / worst
        changes.append(prediction_change(pair_items, pair_users, item_scale))
    first = results[0]
    worst_overlap = min(result.worst_overlap_at_k for result in results)
    checks = [
        _gauge_row(result, min_overlap, change)
        for result, change in zip(results, changes, strict=True)
    ]
    # Summed over every row of both towers, not a sample: one more streaming pass of each.
    balancing = time.perf_counter()
    item_norms, user_norms = (
        column_norms((chunk.values for chunk in source.chunks()), source.d, source.dtype)
        for source in (item_source, user_source)
    )
    towers_balance = balance(item_norms, user_norms)
    checks.append(_balance_row(towers_balance))
    return CompareReport(
        tool=TOOL,
        mode="towers",
        kind="gauge",
        input={"items": item_source.describe(), "users": user_source.describe()},
        params={
            "k": k,
            "seed": seed,
            "side": side,
            "max_condition": max_condition,
            "min_overlap": min_overlap,
            "sample": settings.sample,
            "draws": settings.draws,
            "budget": settings.budget,
            "pairs": settings.pairs,
            "fail_on": gate.value,
        },
        k=first.k,
        results={
            "worst_overlap_at_k": worst_overlap,
            "overlap_by_condition": first.overlap_by_condition,
            "prediction_max_rel_change": max(changes),
            "cosine_range": first.cosine_range,
            "excluded_rows": left_out,
            "sides": [result.to_dict() for result in results],
            "balance": towers_balance.to_dict(),
        },
        checks=checks,
        timings={
            "balance_seconds": time.perf_counter() - balancing,
            "total_seconds": time.perf_counter() - started,
        },
        fail_on=gate,
    )


def _gauge_row(result: SideResult, min_overlap: float, change: float) -> CheckResult:
    value = result.worst_overlap_at_k
    failed = value < min_overlap
    message = (
        f"worst overlap@{result.k} {value:.3f} of {result.side[:-1]} cosine neighbours under a "
        f"gauge of condition {result.worst_condition:.3g} that changes no prediction "
        f"(max relative change {change:.1e})"
    )
    if failed:
        message += f": below {min_overlap:g}, cosine neighbours are not identified by the model"
    return CheckResult(
        code="",
        name=f"gauge-{result.side}",
        status=Status.FAIL if failed else Status.PASS,
        value=value,
        threshold=min_overlap,
        message=message,
        metrics={},
    )


def _balance_row(towers: Balance) -> CheckResult:
    """How far the towers are from the split weight decay on both of them selects: a warning when
    they are not there, since then nothing but the optimiser chose their split."""
    rows = f"over all {towers.rows['items']:,} item and {towers.rows['users']:,} user rows"
    dead = towers.dead
    both = f"; {len(dead['both'])} dimensions zero in both towers left out" if dead["both"] else ""
    if towers.condition is None and (dead["items"] or dead["users"]):
        one_sided = []
        for zero_in, other in (("users", "items"), ("items", "users")):
            if dead[zero_in]:
                shown = ", ".join(str(j) for j in dead[zero_in][:5])
                shown += ", …" if len(dead[zero_in]) > 5 else ""
                one_sided.append(
                    f"{len(dead[zero_in])} dimension(s) ({shown}) zero in the {zero_in} but not "
                    f"the {other}"
                )
        message = (
            f"{'; '.join(one_sided)}: no gauge balances them, and weight decay on both towers "
            "would have zeroed both, so the split is not the one per-factor L2 regularisation "
            "selects"
        )
        if towers.live_condition is not None:
            message += f" (the others: condition {towers.live_condition:.3g})"
    elif towers.condition is None:
        message = "no dimension is non-zero in both towers: there is no split to balance"
    elif towers.balanced:
        message = (
            f"balancing gauge of condition {towers.condition:.4g} ≤ {towers.tolerance:g} {rows}: "
            "every dimension has the same norm in both towers, the split weight decay on both "
            "towers (Steck et al. Eq. 2) selects; if it was so trained, the model fixes cosine "
            "up to a rotation"
        )
    else:
        message = (
            f"balancing gauge of condition {towers.condition:.3g} > {towers.tolerance:g} {rows}: "
            f"the ratio of user to item column norms varies {towers.condition**2:.3g}-fold "
            "across dimensions, so this is not the split weight decay on both towers selects: "
            "the split is arbitrary (a penalty on the product only, Steck et al. Eq. 1, or none) "
            "and cosine depends on it"
        )
    return CheckResult(
        code="",
        name="gauge-balance",
        status=Status.PASS if towers.balanced else Status.WARN,
        value=towers.condition,
        threshold=towers.tolerance,
        message=message + both,
        metrics={
            "live_condition": towers.live_condition,
            "log_scale_std": towers.log_scale_std,
            "dead_dimensions": {side: len(columns) for side, columns in dead.items()},
        },
    )
