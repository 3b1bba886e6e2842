"""EA1xx, norms: the L2 norm distribution and what it means for the index metric (EA101)."""

from __future__ import annotations

from typing import Any

from embaudit.checks.base import AuditData, register
from embaudit.checks.common import NORMALIZE, other_neighbours
from embaudit.model import Finding, Status
from embaudit.stats import NormSummary

#: Bins of the norm histogram carried in the metrics (and drawn by the table format).
HISTOGRAM_BINS = 20


def norm_histogram(norms: NormSummary, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    low, high = norms.min, norms.max
    if high - low <= 1e-12 * max(abs(high), 1e-300):
        return {"edges": [low, high], "counts": [norms.count]}
    edges, counts = norms.histogram(bins)
    return {"edges": [float(e) for e in edges], "counts": counts}


@register(
    "EA101",
    measures=(
        "relative half-range of the norms (max − min) / 2·p50; min, p1, p50, p99, max, CV; "
        "`normalized` when all within 1e-3 of 1"
    ),
    rule="warn above 1e-3 (pass for `dot`)",
    exact=True,
    summary="Distribution of the L2 norms; whether the vectors are normalized.",
    what=(
        "Computes the L2 norm of every finite, non-zero row (accumulated in float64) and reports "
        "min, p1, p50, p99, max and the coefficient of variation (std / mean). Its value is the "
        "relative half-range of the norms, (max - min) / (2 p50), which the threshold judges: "
        "at or below it every norm is the same up to rounding, so cosine, L2 and inner-product "
        "rankings agree; the data counts as normalized (metrics.normalized) when, in addition, "
        "every norm lies within the threshold of 1. The coefficient of variation is in "
        "metrics.cv. Beyond 4,194,304 rows the quantiles (p1, p50, p99, the histogram's counts) "
        "come from a KLL sketch of the norms (k = 1000) with a normalized rank error of 0.28% "
        "(99% confidence: the p99 given is the norm at some rank within 99% ± 0.28%), stated "
        "in metrics.quantile_rank_error; min, max, mean and CV stay exact, and the value's "
        "p50 then moves it by at most the factor max / min of the norms (1.002 at the "
        "threshold), which no gate decision near 1e-3 can turn on."
    ),
    why=(
        "On unit vectors 1 - cos(x, y) = ||x - y||^2 / 2, so cosine, L2 and inner-product rankings "
        "coincide and any index metric returns the cosine neighbours. When norms vary, an L2 or "
        "inner-product index returns different neighbours than cosine, and the norms themselves "
        "may carry signal (popularity, confidence) that cosine throws away."
    ),
    fix=(
        "If the model was trained for cosine, L2-normalize the vectors before indexing with L2 "
        "or inner product. If it was trained with the dot product, rank with the dot product "
        "and keep the norms."
    ),
    reference="Steck, Ekanadham & Kallus (2024), 'Is Cosine-Similarity of Embeddings Really "
    "About Similarity?', arXiv:2403.05440",
    threshold=1e-3,
    threshold_rationale=(
        "1e-3 relative: float16 rounding of a unit vector stays within it, while any deliberate "
        "rescaling exceeds it."
    ),
)
def norm_spread(data: AuditData, threshold: float) -> Finding:
    norms = data.stats.norm_summary
    if not norms.count:
        return Finding(Status.SKIP, None, "no finite, non-zero rows")
    tolerance = threshold
    p1, p50, p99 = norms.quantiles([0.01, 0.5, 0.99])
    mean, cv = norms.mean, norms.cv
    low, high = norms.min, norms.max
    half_range = (high - low) / (2 * p50)
    normalized = abs(low - 1.0) <= tolerance and abs(high - 1.0) <= tolerance
    constant = normalized or half_range <= tolerance
    metrics = {
        "min": low,
        "p1": p1,
        "p50": p50,
        "p99": p99,
        "max": high,
        "mean": mean,
        "cv": cv,
        "normalized": normalized,
        "histogram": norm_histogram(norms),
        "threshold_applies_to": "(max - min) / (2 p50) of the norms",
    }
    if norms.rank_error:
        metrics["quantile_rank_error"] = norms.rank_error
    if normalized:
        return Finding(
            Status.PASS, half_range, f"normalized: every norm within {tolerance:g} of 1", metrics
        )
    if constant:
        return Finding(
            Status.PASS,
            half_range,
            f"every norm is {p50:.6g} (within {tolerance:g} relative): cosine, L2 and "
            "inner-product rankings agree",
            metrics,
        )
    spread = f"norms vary (CV {cv:.3g}, p1 {p1:.4g}, p99 {p99:.4g})"
    trained_with = data.params.trained_with
    if trained_with.scores_with_dot:
        return Finding(
            Status.PASS,
            half_range,
            f"{spread}; a dot-product model uses them in its scores (the objective decides: "
            "not a finding for dot)",
            metrics,
        )
    indexes = "L2 and inner-product indexes"
    return other_neighbours(half_range, spread, indexes, metrics, trained_with, NORMALIZE)
