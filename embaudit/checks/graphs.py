"""EA5xx, neighbour graphs: hubness (EA501), islands of the kNN graph (EA502) and rows far from
every other (EA503)."""

from __future__ import annotations

from typing import Any

import numpy as np

from embaudit.array_types import Floats, Ints
from embaudit.checks.base import AuditData, Sampled, register
from embaudit.checks.common import (
    FEW_ROWS,
    ON_QUERY_LISTS,
    SKIP,
    geometry_fix,
    on_hygiene,
    on_sample,
    share_text,
    warned_if,
)
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.measurement.sample import Geometry
from embaudit.model import Action, Advice, Finding, Status

#: EA501's advice: it says how to centre (as EA201–EA203 do) and what else reduces hubs, so
#: where both are given it is the one kept.
REDUCE_HUBS = Advice(
    "Centre the vectors (subtract the mean vector) and remove the top principal component, or "
    "apply hubness reduction (mutual proximity, local scaling) before kNN retrieval",
    (Action.CENTRE, Action.HUBNESS),
    specificity=1,
)

#: EA501 and EA502, on graphs of the sample: measured again with more graphs to average.
ON_GRAPHS: Sampled = {"samples": ("graphs",), "reads": ("graphs",)}


def _isotropic(value: float | None) -> str:
    return "" if value is None else f" (isotropic {value:.2f})"


@register(
    "EA501",
    measures=(
        "Robin Hood index (the value), k-occurrence skewness, antihub rate, next to an isotropic "
        "sample; with `--query-file`, how the queries' results spread over the corpus"
    ),
    rule="warn > 0.5",
    summary="Points that appear in many neighbour lists (hubs) and in none (antihubs).",
    what=(
        "Builds the exact cosine kNN graph of the sample and measures how unevenly the points "
        "occur in the others' k-nearest lists. Its value is the Robin Hood index: the share of "
        "all list slots that would have to move for every point to occur exactly k times (0 for "
        "a perfectly even graph). Also reported: the skewness of the k-occurrence distribution "
        "(biased, as scipy.stats.skew) and the antihub rate (share of points in no list), each "
        "next to the value for an isotropic Gaussian sample of the same size and dimension. "
        "Hubness depends on the sample size (metrics.sample): the value is that of a graph of "
        "this many random rows, and its standard_error is the delete-one jackknife over them "
        "(each row left out once, from its (k + 1)-nearest-neighbour lists). Measured again "
        "on a larger sample, the value is that of the larger graph, next to its own reference."
    ),
    why=(
        "In high dimensions a few points become nearest neighbours of very many others. Hubs "
        "crowd every result list and antihubs are never retrieved, which degrades recall and "
        "recommendations independently of the metric."
    ),
    fix=(
        "Centre the vectors; consider hubness reduction (mutual proximity, local scaling, CSLS) "
        "before kNN retrieval."
    ),
    reference=(
        "Radovanović, Nanopoulos & Ivanović (2010), 'Hubs in Space', JMLR 11; Feldbauer, "
        "Leodolter, Plant & Flexer (2018), 'Fast approximate hubness reduction for large "
        "high-dimensional data', ICBK (the Robin Hood index); Feldbauer & Flexer (2019), 'A "
        "comprehensive empirical comparison of hubness reduction in high-dimensional spaces', "
        "KAIS"
    ),
    threshold=0.5,
    threshold_rationale=(
        "0.5: half of all list slots would have to move. Skewness, the classic measure, does "
        "not separate harmless from harmful hubness: clustered data has hubs at its cluster "
        "centres (skewness above 2 on the clean clustered fixtures and generated sentence-"
        "encoder-like corpora) and a collapsed geometry can show the same skewness. The Robin "
        "Hood index does (Feldbauer et al. 2018 prefer it for its stability). Calibration, "
        "k = 10, 5,000-row samples: isotropic Gaussians 0.12 (d = 50 … 1,536); clean clustered "
        "and sentence-encoder-like corpora 0.38 to 0.41 (fixtures/sphere.npy 0.38, with 7% "
        "antihubs); heavy-tailed Student t (3 degrees of freedom) 0.18; an uncentred Gaussian "
        "cloud (mean 3 per coordinate, d = 384), the classic hubness case, 0.62 with 30% of "
        "the rows never retrieved; three rogue dimensions 30 times the others 0.69, with 54%. "
        "Robin Hood does not see a single giant hub (one tight group holding a fifth of the "
        "rows: 0.42, skewness 30): that is a near-duplicate problem (EA003), and skewness stays "
        "in metrics."
    ),
    **ON_GRAPHS,
)
@on_sample
def hubness(data: AuditData, sample: Geometry, threshold: float) -> Finding:
    graph = sample.graph
    hub = graph.hubness
    if hub is None or graph.hubness_k == 0:
        return Finding(Status.SKIP, None, FEW_ROWS)
    metrics = hub.to_dict() | {
        "standard_error": graph.robin_hood_error,
        "k": graph.hubness_k,
        "sample": graph.m,
        "graphs": graph.graphs,
    }
    reference = sample.reference.hubness
    if reference is not None:
        metrics["reference"] = {
            "skewness": reference.skewness,
            "robin_hood": reference.robin_hood,
            "antihub_rate": reference.antihub_rate,
        }

    message = (
        f"Robin Hood index {hub.robin_hood:.2f}"
        f"{_isotropic(reference.robin_hood if reference else None)}, k-occurrence skewness "
        f"{hub.skewness:.2f}{_isotropic(reference.skewness if reference else None)}, antihubs "
        f"{hub.antihub_rate:.1%}"
    )
    hygiene = data.neighbors.hygiene if data.neighbors is not None else None
    if hygiene is not None and hygiene.returned is not None:
        returned = hygiene.returned
        metrics["queries"] = returned
        message += (
            f"; the query file's results: {returned['distinct_rows']:,} distinct rows in "
            f"{returned['slots']:,} slots (uniform: {returned['distinct_if_uniform']:,.0f}), the "
            f"{len(returned['most_returned'])} most returned fill {returned['top_share']:.0%}"
        )
    return warned_if(
        hub.robin_hood > threshold,
        hub.robin_hood,
        message,
        metrics,
        geometry_fix(data.params.trained_with, REDUCE_HUBS),
        f"hubs crowd the neighbour lists and {hub.antihub_rate:.0%} of the rows are in none",
    )


@register(
    "EA502",
    measures=(
        "share of the sample in components of 2–10 rows of the mutual 10-NN graph (single rows: "
        "metrics)"
    ),
    rule="warn > 5%",
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
    **ON_GRAPHS,
)
@on_sample
def graph_islands(data: AuditData, sample: Geometry, threshold: float) -> Finding:
    graph = sample.graph
    if graph.island_k == 0:
        return Finding(Status.SKIP, None, FEW_ROWS)
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
    return warned_if(
        share > threshold,
        share,
        message,
        metrics,
        Advice(
            "Inspect the small isolated groups; raise the graph index's M and ef_construction",
            (Action.ISLANDS,),
        ),
        "a graph index reaches these groups badly",
    )


#: EA503's floor: the median nearest cosine less this many (normal-consistent) MADs.
FLOOR_MADS = 3.0


#: The median absolute deviation of a normal sample times this is its standard deviation.
MAD_TO_SD = 1.482602218505602


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
    measures=(
        "share of queries whose nearest cosine is below the corpus's floor, median − 3 MAD "
        "(normal-consistent); examples"
    ),
    rule="warn > 3%",
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
    **ON_QUERY_LISTS,
)
@on_hygiene
def isolated_rows(
    data: AuditData, hygiene: QueryHygiene, queries: Ints, threshold: float
) -> Finding:
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
        f"{share_text(share, error, len(queries), hygiene.external)} have {within} floor "
        f"(nearest cosine < {floor:.3f}; median {median:.3f})"
    )
    if examples:
        named = ", ".join(str(e["row"]) for e in examples)
        message += f"; farthest {'queries' if hygiene.external else 'rows'} {named}"
    return warned_if(
        share > threshold,
        share,
        message,
        metrics,
        Advice("Inspect the isolated rows: remove or re-embed broken inputs", (Action.ISOLATED,)),
    )
