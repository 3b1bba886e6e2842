"""EA2xx, geometry: mean cosine (EA201), a common direction (EA202), the spectrum (EA203), rogue
dimensions (EA204), the spread of column scales (EA205) and distance concentration (EA206)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embaudit import geometry
from embaudit.array_types import Ints
from embaudit.checks.base import AuditData, Sampled, register, threshold_of
from embaudit.checks.common import (
    FEW_ROWS,
    geometry_fix,
    on_hygiene,
    on_sample,
    warned_if,
)
from embaudit.estimates import Z95, median_standard_error
from embaudit.figures import beside
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.measurement.sample import Geometry
from embaudit.model import Action, Advice, Finding, Level, Status, TrainedWith
from embaudit.stats import dead_dimension_mask

#: Mean cosine above which the cloud counts as collapsed (EA201 fails).
COLLAPSE_MEAN_COSINE = 0.9


#: r^2 between cosines with and without the rogue dimensions below which they decide cosine.
ROGUE_R2_FLOOR = 0.5


#: EA203 and EA205, on the sample: measured again on a larger one.
ON_SAMPLE: Sampled = {"samples": ("sample",), "reads": ("sample",)}


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@register(
    "EA201",
    measures="exact mean cosine over all pairs; pair spread; isotropic reference 0 ± 1/√d",
    rule="warn > 0.5, fail > 0.9 (collapse)",
    exact=True,
    summary="Mean cosine over all pairs of rows, next to its isotropic reference.",
    what=(
        "Computes the exact mean cosine over all pairs of distinct finite, non-zero rows (from "
        "per-dimension sums of the unit vectors), and the spread of the cosines of random pairs "
        "from the sample. An isotropic cloud gives 0 with a pair spread of about 1/sqrt(d)."
    ),
    why=(
        "When every pair of vectors has a high cosine, the cosines are squeezed into a narrow "
        "band: a shared component dominates them, small differences decide every ranking, and "
        "similarity thresholds stop meaning anything. Above 0.9 the geometry has collapsed."
    ),
    fix=(
        "Centre the vectors (subtract the mean) and remove the top principal components before "
        "using cosine; for a model you train, use a contrastive objective on the sphere "
        "(InfoNCE), which spreads the vectors out."
    ),
    reference=(
        "Ethayarajh (2019), 'How Contextual are Contextualized Word Representations?'; "
        "Timkey & van Schijndel (2021), 'All Bark and No Bite', EMNLP"
    ),
    threshold=0.5,
    threshold_rationale=(
        "Warn above 0.5: half of every cosine is then a shared offset. Fail above "
        f"{COLLAPSE_MEAN_COSINE} (collapse). Calibration: two cosine-trained sentence encoders "
        "on distinct docstring paragraphs give 0.091 (all-MiniLM-L6-v2, 6,000 rows) and 0.093 "
        "(all-mpnet-base-v2, 2,000 rows), normalized or not; generated encoder-like corpora "
        "0.15 with a weak common direction and 0.58 with a strong one (as anisotropic encoders "
        "have: a warning). A shared vector added to the MiniLM rows before normalizing raises "
        "it to 0.25 (half as long as a row), 0.53 (as long: a warning) and 0.95 (four times: "
        "a failure)."
    ),
)
def mean_cosine(data: AuditData, threshold: float) -> Finding:
    stats, sample = data.stats, data.geometry
    n = stats.n_clean
    if n < 2:
        return Finding(Status.SKIP, None, FEW_ROWS)
    unit_sum = stats.unit_sum
    mean = float((unit_sum @ unit_sum - stats.unit_sq_sum.sum()) / (n * (n - 1)))
    metrics: dict[str, object] = {
        "mean": mean,
        "reference": {"mean": 0.0, "pair_std": 1 / math.sqrt(stats.d)},
    }
    if sample is not None and len(sample.pair_cosines):
        cosines = sample.pair_cosines
        p5, p50, p95 = (float(q) for q in np.quantile(cosines, [0.05, 0.5, 0.95]))
        metrics |= {"pairs": len(cosines), "pair_std": float(cosines.std())}
        metrics |= {"p5": p5, "p50": p50, "p95": p95}
        counts, edges = np.histogram(cosines, bins=50, range=(-1.0, 1.0))
        metrics["pair_histogram"] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
        }
    if mean > COLLAPSE_MEAN_COSINE:
        return Finding(
            Status.FAIL,
            mean,
            f"mean cosine {mean:.3f}: the cloud has collapsed into a narrow cone "
            f"(isotropic: 0 ± {1 / math.sqrt(stats.d):.3f})",
            metrics,
            impact=Level.UNTRUSTWORTHY,
            recommendation=geometry_fix(data.params.trained_with),
        )
    if mean > threshold:
        return Finding(
            Status.WARN,
            mean,
            f"mean cosine {beside(mean, threshold, '.3f')} > {threshold:g}: a shared component "
            "inflates every cosine",
            metrics,
            recommendation=geometry_fix(data.params.trained_with),
        )
    return Finding(
        Status.PASS,
        mean,
        f"mean cosine {mean:.3f} (isotropic: 0 ± {1 / math.sqrt(stats.d):.3f})",
        metrics,
    )


@register(
    "EA202",
    measures="‖mean‖ / mean ‖x‖; isotropic reference 1/√n",
    rule="warn > 0.5",
    exact=True,
    summary="Length of the mean vector relative to the mean length: a shared offset.",
    what=(
        "Computes ||mean(x)|| / mean(||x||) over the finite, non-zero rows. 0 means no common "
        "offset; 1 means every vector is the same. A zero-mean isotropic cloud of n rows gives "
        "about 1/sqrt(n)."
    ),
    why=(
        "A common direction adds the same amount to every cosine, so it compresses the range of "
        "cosines and makes the most 'central' items everyone's neighbours. It is the usual cause "
        "of anisotropy in encoder embeddings."
    ),
    fix="Subtract the mean vector (computed on the corpus) before normalizing and indexing.",
    reference="Mu & Viswanath (2018), 'All-but-the-Top: Simple and Effective Postprocessing "
    "for Word Representations', ICLR",
    threshold=0.5,
    threshold_rationale=(
        "Above 0.5 the offset is as long as half a typical vector. On unit rows the value "
        "squared is the mean cosine plus (1 - mean cosine) / n, so 0.5 is a mean cosine of "
        "about 0.25: this check warns before EA201 does. Calibration: 0.30 and 0.31 for two cosine-"
        "trained sentence encoders on distinct docstring paragraphs (all-MiniLM-L6-v2, 6,000 "
        "rows; all-mpnet-base-v2, 2,000 rows), normalized or not; generated encoder-like "
        "corpora 0.39 with a weak common direction and 0.76 with a strong one (a warning); the "
        "MiniLM rows with a shared vector added give 0.502 when it is half as long as a row "
        "(just a warning) and 0.73 when as long."
    ),
)
def common_direction(data: AuditData, threshold: float) -> Finding:
    stats = data.stats
    if stats.n_clean < 2:
        return Finding(Status.SKIP, None, FEW_ROWS)
    norms = stats.norm_summary
    scale = norms.max
    if norms.exact is not None:
        mean_length = float(np.mean(norms.exact / scale))
    else:
        mean_length = norms.mean / scale
    ratio = float(np.linalg.norm(stats.moments.mean / scale) / mean_length)
    metrics = {"ratio": ratio, "reference": 1 / math.sqrt(stats.n_clean)}
    if ratio > threshold:
        return Finding(
            Status.WARN,
            ratio,
            f"the mean vector is {ratio:.2f} of the mean length: a common direction",
            metrics,
            recommendation=geometry_fix(data.params.trained_with),
        )
    return Finding(Status.PASS, ratio, f"no dominant common direction ({ratio:.3f})", metrics)


@register(
    "EA203",
    measures=(
        "top-PC share (the value), effective rank, IsoScore, next to an isotropic sample of the "
        "same size"
    ),
    rule="warn when the top PC > 0.5",
    summary="Covariance spectrum: top component share, effective rank, IsoScore.",
    what=(
        "Computes the covariance eigenvalues of the sample, the share of variance of the top "
        "principal component, the effective rank (Roy & Vetterli 2007: exp of the entropy of the "
        "normalized singular values of the centred data) and IsoScore (Rudman et al. 2022, 1 for "
        "an isotropic cloud, 0 for a line). Each is reported next to the value an isotropic "
        "Gaussian sample of the same size and dimension gives. IsoScore and the effective rank "
        "are biased low when the sample is not much larger than d. The value, the top "
        "component's share, carries a standard error over the sample's rows: the delta method "
        "with the influence function of the top eigenvalue (Critchley 1985), which holds while "
        "that eigenvalue stands apart from the next."
    ),
    why=(
        "When one direction carries most of the variance, cosine mostly measures the position "
        "along it. A low effective rank means the embedding uses few of its dimensions."
    ),
    fix="Centre the vectors and remove the top principal component(s) before using cosine.",
    reference=(
        "Rudman, Gillman, Rayne & Eickhoff (2022), 'IsoScore: Measuring the Uniformity of "
        "Embedding Space Utilization', Findings of ACL; Roy & Vetterli (2007), 'The effective "
        "rank', EUSIPCO"
    ),
    threshold=0.5,
    threshold_rationale="Warn when the top component carries more than half of the variance.",
    **ON_SAMPLE,
)
@on_sample
def spectrum(data: AuditData, sample: Geometry, threshold: float) -> Finding:
    reference = sample.reference
    metrics = {
        "isoscore": sample.isoscore,
        "effective_rank": sample.effective_rank,
        "top_share": sample.top_share,
        "standard_error": sample.top_share_error,
        "threshold_applies_to": "top_share",
        "top_eigenvalues": [float(v) for v in sample.eigenvalues[:10]],
        "eigenvalues": [float(v) for v in sample.eigenvalues],
        "sample": sample.m,
        "reference": {
            "isoscore": reference.isoscore,
            "effective_rank": reference.effective_rank,
            "top_share": reference.top_share,
        },
    }
    summary = (
        f"IsoScore {sample.isoscore:.3f} (isotropic {reference.isoscore:.3f}), effective rank "
        f"{sample.effective_rank:.1f} of {data.stats.d} (isotropic "
        f"{reference.effective_rank:.1f})"
    )
    message = f"the top component carries {sample.top_share:.0%} of the variance; {summary}"
    fix = geometry_fix(data.params.trained_with)
    return warned_if(sample.top_share > threshold, sample.top_share, message, metrics, fix)


@register(
    "EA204",
    measures="share of the expected cosine carried by the top 3 dimensions; r² without them",
    rule="warn > 0.5; fail if also r² < 0.5",
    summary="A few dimensions that decide most of every cosine.",
    what=(
        "Computes each dimension's contribution to the expected cosine of two distinct rows, "
        "CC_i = E[u_i v_i] for unit vectors u, v (Timkey & van Schijndel 2021), exactly from "
        "per-dimension sums. Reports the share of the three largest contributions (exact: "
        "metrics.standard_error is null) and the r^2 between the cosines of random pairs of "
        "the sample with and without those three dimensions, which decides between a warning "
        "and a failure. The r^2 is an estimate: metrics.r2_standard_error is the delta "
        "method's, with the variance of pairs that share a row (dyadic-robust), so it covers "
        "the draw of the sample's rows and of the pairs."
    ),
    why=(
        "When three dimensions account for most of the expected cosine, cosine similarity "
        "mostly measures those dimensions (often positional or frequency artefacts). If removing "
        "them reshuffles the cosines (low r^2), rankings are decided by them."
    ),
    fix=(
        "Standardize the dimensions (z-score each column) or drop the listed dimensions before "
        "using cosine. Not for a dot-product model (--trained-with dot): there the dominant "
        "dimensions are its top singular directions (often popularity), which its scores rely "
        "on; rank with the dot product, or compare items in the users' metric B·(AᵀA)^½ that "
        "`embaudit gauge` reports."
    ),
    reference="Timkey & van Schijndel (2021), 'All Bark and No Bite: Rogue Dimensions in "
    "Transformer Language Models Obscure Representational Quality', EMNLP",
    threshold=0.5,
    threshold_rationale=(
        "Warn when three dimensions carry more than half of the expected cosine; fail when, in "
        f"addition, the cosines without them keep r^2 < {ROGUE_R2_FLOOR} with the originals."
    ),
    samples=("sample", "pairs"),
    reads=("sample",),
)
def rogue_dimensions(data: AuditData, threshold: float) -> Finding:
    stats, sample = data.stats, data.geometry
    n = stats.n_clean
    if n < 2 or sample is None:
        return Finding(Status.SKIP, None, FEW_ROWS)
    cc = (stats.unit_sum**2 - stats.unit_sq_sum) / (n * (n - 1))
    mean_cosine = float(cc.sum())
    dims = sample.rogue_dimensions
    metrics: dict[str, object] = {
        "dimensions": dims,
        "contributions": [float(cc[j]) for j in dims],
        "all_contributions": [float(v) for v in cc],
        "mean_cosine": mean_cosine,
        "r2_without": _nan_to_none(sample.rogue_r2),
        "r2_standard_error": sample.rogue_r2_error,
        "standard_error": None,  # the share is exact
        "sample": sample.m,
        "pairs": len(sample.pair_cosines),
    }
    noise = 1 / math.sqrt(stats.d)
    if mean_cosine <= noise:
        metrics["share"] = None
        return Finding(
            Status.PASS,
            None,
            f"mean cosine {mean_cosine:.3f} is within isotropic noise: no cosine to dominate",
            metrics,
        )
    share = float(cc[dims].sum() / mean_cosine)
    metrics["share"] = share
    if share <= threshold:
        return Finding(
            Status.PASS,
            share,
            f"the top 3 dimensions carry {share:.0%} of the mean cosine",
            metrics,
        )
    return _dominated(data, share, metrics)


def _dominated(data: AuditData, share: float, metrics: dict[str, object]) -> Finding:
    """EA204 when the top dimensions carry more than the threshold's share of the mean cosine:
    a failure when the rankings depend on them (r^2 without them below the floor), else a
    warning; the action depends on whether the model scores with the dot product."""
    sample = data.geometry
    assert sample is not None
    names = ", ".join(map(str, sample.rogue_dimensions))
    r2, r2_error = sample.rogue_r2, sample.rogue_r2_error
    if r2_error and abs(r2 - ROGUE_R2_FLOOR) <= Z95 * r2_error:
        # Which side of the floor r^2 lies on decides failure or warning: the sample decides.
        metrics["undecided_by"] = (
            f"the r^2 floor {ROGUE_R2_FLOOR:g} lies within {r2:.3g} ± {Z95 * r2_error:.2g}"
        )
    action = Advice(
        f"Standardize the dimensions, or drop dimensions {names}, before using cosine",
        (Action.DOMINANT_DIMENSIONS,),
        specificity=1,
    )
    if data.params.trained_with.scores_with_dot:
        # In a dot-product model the largest dimensions are usually its top singular directions
        # (popularity, say): dropping them removes what the scores rely on.
        action = Advice(
            f"Keep dimensions {names} of a dot-product model (they carry its strongest "
            "directions, e.g. popularity); to compare items with each other, use the users' "
            "metric (embaudit gauge)",
            (Action.DOMINANT_DIMENSIONS,),
            specificity=1,
        )
    if not math.isnan(r2) and r2 < ROGUE_R2_FLOOR:
        return Finding(
            Status.FAIL,
            share,
            f"dimensions {names} carry {share:.0%} of the mean cosine and decide rankings "
            f"(r^2 {r2:.2f} without them)",
            metrics,
            impact=Level.UNTRUSTWORTHY,
            recommendation=action,
        )
    return Finding(
        Status.WARN,
        share,
        f"dimensions {names} carry {share:.0%} of the mean cosine",
        metrics,
        recommendation=action,
    )


@register(
    "EA205",
    measures="std of log per-dimension std: how much a gauge matters",
    rule="warn > 0.5 (`dot`, `unknown`)",
    summary="Spread of the per-dimension standard deviations: how much a gauge matters.",
    what=(
        "Computes the standard deviation of log(std_i) over the dimensions that are not dead "
        "(EA004's rule), on the sample. Equal scales give 0; an isotropic Gaussian sample of "
        "m rows gives about 1/sqrt(2(m-1)) from sampling noise alone. Its standard error over "
        "the sample's rows is the delta method's (the influence of a row on each log std_j is "
        "(c_j^2 / var_j - 1) / 2)."
    ),
    why=(
        "Cosine weighs each dimension by its scale. For a model trained with a dot product the "
        "per-dimension scale is an arbitrary gauge (A D, B D^-1 give the same scores), so a wide "
        "spread means cosine neighbours reflect the optimiser's choice of scales."
    ),
    fix=(
        "If the model was trained with a dot product, rank with the dot product. If you need "
        "cosine, standardize the columns (a gauge-invariant choice) and say so."
    ),
    reference="Steck, Ekanadham & Kallus (2024), 'Is Cosine-Similarity of Embeddings Really "
    "About Similarity?', arXiv:2403.05440",
    threshold=0.5,
    threshold_rationale=(
        "0.5: one standard deviation of the log-scales is a factor e^0.5 ≈ 1.65 between dimensions."
    ),
    **ON_SAMPLE,
)
@on_sample
def scale_spread(data: AuditData, sample: Geometry, threshold: float) -> Finding:
    std = sample.column_std
    alive = ~dead_dimension_mask(std, sample.rms_coordinate, threshold_of(data.params, "EA004"))
    if alive.sum() < 2:
        return Finding(Status.SKIP, None, "needs at least 2 dimensions that vary")
    log_std = np.log(std[alive])
    spread = float(log_std.std())
    ratio = float(np.exp(log_std.max() - log_std.min()))
    metrics = {
        "log_std_spread": spread,
        "standard_error": sample.scale_spread_error,
        "max_over_min": ratio,
        "reference": 1 / math.sqrt(2 * (sample.m - 1)),
        "sample": sample.m,
    }
    message = f"std of log per-dimension scales {spread:.3f}; largest/smallest {ratio:.3g}"
    return warned_if(
        spread > threshold and data.params.trained_with in (TrainedWith.DOT, TrainedWith.UNKNOWN),
        spread,
        message,
        metrics,
        None,
        "cosine depends on these scales, which a dot-product model leaves free",
    )


@register(
    "EA206",
    measures=(
        "median relative contrast (mean cosine distance to every other row / distance to the "
        "nearest), next to its closed form for an isotropic corpus of the same n and d"
    ),
    rule="warn below 1.1 × isotropic",
    summary="Relative contrast: how much nearer the nearest row is than a random one.",
    what=(
        "For each query, the relative contrast: its mean cosine distance (1 − cosine) to every "
        "other clean row of the corpus (exact, from the pass's sum of unit rows) divided by its "
        "cosine distance to its nearest row. The value is the median over the queries, with a "
        "bootstrap standard error over them, next to the same median for an isotropic corpus "
        "of the same size and dimension (a closed form: its mean distance is 1 and its nearest "
        "cosine the median of the largest of n − 1 cosines of uniform directions)."
    ),
    why=(
        "When every row is about as far from a query as its nearest neighbour (contrast near "
        "1), distances carry little signal: users see 'every score is 0.8-something', small "
        "perturbations reorder the top-k, and approximate indexes lose recall. Contrast no "
        "better than in isotropic noise of the same size means the neighbours do not stand out."
    ),
    fix=(
        "Remove the common direction (centre the vectors) and the rogue dimensions (EA202, "
        "EA204), or reduce the dimension (PCA whitening); check that the model was not "
        "collapsed by its training."
    ),
    reference=(
        'Beyer, Goldstein, Ramakrishnan & Shaft (1999), \'When is "nearest neighbor" '
        "meaningful?', ICDT; Aggarwal, Hinneburg & Keim (2001), 'On the surprising behavior of "
        "distance metrics in high dimensional space', ICDT; He, Kumar & Chang (2012), 'On the "
        "difficulty of nearest neighbor search', ICML (relative contrast)"
    ),
    threshold=1.1,
    threshold_rationale=(
        "Warn when the median contrast is below 1.1 times the isotropic one: the nearest rows "
        "stand out no more than in noise. Isotropic corpora of 100,000 rows give 1.28 at "
        "d = 384 and 1.18 at d = 768; generated sentence-encoder-like corpora 3.2 to 3.3 "
        "(5,000 to 20,000 rows, d = 384) and 4.9 (d = 64)."
    ),
)
@on_hygiene
def distance_concentration(
    data: AuditData, hygiene: QueryHygiene, queries: Ints, threshold: float
) -> Finding:
    mean_distance = 1.0 - hygiene.mean_cosine[queries]
    nearest_distance = 1.0 - hygiene.nearest_cosine[queries]
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(nearest_distance > 0, mean_distance / nearest_distance, np.inf)
    median = float(np.median(contrast))
    n, d = data.stats.n_clean, data.stats.d
    isotropic = 1.0 / (1.0 - geometry.isotropic_nearest_cosine(n - 1, d))
    metrics: dict[str, Any] = {
        "median": median,
        "standard_error": median_standard_error(contrast),
        # Observed values, not interpolated: a contrast is infinite where a copy is nearest.
        "p10": float(np.quantile(contrast, 0.1, method="inverted_cdf")),
        "p90": float(np.quantile(contrast, 0.9, method="inverted_cdf")),
        "mean_cosine_distance": float(np.median(mean_distance)),
        "nearest_cosine_distance": float(np.median(nearest_distance)),
        "queries": len(queries),
        "reference": {"median": isotropic, "n": n, "d": d},
    }
    message = f"median relative contrast {median:.3g} (isotropic {isotropic:.3g})"
    return warned_if(
        median < threshold * isotropic,
        median,
        message,
        metrics,
        geometry_fix(data.params.trained_with),
        "the nearest rows stand out no more than in isotropic noise",
    )
