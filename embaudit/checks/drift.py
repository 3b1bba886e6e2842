"""Drift against a previous export (``embaudit check FILE --baseline OLD``): EA601 neighbour
stability, EA602 norm shift, EA603 verdict change."""

from __future__ import annotations

from embaudit.checks.base import AuditData, Baseline, register
from embaudit.checks.common import warned_if
from embaudit.model import Action, Advice, Finding, Status
from embaudit.stats import ks_statistic

NO_BASELINE = "needs --baseline"


def _baseline(data: AuditData) -> Baseline:
    assert data.baseline is not None  # the registry runs drift checks only with a baseline
    return data.baseline


@register(
    "EA601",
    measures=(
        "with `--baseline OLD`: overlap@k of each sampled item's neighbours in the two exports "
        "(matched by id column, else by row), under the objective's metric; standard error"
    ),
    rule="warn below 0.8",
    summary="How many of each item's neighbours survive from the baseline export.",
    what=(
        "Matches the items of the baseline and the current export (by id column, else by row "
        "order), and computes for a sample of items the overlap@k of their nearest neighbours "
        "(among the matched items) in the two exports, with the metric of the declared "
        "objective (cosine unless dot or l2), with its standard error over the sampled items. "
        "The same measure as `embaudit compare-knn OLD NEW`."
    ),
    why=(
        "A retrain or a pipeline change that moves most neighbourhoods changes every downstream "
        "recommendation and search result, even when each export looks healthy on its own."
    ),
    fix=(
        "Check that the change was intended (new model, new data); look at the items listed as "
        "changed most; pin the model or the preprocessing if it was not."
    ),
    threshold=0.8,
    threshold_rationale="Warn when fewer than 4 in 5 neighbours survive on average.",
    needs_baseline=True,
)
def neighbour_stability(data: AuditData, threshold: float) -> Finding:
    comparison = _baseline(data).comparison
    value = comparison.overlap_at_k
    metrics = comparison.to_dict()
    message = (
        f"overlap@{comparison.k} {value:.3f} of {comparison.metric} neighbours with the baseline "
        f"({comparison.n_matched:,} items matched by {comparison.matched_by})"
    )
    return warned_if(
        value < threshold,
        value,
        message,
        metrics,
        Advice(
            "Check that the neighbourhood change against the baseline is intended",
            (Action.NEIGHBOUR_DRIFT,),
        ),
    )


@register(
    "EA602",
    measures=(
        "with `--baseline OLD`: Kolmogorov–Smirnov statistic between the two exports' norms, and "
        "the median norm's relative change"
    ),
    rule="warn > 0.1",
    exact=True,
    summary="Shift of the norm distribution against the baseline export.",
    what=(
        "Computes the two-sample Kolmogorov–Smirnov statistic between the norms of the finite, "
        "non-zero rows of the baseline and of the current export, and the relative change of "
        "the median norm."
    ),
    why=(
        "A shift of the norms means the export changed scale or normalization: L2 and "
        "inner-product indexes, similarity thresholds and score calibrations built on the "
        "baseline no longer fit."
    ),
    fix="Check the normalization step of the export pipeline; rebuild indexes and thresholds.",
    threshold=0.1,
    threshold_rationale="Warn when the norm CDFs differ by more than 0.1 anywhere.",
    needs_baseline=True,
)
def norm_shift(data: AuditData, threshold: float) -> Finding:
    baseline = _baseline(data).norms
    current = data.stats.norm_summary
    if not baseline.count or not current.count:
        return Finding(Status.SKIP, None, "needs finite, non-zero rows in both exports")
    statistic = ks_statistic(baseline, current)
    [old_median], [new_median] = baseline.quantiles([0.5]), current.quantiles([0.5])
    change = new_median / old_median - 1
    metrics = {
        "ks_statistic": statistic,
        "median_before": old_median,
        "median_after": new_median,
        "median_change": change,
    }
    message = f"KS statistic {statistic:.3f}; median norm {old_median:.4g} -> {new_median:.4g}"
    return warned_if(
        statistic > threshold,
        statistic,
        message,
        metrics,
        Advice(
            "Check the normalization of the export; rebuild indexes and thresholds fitted to the "
            "baseline",
            (Action.NORM_DRIFT,),
        ),
        "the norm distribution shifted",
    )


@register(
    "EA603",
    measures=(
        "with `--baseline OLD`: how many levels the verdict dropped against the baseline's, audited"
        " with the same options"
    ),
    rule="warn on any step down",
    summary="Whether the verdict got worse than the baseline's.",
    what=(
        "Audits the baseline with the same options and compares the two verdicts "
        "(trustworthy < caution < untrustworthy). The value is the change in levels."
    ),
    why="An export that used to be trustworthy and no longer is should not ship silently.",
    fix="Read the reasons of the current verdict; compare with `embaudit check OLD`.",
    threshold=0,
    threshold_rationale="Warn on any step down.",
    needs_baseline=True,
)
def verdict_change(data: AuditData, threshold: float) -> Finding:
    before = _baseline(data).verdict.level
    assert data.verdict is not None  # drift checks run after the verdict of the other checks
    after = data.verdict.level
    change = float(after.rank - before.rank)
    metrics = {"before": before.value, "after": after.value}
    message = f"verdict {before.value} -> {after.value}"
    return warned_if(
        change > threshold,
        change,
        message,
        metrics,
        Advice(
            "Compare with the baseline's report: the verdict got worse", (Action.VERDICT_DRIFT,)
        ),
        "worse than the baseline",
    )
