"""Corpus hygiene, read from the neighbour lists of the query sample and the sample's kNN graph:
EA005 near-duplicates, EA206 distance-concentration, EA502 graph-islands, EA503 isolated-rows.

They describe the corpus, not whether cosine fits the model: like EA003 they warn (EA005 also
fails) without lowering the verdict, and the gate fails on them as on any warning or failure."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit import geometry
from embaudit.checks.base import AuditData, register
from embaudit.checks.neighbors import SKIP
from embaudit.estimates import mean_standard_error, median_standard_error
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.model import Finding, Status

Floats = npt.NDArray[np.float64]

#: EA005 fails above this share (it warns above its threshold).
NEAR_DUPLICATE_FAIL = 0.10
#: EA503's floor: the median nearest cosine less this many (normal-consistent) MADs.
FLOOR_MADS = 3.0
#: The median absolute deviation of a normal sample times this is its standard deviation.
MAD_TO_SD = 1.482602218505602


def _share(flags: npt.NDArray[np.bool_]) -> tuple[float, float | None]:
    """A share over the queries and its standard error (a mean of 0/1 values)."""
    values = flags.astype(np.float64)
    return float(values.mean()), mean_standard_error(values)


def _estimate(share: float, error: float | None, queries: int, external: bool = False) -> str:
    """'1.2% of rows (± 0.5%)', or for none seen '0 of 500 sampled rows (< 0.6% at 95%)':
    with no hit the standard error is 0, so the rule of three bounds the share instead.
    With a query file, of the queries."""
    what = "queries" if external else "rows"
    if share == 0:
        return f"0 of {queries:,} sampled {what} (< {3 / queries:.1%} at 95%)"
    return f"{share:.1%} of {what} (± {error or 0:.1%})"


def _with_hygiene(data: AuditData) -> tuple[QueryHygiene, npt.NDArray[np.int64]] | None:
    neighbors = data.neighbors
    if neighbors is None or neighbors.hygiene is None:
        return None
    hygiene = neighbors.hygiene
    found = hygiene.nearest_row >= 0
    return (hygiene, np.flatnonzero(found)) if found.any() else None


@register(
    "EA005",
    summary="Rows whose nearest other row is almost the same direction (cosine ≥ 0.99).",
    what=(
        "For each query of the sample, the cosine of its nearest other row (exact search, the "
        "query's own row left out). The value is the share of queries whose nearest row has "
        "cosine ≥ near-duplicate-cosine (default 0.99; --near-duplicate-cosine or the config), "
        "leaving out exact copies (same values: EA003 counts those). It estimates the share of "
        "such rows in the whole corpus; metrics.standard_error is the error of that estimate "
        "over the queries (a mean of 0/1 values: sqrt(p(1 − p) / queries)). metrics.examples "
        "lists the closest pairs (ids when the input has an id column)."
    ),
    why=(
        "Near-duplicates (the same passage chunked twice, boilerplate, templated items, a "
        "document and its lightly edited copy) fill a top-k with copies of one result: users "
        "see 'top-k is full of copies', and retrieval-augmented generation spends its context "
        "on one fact. They also pile up in one spot of an HNSW graph."
    ),
    fix=(
        "Deduplicate before indexing (MinHash or the embedding itself: cluster rows whose "
        "cosine passes the threshold and keep one), or diversify results at query time "
        "(maximal marginal relevance)."
    ),
    reference=(
        "Broder (1997), 'On the resemblance and containment of documents'; Carbonell & "
        "Goldstein (1998), 'The use of MMR, diversity-based reranking for reordering documents "
        "and producing summaries', SIGIR"
    ),
    threshold=0.01,
    threshold_rationale=(
        f"Warn above 1% of rows, fail above {NEAR_DUPLICATE_FAIL:.0%}: at 1% a top-10 list "
        "shows a copy for about one query in ten; at 10% copies are the rule. Generated "
        "encoder-like corpora without planted copies have none at cosine 0.99."
    ),
    samples=("queries",),
    reads=("lists",),
)
def near_duplicates(data: AuditData, threshold: float) -> Finding:
    found = _with_hygiene(data)
    if found is None:
        return Finding(Status.SKIP, None, SKIP)
    hygiene, queries = found
    cutoff = data.params.near_duplicate_cosine
    nearest = hygiene.nearest_cosine[queries]
    near = (nearest >= cutoff) & ~hygiene.exact_copy[queries]
    share, error = _share(near)
    order = queries[near][np.argsort(-hygiene.nearest_cosine[queries][near], kind="stable")]
    examples = [
        {
            "row": hygiene.query_name(int(q)),
            "nearest": hygiene.row_name(int(hygiene.nearest_row[q])),
            "cosine": float(hygiene.nearest_cosine[q]),
        }
        for q in order[:5]
    ]
    metrics: dict[str, Any] = {
        "share": share,
        "standard_error": error,
        "upper_95": 3 / len(queries) if share == 0 else None,
        "near_duplicate_cosine": cutoff,
        "queries": len(queries),
        "near": int(near.sum()),
        "exact_copies": int(hygiene.exact_copy[queries].sum()),
        "examples": examples,
    }
    where = " in the corpus" if hygiene.external else ""
    message = (
        f"{_estimate(share, error, len(queries), hygiene.external)} have a near-duplicate"
        f"{where} at cosine ≥ {cutoff:g}"
    )
    if examples:
        first = examples[0]
        pair = "query {} and row {}" if hygiene.external else "{} and {}"
        named = pair.format(first["row"], first["nearest"])
        message += f" (e.g. {named}: {first['cosine']:.4f})"
    if share > max(threshold, NEAR_DUPLICATE_FAIL):
        return Finding(
            Status.FAIL,
            share,
            f"{message}: top-k lists fill with copies",
            metrics,
            recommendation="Deduplicate near-identical rows before indexing (or diversify "
            "results with MMR)",
        )
    if share > threshold:
        return Finding(
            Status.WARN,
            share,
            message,
            metrics,
            recommendation="Deduplicate near-identical rows before indexing",
        )
    return Finding(Status.PASS, share, message, metrics)


@register(
    "EA206",
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
def distance_concentration(data: AuditData, threshold: float) -> Finding:
    found = _with_hygiene(data)
    if found is None:
        return Finding(Status.SKIP, None, SKIP)
    hygiene, queries = found
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
    if median < threshold * isotropic:
        return Finding(
            Status.WARN,
            median,
            f"{message}: the nearest rows stand out no more than in isotropic noise",
            metrics,
            recommendation="Centre the vectors and remove dominant directions before indexing",
        )
    return Finding(Status.PASS, median, message, metrics)


@register(
    "EA502",
    summary="Rows in small islands of the mutual kNN graph, which graph indexes reach badly.",
    what=(
        "On the cosine 10-nearest-neighbour graph of the sample (EA501's graph when k = 10; "
        "the degree stays 10 whatever k, since islands are a property of the index's graph and "
        "their share falls steeply with the degree), keeps the mutual edges (each row among the "
        "other's 10 nearest) and finds the connected components. The value is the share of "
        "sample rows in components of 2 to 10 rows: groups too small to hold a neighbour list "
        "of their own, linked to the rest only one way. Rows with no mutual "
        "neighbour at all are EA501's antihubs, mostly: their share is metrics.single_rows. "
        "Next to the same share for an isotropic Gaussian sample of the same size and dimension. "
        "Its standard_error treats the components as the sampled units (rows of one component "
        "count or not together): the ratio estimator's error of cluster sampling."
    ),
    why=(
        "Graph indexes (HNSW, NSG, DiskANN) keep roughly mutual links; a small tight group is "
        "reached only through one-way links, so a greedy search finds it late or never: items "
        "the index does not return, or returns only to each other ('the same three chunks come "
        "back')."
    ),
    fix=(
        "Look at what the groups are (templated or boilerplate items, a second language, a "
        "broken batch) and fix or remove them; raise the index's M and ef_construction; centre "
        "the vectors."
    ),
    reference=(
        "Maier, Hein & von Luxburg (2009), 'Optimal construction of k-nearest-neighbor graphs "
        "for identifying noisy clusters', TCS; Malkov & Yashunin (2020), HNSW, IEEE TPAMI"
    ),
    threshold=0.05,
    threshold_rationale=(
        "Warn above 5% of the rows. Calibration, k = 10, 3,000- to 5,000-row samples: "
        "isotropic Gaussians 0; generated clustered encoder-like corpora 1.4% to 2.8% (and 9% "
        "to 10% single rows); the same corpora with 4% to 20% of their rows moved into tight "
        "groups of 4 or 5, 7% to 13%."
    ),
    samples=("graphs",),
    reads=("graphs",),
)
def graph_islands(data: AuditData, threshold: float) -> Finding:
    sample = data.geometry
    if sample is None or sample.graph.island_k == 0:
        return Finding(Status.SKIP, None, "needs at least 2 finite, non-zero rows")
    graph = sample.graph
    share = graph.island_share
    reference = sample.reference.island_share
    metrics: dict[str, Any] = {
        "share": share,
        "standard_error": graph.island_error,
        "single_rows": graph.single_share,
        "graph_k": graph.island_k,
        "sample": graph.m,
        "graphs": graph.graphs,
        "reference": {"share": reference},
    }
    message = (
        f"{share:.1%} of the sample in mutual-kNN groups of 2 to {graph.island_k} rows "
        f"(isotropic {reference:.1%}); {graph.single_share:.1%} without a mutual neighbour"
    )
    if share > threshold:
        return Finding(
            Status.WARN,
            share,
            f"{message}: a graph index reaches these groups badly",
            metrics,
            recommendation="Inspect the small isolated groups; raise the graph index's M and "
            "ef_construction",
        )
    return Finding(Status.PASS, share, message, metrics)


#: Bootstrap resamples of EA503's error, from a fixed seed (the same values, the same error).
BOOTSTRAP = 400


def _floor(nearest: Floats) -> tuple[float, float, float]:
    """The robust floor of nearest cosines (median − FLOOR_MADS normal-consistent MADs), the
    median and that spread."""
    median = float(np.median(nearest))
    spread = MAD_TO_SD * float(np.median(np.abs(nearest - median)))
    return median - FLOOR_MADS * spread, median, spread


def _isolated_error(nearest: Floats, corpus: Floats, separate: bool) -> float | None:
    """Standard error of the share of ``nearest`` below the floor of ``corpus``: a bootstrap
    over the queries that draws the floor again with them (the floor is estimated from the same
    sample, or, with a query file, from its own corpus rows, resampled apart)."""
    if len(nearest) < 2:
        return None
    rng = np.random.default_rng(0)
    shares = np.empty(BOOTSTRAP)
    for b in range(BOOTSTRAP):
        drawn = nearest[rng.integers(len(nearest), size=len(nearest))]
        floor_rows = corpus[rng.integers(len(corpus), size=len(corpus))] if separate else drawn
        shares[b] = np.mean(drawn < _floor(floor_rows)[0])
    return float(shares.std(ddof=1))


@register(
    "EA503",
    summary="Queries whose nearest row is unusually far: outliers of the corpus.",
    what=(
        "The corpus's robust floor is the median of the queries' nearest-row cosines less "
        f"{FLOOR_MADS:g} MADs (the median absolute deviation times {MAD_TO_SD:.4f}, the "
        "standard deviation of a normal sample). The value is the share of queries whose "
        "nearest cosine falls below it, with its standard error (a bootstrap over the queries "
        "that estimates the floor again in each resample, since it comes from them too); "
        "metrics.examples lists the farthest (ids when the input has an id column)."
    ),
    why=(
        "A row far from every other is off-topic, corrupt (an empty or truncated input, a "
        "wrong language, a failed tokenizer) or from another model: it is never a good answer "
        "and rarely found by an approximate index."
    ),
    fix="Look at the listed rows and remove or re-embed the broken ones.",
    reference=(
        "Rousseeuw & Croux (1993), 'Alternatives to the median absolute deviation', JASA; "
        "Leys et al. (2013), 'Detecting outliers: do not use standard deviation around the "
        "mean, use absolute deviation around the median', JESP"
    ),
    threshold=0.03,
    threshold_rationale=(
        "Warn above 3%: for normally spread nearest cosines 0.13% fall below the floor, but "
        "nearest cosines have a longer tail towards 0, and generated clustered corpora put 0.6% "
        "to 1.5% of their rows below it."
    ),
    samples=("queries",),
    reads=("lists",),
)
def isolated_rows(data: AuditData, threshold: float) -> Finding:
    found = _with_hygiene(data)
    if found is None:
        return Finding(Status.SKIP, None, SKIP)
    hygiene, queries = found
    nearest = hygiene.nearest_cosine[queries]
    corpus = hygiene.floor_cosine if hygiene.floor_cosine is not None else nearest
    if not len(corpus):
        return Finding(Status.SKIP, None, SKIP)
    floor, median, spread = _floor(corpus)
    below = nearest < floor
    share = float(below.mean())
    error = _isolated_error(nearest, corpus, hygiene.floor_cosine is not None)
    farthest = queries[below][np.argsort(nearest[below], kind="stable")][:5]
    examples = [
        {"row": hygiene.query_name(int(q)), "nearest_cosine": float(hygiene.nearest_cosine[q])}
        for q in farthest
    ]
    metrics: dict[str, Any] = {
        "share": share,
        "standard_error": error,
        "upper_95": 3 / len(queries) if share == 0 else None,
        "floor": floor,
        "median_nearest_cosine": median,
        "mad": spread,
        "floor_from": f"{len(corpus)} corpus rows" if hygiene.external else "the queries",
        "queries": len(queries),
        "isolated": int(below.sum()),
        "examples": examples,
    }
    within = "no corpus row within the corpus's" if hygiene.external else "no row within the"
    message = (
        f"{_estimate(share, error, len(queries), hygiene.external)} have {within} floor "
        f"(nearest cosine < {floor:.3f}; median {median:.3f})"
    )
    if examples:
        named = ", ".join(str(e["row"]) for e in examples)
        message += f"; farthest {'queries' if hygiene.external else 'rows'} {named}"
    if share > threshold:
        return Finding(
            Status.WARN,
            share,
            message,
            metrics,
            recommendation="Inspect the isolated rows: remove or re-embed broken inputs",
        )
    return Finding(Status.PASS, share, message, metrics)
