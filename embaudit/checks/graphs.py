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
    skipped_without,
    warned_if,
)
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.measurement.occurrence import Occurrence, graph_occurrence
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

#: EA504's advice: the rows its queries' results crowd onto are where to look first.
INSPECT_RETURNED = Advice(
    "Inspect the rows the queries return most; centre the corpus and queries with the corpus "
    "mean, or apply hubness reduction (CSLS, mutual proximity) before kNN retrieval",
    (Action.CENTRE, Action.HUBNESS),
    specificity=1,
)

#: EA501 and EA502, on graphs of the sample: measured again with more graphs to average.
ON_GRAPHS: Sampled = {"samples": ("graphs",), "reads": ("graphs",)}


def _corpus_occurrence(data: AuditData) -> tuple[Occurrence] | None:
    """The corpus graph's spread: exact when the sample's graph is every clean row's (and its
    degree k), else estimated from the queries' lists."""
    graph = data.geometry.graph if data.geometry is not None else None
    hygiene = data.neighbors.hygiene if data.neighbors is not None else None
    if graph is not None and graph.hubness is not None and data.neighbors is not None:
        whole = graph.m >= data.stats.n_clean and graph.hubness_k == data.neighbors.k
        if whole and graph.graphs == 1:
            exact = graph_occurrence(graph.hubness.k_occurrence)
            return None if exact is None else (exact,)
    found = hygiene.occurrence if hygiene is not None else None
    return None if found is None else (found,)


def _query_occurrence(data: AuditData) -> tuple[Occurrence] | None:
    hygiene = data.neighbors.hygiene if data.neighbors is not None else None
    found = hygiene.query_occurrence if hygiene is not None else None
    return None if found is None else (found,)


def _spread_metrics(found: Occurrence) -> dict[str, Any]:
    return {
        "spread": found.spread,
        "standard_error": found.standard_error,
        "effective_rows": found.effective_rows,
        "uniform_rows": found.uniform_rows,
        "occurrence_cv": found.occurrence_cv,
        # E|N - k| <= sd(N) (Jensen): the Robin Hood index E|N - k| / 2k is at most CV / 2.
        "robin_hood_at_most": found.occurrence_cv / 2,
        "queries": found.queries,
        "population": found.population,
    }


def _spread_text(found: Occurrence) -> str:
    error = "" if found.standard_error is None else f" ± {found.standard_error:.2f}"
    return (
        f"the results spread over {found.spread:.2f}{error} of what chance would reach (an "
        f"effective {found.effective_rows:,.0f} of {found.rows:,} rows; k-occurrence CV "
        f"{found.occurrence_cv:.2f})"
    )


def _sample_graph(sample: Geometry | None) -> dict[str, Any] | None:
    """The hubness of the sample's graph, named as such: a property of a graph of its size."""
    graph = sample.graph if sample is not None else None
    if graph is None or graph.hubness is None or graph.hubness_k == 0:
        return None
    found: dict[str, Any] = graph.hubness.to_dict() | {
        "robin_hood_standard_error": graph.robin_hood_error,
        "rows": graph.m,
        "graphs": graph.graphs,
    }
    reference = sample.reference.hubness if sample is not None else None
    if reference is not None:
        found["reference"] = {
            "skewness": reference.skewness,
            "robin_hood": reference.robin_hood,
            "antihub_rate": reference.antihub_rate,
            "spread": getattr(graph_occurrence(reference.k_occurrence), "spread", None),
        }
    return found


#: Warn when the result slots spread over less than this share of what chance would reach.
SPREAD_THRESHOLD = 0.25

#: The calibration of SPREAD_THRESHOLD, which EA501 and EA504 share (explain's text).
SPREAD_RATIONALE = (
    "Warn below 0.25: the lists draw from a quarter of the rows chance would reach. Calibration "
    "on the corpus's whole cosine 10-NN graph (every row a query, exact), 100,000 × 128: "
    "isotropic Gaussian 1.00 (Robin Hood index 0.13); 5,000 tight groups of 20 rows 0.89 "
    "(0.20); clustered corpora (256 or 1,000 clusters, a shared offset) and a sentence-"
    "encoder-like corpus (decaying spectrum, a common direction) 0.35 to 0.39 (Robin Hood 0.41 "
    "to 0.47, 11% to 14% antihubs); 50 tight clusters 0.23 (0.54, 21% antihubs); Student t "
    "with 3 degrees of freedom 0.14 (0.53); three rogue dimensions 30 times the others 0.13 "
    "(0.72, 43% antihubs); an uncentred Gaussian cloud (mean 3 per coordinate), the classic "
    "hubness case, 0.08 (0.64). The threshold sits where the corpus's Robin Hood index passes "
    "0.5: half of all list slots would have to move for every row to occur k times."
)


@register(
    "EA501",
    measures=(
        "spread of the corpus's whole cosine k-NN graph's k-occurrences, inverse Simpson index "
        "against chance (the value); the sample graph's Robin Hood index, skewness, antihubs"
    ),
    rule="warn below 0.25",
    corpus_queries=True,
    summary="Rows that appear in many neighbour lists (hubs) and in none (antihubs).",
    what=(
        "How evenly the rows occur in the cosine k-nearest-neighbour lists of every row: the "
        "corpus's own graph, at its own size (hubness grows with the corpus, so a sample's "
        "graph understates it). With N_x the k-occurrence of row x (how many rows list it), "
        "the lists' n k slots draw from an effective n_eff = (n k)^2 / sum N_x^2 rows, the "
        "inverse Simpson index; the value is n_eff over the same for n k slots thrown on the "
        "rows at random (1: as even as chance; 0.25: as if a quarter of those rows took every "
        "slot). Two distinct random rows' lists share row x exactly when both are among the "
        "N_x rows that list it, so the rows the sampled queries' exact lists (over every row) "
        "share estimate sum N_x (N_x - 1) without bias, at any number of queries; the "
        "standard_error is the delete-one jackknife over the queries, and with every row a "
        "query the value is exact. metrics.occurrence_cv is sd(N) / k, and metrics."
        "robin_hood_at_most = occurrence_cv / 2 bounds the corpus graph's Robin Hood index "
        "(E|N - k| <= sd(N)). metrics.sample_graph holds the hubness of the exact graph of "
        "`sample` random rows — Robin Hood index, k-occurrence skewness (biased, as "
        "scipy.stats.skew), antihub rate (share of rows in no list) next to an isotropic "
        "Gaussian sample of that size and d: values of a graph of that size, not of the corpus, "
        "shown for comparison and never judged."
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
        "high-dimensional data', ICBK (the Robin Hood index); Simpson (1949), 'Measurement of "
        "diversity', Nature 163"
    ),
    threshold=SPREAD_THRESHOLD,
    threshold_rationale=SPREAD_RATIONALE,
    **ON_QUERY_LISTS,
)
@skipped_without(_corpus_occurrence, SKIP)
def hubness(data: AuditData, found: Occurrence, threshold: float) -> Finding:
    metrics = _spread_metrics(found)
    message = f"In the corpus's k-NN graph (every row's list), {_spread_text(found)}"
    graph = _sample_graph(data.geometry)
    if graph is not None:
        metrics["sample_graph"] = graph
        message += (
            f"; a {graph['rows']:,}-row sample's graph: Robin Hood {graph['robin_hood']:.2f}, "
            f"antihubs {graph['antihub_rate']:.1%}"
        )
    return warned_if(
        found.spread < threshold,
        found.spread,
        message,
        metrics,
        geometry_fix(data.params.trained_with, REDUCE_HUBS),
        "hubs crowd the neighbour lists and many rows are in none",
    )


#: EA504 fails below this spread (it warns below its threshold).
QUERY_HUBNESS_FAIL = 0.05


@register(
    "EA504",
    measures=(
        "spread of the query file's results over the corpus, inverse Simpson index against "
        "chance; share of slots the top 1% of rows fill, rows never returned"
    ),
    rule="warn below 0.25, fail below 0.05",
    option="query_file",
    summary="What the queries retrieve concentrates on a few corpus rows (query hubness).",
    what=(
        "With --query-file: how evenly the query file's results (each query's cosine k-nearest "
        "rows, over every corpus row) spread over the corpus. With N_x the number of the "
        "file's Q queries that return row x, the Q k result slots draw from an effective "
        "n_eff = (Q k)^2 / sum N_x^2 rows (the inverse Simpson index); the value is n_eff over "
        "the same for Q k slots thrown on the n rows at random (1: as even as chance). The "
        "rows two distinct sampled queries' lists share estimate sum N_x (N_x - 1) of the "
        "whole file without bias; the standard_error is the delete-one jackknife over the "
        "sampled queries, and with every query of the file searched the value is exact. "
        "Also reported, of the queries searched (values of that many slots, each next to its "
        "expectation for as many slots at random): the share of slots the most-returned 1% of "
        "the rows fill and the share of rows never returned. Without a query file the queries "
        "are corpus rows, whose results EA501 measures."
    ),
    why=(
        "Real queries retrieving the same few rows is what users see as 'the same results for "
        "every question': those rows crowd out the rest, and most of the corpus is never "
        "returned (to these queries, whose distribution may differ from the corpus's own)."
    ),
    fix=(
        "Look at the most-returned rows (boilerplate, very short or generic items, a common "
        "direction the queries share); centre the corpus and queries with the corpus mean, or "
        "apply hubness reduction (CSLS, mutual proximity)."
    ),
    reference=(
        "Radovanović, Nanopoulos & Ivanović (2010), 'Hubs in Space', JMLR 11; Simpson (1949), "
        "'Measurement of diversity', Nature 163; Lample et al. (2018), 'Word translation "
        "without parallel data', ICLR (CSLS)"
    ),
    threshold=SPREAD_THRESHOLD,
    threshold_rationale=SPREAD_RATIONALE
    + " The same scale serves the queries: a query file spread like those corpora warns alike. "
    f"It fails below {QUERY_HUBNESS_FAIL:g}, a twentieth of what chance would reach: 20,000 "
    "queries of 100,000 rows whose top 1% of rows fill half the result slots spread over at "
    "most 0.054 (the top rows alone give sum N^2 >= (0.5 S)^2 / 1,000), and an uncentred "
    "Gaussian corpus's own graph, the classic hub-ridden case, spreads over 0.08. Such results "
    "are a few rows for every query: the gate fails, the verdict on cosine does not change.",
    **ON_QUERY_LISTS,
)
@skipped_without(_query_occurrence, "needs --query-file: the corpus's own rows are EA501's")
def query_hubness(data: AuditData, found: Occurrence, threshold: float) -> Finding:
    metrics = _spread_metrics(found) | {
        "top_share": found.top_share,
        "top_share_uniform": found.top_share_uniform,
        "never_returned": found.never_returned,
        "never_returned_uniform": found.never_returned_uniform,
        "slots": found.slots,
    }
    message = (
        f"Of {found.queries:,} queries' results, {_spread_text(found)}; the top 1% of rows "
        f"fill {found.top_share:.1%} of the slots (at random {found.top_share_uniform:.1%}), "
        f"{found.never_returned:.1%} of the rows are never returned (at random "
        f"{found.never_returned_uniform:.1%})"
    )
    advice = geometry_fix(data.params.trained_with, INSPECT_RETURNED)
    if found.spread < min(threshold, QUERY_HUBNESS_FAIL):
        said = f"{message}: the queries' results come from a handful of rows"
        return Finding(Status.FAIL, found.spread, said, metrics, recommendation=advice)
    return warned_if(
        found.spread < threshold,
        found.spread,
        message,
        metrics,
        advice,
        "a few rows take the queries' results",
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
