"""The cosine kNN graphs of samples of the corpus: their hubness (EA501) and islands (EA502),
and the mean of several independent graphs of one size, which a check that needs a smaller
error averages (the graph's size stays the sample's: its values depend on it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from embaudit import geometry
from embaudit.array_types import Floats
from embaudit.draw import Take, draw_clean_rows, first_positions, read_ahead
from embaudit.estimates import cluster_share_standard_error, robin_hood_jackknife
from embaudit.random_streams import Stream, generator
from embaudit.sources import EmbeddingSource
from embaudit.stats import row_norms


@dataclass(frozen=True)
class SampleGraph:
    """Hubness and islands of the cosine kNN graph of a sample of ``m`` rows (EA501, EA502),
    or their means over ``graphs`` independent samples of that size.

    Their values depend on ``m`` (a larger graph has other hubs and islands): a check that
    needs a smaller error averages more graphs of the same size (:func:`more_graphs`), it does
    not grow the graph."""

    hubness: geometry.Hubness | None
    hubness_k: int
    robin_hood_error: float | None  # the Robin Hood index's jackknife error (EA501)
    island_share: float  # rows in mutual-kNN components of 2 to island_k rows (EA502)
    island_error: float | None  # its standard error, the components as units (EA502)
    single_share: float  # rows without a mutual neighbour
    island_k: int  # the degree of that graph: ISLAND_K, whatever k
    graphs: int = 1
    m: int = 0  # rows of each graph


#: The degree of the mutual kNN graph whose islands EA502 counts, whatever k: islands are a
#: property of the index's graph (an HNSW layer links 16 to 32 rows), not of the list size the
#: user compares, and the share falls steeply with the degree (calibrated at 10).
ISLAND_K = 10


def graph_degrees(m: int, k: int) -> tuple[int, int]:
    """The degrees of a sample's kNN graphs of ``m`` rows: hubness's (k) and the islands'
    (ISLAND_K), each at most m - 1."""
    return min(k, m - 1), min(ISLAND_K, m - 1)


def sample_graph(unit: Floats, k: int, complete: bool) -> SampleGraph:
    """The hubness (k-NN) and islands (ISLAND_K-NN, mutual) of the cosine graph of the unit
    rows ``unit``, with their errors unless the rows are every clean row (``complete``)."""
    m = len(unit)
    hub_k, island_k = graph_degrees(m, k)
    extended = geometry.cosine_knn_graph(unit, hub_k, following=True)
    graph = extended[:, :hub_k]
    hubness = geometry.hubness_from_neighbors(graph, m)
    if island_k != hub_k:
        graph = geometry.cosine_knn_graph(unit, island_k)
    labels, small, alone = geometry.island_rows(graph, island_k)
    return SampleGraph(
        hubness=hubness,
        hubness_k=hub_k,
        robin_hood_error=None if complete else robin_hood_jackknife(extended, hub_k),
        island_share=float(small.mean()),
        island_error=None if complete else cluster_share_standard_error(labels, small),
        single_share=float(alone.mean()),
        island_k=island_k,
        m=m,
    )


def more_graphs(
    source: EmbeddingSource,
    first: SampleGraph,
    m: int,
    *,
    k: int,
    seed: int,
    count: int,
    start: int = 0,
    take: Take | None = None,
) -> list[SampleGraph]:
    """The graphs of ``count`` further independent samples of ``m`` clean rows of ``source``,
    the ``start``-th onwards of their random stream (each its own, so a later round adds to the
    earlier ones): what EA501 and EA502 average when one graph leaves them undecided."""
    rngs = [generator(seed, Stream.GRAPHS, start + i) for i in range(count)]
    # The rows of every sample are read together (a parquet file's row groups once).
    positions = [first_positions(source.n, m, rng) for rng in rngs]
    ahead = read_ahead(source, np.concatenate(positions), take)
    graphs = []
    for rng in rngs:
        _, rows, _ = draw_clean_rows(source, m, rng, ahead)
        rows = rows * geometry.pow2_scale(row_norms(rows))
        graph = sample_graph(geometry.unit_rows(rows), k, complete=False)
        graphs.append(replace(graph, hubness_k=first.hubness_k, island_k=first.island_k))
    return graphs


def averaged_graph(graphs: list[SampleGraph]) -> SampleGraph:
    """The mean of independent graphs' values, with the error of a mean of independent
    estimates (none when one graph's is none); the k-occurrences of every graph pooled. A
    graph that is itself a mean of ``g.graphs`` graphs counts as that many."""
    if len(graphs) == 1:
        return graphs[0]
    weights = np.array([g.graphs for g in graphs], dtype=np.float64)
    total = float(weights.sum())
    hubs = [g.hubness for g in graphs if g.hubness is not None]

    def mean(values: list[float]) -> float:
        return float(np.dot(weights, values) / total)

    def mean_error(errors: list[float | None]) -> float | None:
        # A mean of g graphs with error e: the sum of its graphs' squared errors is (g e)^2.
        known = [e for e in errors if e is not None]
        if len(known) < len(errors):
            return None
        return float(np.sqrt(np.sum(np.square(weights * np.asarray(known))))) / total

    hubness = None
    if len(hubs) == len(graphs):
        hubness = geometry.Hubness(
            skewness=mean([h.skewness for h in hubs]),
            robin_hood=mean([h.robin_hood for h in hubs]),
            antihub_rate=mean([h.antihub_rate for h in hubs]),
            max_occurrence=max(h.max_occurrence for h in hubs),
            k_occurrence=np.concatenate([h.k_occurrence for h in hubs]),
        )
    return replace(
        graphs[0],
        hubness=hubness,
        robin_hood_error=mean_error([g.robin_hood_error for g in graphs]),
        island_share=mean([g.island_share for g in graphs]),
        island_error=mean_error([g.island_error for g in graphs]),
        single_share=mean([g.single_share for g in graphs]),
        graphs=int(total),
    )
