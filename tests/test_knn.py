"""The streamed kNN search against a float64 brute force and against faiss."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embaudit import knn
from embaudit.knn import Block, NeighborSearch, SharedBars, exact_lists
from embaudit.stats import CleanRows
from tests.exports import exact_cosine_top


def _search(x, query_rows, k, blocks=None, chunk=37, metrics=knn.METRICS):
    x = np.asarray(x, dtype=np.float64)
    blocks = blocks or [Block("base", len(query_rows))]
    search = NeighborSearch(x[query_rows], np.asarray(query_rows), k, blocks, metrics)
    for start in range(0, len(x), chunk):
        search.add(clean_rows(x[start : start + chunk], start))
    return search


def clean_rows(x, start=0):
    norms = np.linalg.norm(x, axis=1)
    unit = (x / norms[:, None]).astype(np.float32)
    return CleanRows(start + np.arange(len(x)), x, norms, unit)


def _same_sets_up_to_ties(rows, scores, ref_rows, ref_scores, tolerance):
    for got, got_scores, want, want_scores in zip(rows, scores, ref_rows, ref_scores, strict=True):
        kth = want_scores[-1]
        # Every returned neighbour either is a reference neighbour or ties with the k-th.
        for row, score in zip(got, got_scores, strict=True):
            assert row in want or abs(score - kth) <= tolerance
        assert got_scores == pytest.approx(want_scores, abs=tolerance)


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_streamed_lists_equal_float64_brute_force(metric):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 24)) * rng.lognormal(size=(500, 1))
    query_rows = rng.choice(500, 40, replace=False)
    search = _search(x, query_rows, k=10)
    found = search.list_for(metric)
    ref_rows, ref_scores = exact_lists(x, query_rows, 10, metric)
    scale = np.abs(ref_scores).max()
    _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, 1e-5 * scale)
    for q, row in enumerate(query_rows):
        assert row not in found.rows[q]  # the query itself is excluded


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_neighbour_sets_match_faiss_knn(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    query_rows = rng.choice(2000, 100, replace=False)
    search = _search(x, query_rows, k=10, chunk=300)
    found = search.list_for(metric)
    base = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    _, labels = faiss.knn(base[query_rows], base, 11, metric=kind)
    for q, row in enumerate(query_rows):
        expected = [label for label in labels[q] if label != row][:10]
        assert set(found.rows[q]) == set(expected)


@pytest.mark.parametrize("chunk", [11, 1])
def test_chunking_does_not_change_the_result(chunk):
    # Chunks of one row hold tiles with nothing but a query's own row (a largest product of
    # -inf); a gauge with a zero scale (the canonical gauge drops dead dimensions) rides along.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 8))
    query_rows = np.arange(0, 300, 7)
    scale = np.exp(rng.normal(0.0, 1.0, size=8))
    scale[3] = 0.0
    blocks = [Block("base", len(query_rows)), Block("gauge", 20, scale)]
    one = _search(x, query_rows, 5, blocks, chunk=300)
    many = _search(x, query_rows, 5, blocks, chunk=chunk)
    for a, b in zip(one.lists, many.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
    gauged = one.list_for("cosine", block=1)
    x_gauged = x * scale
    ref_rows, ref_scores = exact_lists(x_gauged, query_rows[:20], 5, "cosine")
    _same_sets_up_to_ties(gauged.rows, gauged.scores, ref_rows, ref_scores, 1e-5)


def test_a_chunk_of_many_slabs_gives_the_lists_of_the_brute_force(monkeypatch):
    # A chunk is multiplied SLAB rows at a time: queries whose own rows fall in later slabs,
    # a last slab shorter than SLAB and a last tile shorter than TILE, under a gauge; the
    # second chunk's lists are full, so its tiles' bounds decide what is scored.
    monkeypatch.setattr(knn.products, "SLAB", 2 * knn.TILE)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3 * 2 * knn.TILE + 100, 10)) * rng.lognormal(size=(1636, 1))
    query_rows = np.sort(rng.choice(len(x), 60, replace=False))
    assert query_rows.max() > 4 * knn.TILE
    scale = np.exp(rng.normal(0.0, 1.0, size=10))
    blocks = [Block("base", 60), Block("gauge", 30, scale)]
    whole = _search(x, query_rows, 7, blocks, chunk=1100)
    for metric in ("cosine", "l2", "dot"):
        found = whole.list_for(metric)
        ref_rows, ref_scores = exact_lists(x, query_rows, 7, metric)
        tolerance = 1e-5 * np.abs(ref_scores).max()
        _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, tolerance)
        for q, row in enumerate(query_rows):
            assert row not in found.rows[q]
    gauged = whole.list_for("cosine", block=1)
    ref_rows, ref_scores = exact_lists(x * scale, query_rows[:30], 7, "cosine")
    _same_sets_up_to_ties(gauged.rows, gauged.scores, ref_rows, ref_scores, 1e-5)
    monkeypatch.setattr(knn.products, "SLAB", 64 * knn.TILE)  # one slab per chunk
    one = _search(x, query_rows, 7, blocks, chunk=1100)
    for a, b in zip(one.lists, whole.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)


def test_a_chunk_searched_in_steps_gives_the_lists_of_one_step(monkeypatch):
    # STEP_BYTES bounds the products one step holds: a chunk of more rows is searched in steps,
    # the first chunk's filling lists and the later chunks' pruned ones alike, under a gauge.
    monkeypatch.setattr(knn.products, "SLAB", 2 * knn.TILE)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4000, 12)) * rng.lognormal(size=(4000, 1))
    query_rows = np.sort(rng.choice(len(x), 90, replace=False))
    blocks = [Block("base", 90), Block("gauge", 40, np.exp(rng.normal(0.0, 1.0, size=12)))]
    whole = _search(x, query_rows, 9, blocks, chunk=3000)
    assert whole.step_rows() >= 3000
    # 130 stacked rows of 4 bytes: one SLAB of rows per step.
    monkeypatch.setattr(knn.select, "STEP_BYTES", 130 * 4 * 2 * knn.TILE)
    stepped = _search(x, query_rows, 9, blocks, chunk=3000)
    assert stepped.step_rows() == 2 * knn.TILE
    for a, b in zip(whole.lists, stepped.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
    ref_rows, ref_scores = exact_lists(x, query_rows, 9, "l2")
    found = stepped.list_for("l2")
    tolerance = 1e-5 * np.abs(ref_scores).max()
    _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, tolerance)


@pytest.mark.parametrize("d", [12, 48])
def test_steps_that_keep_only_reached_tiles_give_the_lists_of_stored_products(monkeypatch, d):
    # Once every list is full, a step of small-d rows keeps only the tiles its bounds reach and
    # computes its candidates' features again: lists, scores and features equal, bit for bit,
    # those of the steps that store every product; under three gauges, with l2 and dot lists,
    # log-normal norms and several slabs a chunk.
    monkeypatch.setattr(knn.products, "SLAB", 2 * knn.TILE)
    rng = np.random.default_rng(15)
    x = rng.standard_normal((6000, d)) * rng.lognormal(size=(6000, 1))
    query_rows = np.sort(rng.choice(len(x), 80, replace=False))
    blocks = [Block("base", 80)] + [
        Block(f"g{i}", 30, np.exp(rng.normal(0.0, 1.0, size=d))) for i in range(3)
    ]
    taken: list[bool] = []
    chunk_of = knn.select.TopKSelection._chunk

    def chunk(self, rows, keep=None):
        taken.append(keep is not None)
        return chunk_of(self, rows, keep)

    monkeypatch.setattr(knn.select.TopKSelection, "_chunk", chunk)
    monkeypatch.setattr(knn.select, "KEEP_TILES_UP_TO", 0)
    stored = _search(x, query_rows, 9, blocks, chunk=1500)
    assert not any(taken)
    monkeypatch.setattr(knn.select, "KEEP_TILES_UP_TO", d)
    kept = _search(x, query_rows, 9, blocks, chunk=1500)
    assert sum(taken) >= 4  # the later chunks' steps kept their reached tiles alone
    for a, b in zip(stored.lists, kept.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.features, b.features)
    monkeypatch.setattr(knn.select, "KEEP_TILES_UP_TO", d - 1)  # above the limit: stored
    taken.clear()
    _search(x, query_rows, 9, blocks, chunk=1500)
    assert not any(taken)


def _two_workers(x, query_rows, k, blocks, share, head_start=0, chunk=500):
    """Two workers of one pass (the second a fresh copy of the first) take the chunks in turn,
    the first alone for its ``head_start`` chunks; the second's lists are merged into the
    first's at the end, as the local engine does."""
    first = NeighborSearch(x[query_rows], query_rows, k, blocks)
    second = first.fresh()
    if share:
        first.shared_bars = second.shared_bars = SharedBars.of(first)
    for i, start in enumerate(range(0, len(x), chunk)):
        worker = first if i < head_start or (i - head_start) % 2 == 0 else second
        worker.add(clean_rows(x[start : start + chunk], start))
    assert all((lst.rows >= 0).all() for lst in second.lists)  # its lists filled
    first.absorb(second.lists)
    return first


@pytest.mark.parametrize("d", [24, 96])
def test_workers_that_share_their_bars_score_fewer_tiles_and_merge_to_the_same_lists(
    monkeypatch, d
):
    # Each worker prunes by the highest bar any worker has reached: fewer (row, tile) pairs
    # are scored, and the merged lists, scores and features are those of workers that do not
    # share, bit for bit (and float64 brute force's). The second worker starts after the
    # first has seen six chunks: its lists still fill under the first's higher bars.
    rng = np.random.default_rng(16)
    x = rng.standard_normal((14000, d)) * rng.lognormal(size=(14000, 1))
    query_rows = np.sort(rng.choice(len(x), 60, replace=False))
    blocks = [Block("base", 60), Block("g", 30, np.exp(rng.normal(0.0, 0.5, size=d)))]
    pairs: list[int] = []
    reachable = knn.select.TopKSelection._reachable_tiles

    def counted(self, *args):
        found = reachable(self, *args)
        pairs.append(len(found[0]))
        return found

    monkeypatch.setattr(knn.select.TopKSelection, "_reachable_tiles", counted)
    alone = _two_workers(x, query_rows, 9, blocks, share=False, head_start=6)
    scored_alone, pairs[:] = sum(pairs), []
    shared = _two_workers(x, query_rows, 9, blocks, share=True, head_start=6)
    assert sum(pairs) < 0.95 * scored_alone  # 0.89 and 0.91 of them here
    for a, b in zip(alone.lists, shared.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.features, b.features)
    for metric in knn.METRICS:
        found = shared.list_for(metric)
        ref_rows, ref_scores = exact_lists(x, query_rows, 9, metric)
        tolerance = 1e-5 * np.abs(ref_scores).max()
        _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, tolerance)


@pytest.mark.parametrize("d", [8, 24])
def test_workers_that_share_their_bars_keep_every_tie_of_the_merged_lists(d):
    # Rows of small integers, many of them equal or equal up to a factor of 2 or 4: the k-th
    # score ties across workers, and a shared bar that left no room for rounding would drop
    # a tied row of a lower position than the other worker's (the merged lists keep the
    # best score, then the lowest row).
    rng = np.random.default_rng(17 + d)
    base = rng.integers(-2, 3, size=(300, d)).astype(np.float64)
    x = base[rng.integers(0, 300, 9000)] * rng.choice([1.0, 2.0, 4.0], size=(9000, 1))
    x[np.linalg.norm(x, axis=1) == 0, 0] = 1.0
    query_rows = np.sort(rng.choice(len(x), 40, replace=False))
    blocks = [Block("base", 40), Block("g", 20, np.exp(rng.normal(0.0, 0.5, size=d)))]
    for chunk in (256, 700):
        alone = _two_workers(x, query_rows, 10, blocks, share=False, head_start=3, chunk=chunk)
        shared = _two_workers(x, query_rows, 10, blocks, share=True, head_start=3, chunk=chunk)
        for a, b in zip(alone.lists, shared.lists, strict=True):
            np.testing.assert_array_equal(a.rows, b.rows)
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.features, b.features)


def test_a_shared_bar_raises_only_the_rows_whose_own_list_is_full():
    search = NeighborSearch(np.eye(4)[:3], np.arange(3), 2, [Block("base", 3)], ("cosine",))
    shared = SharedBars.of(search)
    rows = len(search._groups[0].query)
    high = np.linspace(0.1, 0.9, rows)
    shared.raised([high])
    own = np.full(rows, 0.5)
    own[0] = -np.inf  # this row's list still fills
    (raised,) = shared.raised([own])
    assert np.isneginf(raised[0])
    np.testing.assert_array_equal(raised[1:], np.maximum(high, own)[1:])
    assert shared.best[0][0] == high[0]  # a lower report never lowers the best


def test_a_step_holds_at_most_step_bytes_of_products_and_at_least_a_slab():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((50, 8))
    for queries in (1, 40, 500, 4000):
        at = np.arange(queries) % 50
        search = NeighborSearch(x[at], at, 5, [Block("b", queries)])
        slab, rows = search.slab_rows(), search.step_rows()
        assert slab % knn.TILE == 0 and knn.TILE <= slab <= knn.SLAB
        assert slab * queries * 4 <= knn.products.SLAB_BYTES
        assert rows % slab == 0 and rows >= slab
        assert rows * queries * 4 <= knn.select.STEP_BYTES
    # A slab of a search of many queries holds fewer rows: as many products, not more.
    slabs = [
        NeighborSearch(x, np.arange(50), 5, [Block("b", 50)] * m).slab_rows() for m in (10, 80)
    ]
    assert slabs == [knn.SLAB, 3 * knn.TILE]
    many = NeighborSearch(x, np.arange(50), 5, [Block("b", 50)] * 200)  # 10,000 stacked
    assert many.slab_rows() == knn.TILE  # one tile at least, above SLAB_BYTES


def test_k_larger_than_the_database_returns_every_other_row():
    x = np.random.default_rng(3).standard_normal((6, 3))
    search = _search(x, np.array([0, 5]), k=10, chunk=4)
    cosine = search.list_for("cosine")
    assert sorted(cosine.rows[0][cosine.rows[0] >= 0]) == [1, 2, 3, 4, 5]
    overlap = search.overlap(cosine, search.list_for("l2"))
    assert overlap.shape == (2,) and np.all((overlap >= 0) & (overlap <= 1))


def test_overlap_counts_tied_neighbours_as_shared():
    rng = np.random.default_rng(4)
    unit = rng.standard_normal((50, 6))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    x = np.concatenate([unit, unit, unit])  # every vector three times: ties everywhere
    search = _search(x, np.arange(0, 150, 3), k=4)
    overlap = search.overlap(search.list_for("cosine"), search.list_for("l2"))
    assert np.all(overlap == 1.0)


def test_gauge_blocks_equal_cosine_of_the_rescaled_data():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((400, 12))
    scale = np.exp(rng.normal(0, 1.0, size=12))
    query_rows = rng.choice(400, 30, replace=False)
    search = _search(x, query_rows, 8, [Block("base", 30), Block("gauge", 20, scale)])
    gauged = search.list_for("cosine", block=1)
    ref_rows, ref_scores = exact_lists(x * scale, query_rows[:20], 8, "cosine")
    _same_sets_up_to_ties(gauged.rows, gauged.scores, ref_rows, ref_scores, 1e-5)


def test_a_cosine_only_search_keeps_the_lists_of_the_full_one(monkeypatch):
    # Log-normal norms, tiles of 8 rows, chunks of 300: the full search takes each chunk's rows
    # in norm order, the cosine-only one as they come; their cosine lists (base and gauged) are
    # the same, and both are the brute force's.
    monkeypatch.setattr(knn.products, "TILE", 8)
    monkeypatch.setattr(knn.products, "SLAB", 32)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1200, 16)) * rng.lognormal(0, 1.5, size=(1200, 1))
    scale = np.exp(rng.normal(0, 0.5, size=16))
    query_rows = rng.choice(1200, 40, replace=False)
    blocks = [Block("base", 40), Block("gauge", 25, scale)]
    full = _search(x, query_rows, 10, blocks, chunk=300)
    cosine = _search(x, query_rows, 10, blocks, chunk=300, metrics=("cosine",))
    assert full._by_norm and not cosine._by_norm
    assert [(lst.metric, lst.block) for lst in cosine.lists] == [("cosine", 0), ("cosine", 1)]
    for block in (0, 1):
        np.testing.assert_array_equal(
            cosine.list_for("cosine", block).rows, full.list_for("cosine", block).rows
        )
    ref_rows, ref_scores = exact_lists(x * scale, query_rows[:25], 10, "cosine")
    gauged = cosine.list_for("cosine", 1)
    _same_sets_up_to_ties(gauged.rows, gauged.scores, ref_rows, ref_scores, 1e-5)
    with pytest.raises(KeyError):
        cosine.list_for("l2")


@pytest.mark.parametrize("d", [12, 48])
def test_an_unlisted_base_block_gives_the_gauge_lists_of_a_listed_one(monkeypatch, d):
    # A gauge search whose base block is unlisted stacks the gauges' rows alone and keeps no
    # base list; its gauge lists, scores and features (their cosine, computed for the
    # candidates alone) equal those of the search that stacks the base block, bit for bit,
    # whether a step stores its products or keeps its reached tiles (d = 12); and the base
    # block's lists it leaves out are those of the full base search of the same queries.
    monkeypatch.setattr(knn.products, "SLAB", 2 * knn.TILE)
    monkeypatch.setattr(knn.select, "KEEP_TILES_UP_TO", 16)
    rng = np.random.default_rng(21)
    x = rng.standard_normal((5000, d)) * rng.lognormal(size=(5000, 1))
    query_rows = np.sort(rng.choice(len(x), 60, replace=False))
    gauges = [Block(f"g{i}", 20 + 10 * i, np.exp(rng.normal(0.0, 1.0, size=d))) for i in range(3)]

    def gauge_search(listed):
        blocks = [Block("base", 40, listed=listed), *gauges]
        return _search(x, query_rows[:40], 9, blocks, chunk=1700, metrics=("cosine",))

    listed = gauge_search(True)
    whole: list[bool] = []  # per call: every column's products at once (lists filling)
    unlisted_of = knn.products._EntrySource.unlisted

    def recorded(self, rows, query, column):
        whole.append(len(query) * knn.products.WHOLE_SHARE >= len(self.unit))
        return unlisted_of(self, rows, query, column)

    monkeypatch.setattr(knn.products._EntrySource, "unlisted", recorded)
    unlisted = gauge_search(False)
    assert any(whole) and not all(whole)  # both ways of computing the cosine were taken
    assert len(unlisted.stacked) == len(listed.stacked) - 40 == sum(b.n_queries for b in gauges)
    assert [lst.block for lst in unlisted.lists] == [1, 2, 3]
    with pytest.raises(KeyError):
        unlisted.list_for("cosine")
    for block in (1, 2, 3):
        mine, theirs = unlisted.list_for("cosine", block), listed.list_for("cosine", block)
        np.testing.assert_array_equal(mine.rows, theirs.rows)
        np.testing.assert_array_equal(mine.scores, theirs.scores)
        np.testing.assert_array_equal(mine.features, theirs.features)
    base = _search(x, query_rows, 9, chunk=1000).head(40).list_for("cosine")
    own = listed.list_for("cosine")
    np.testing.assert_array_equal(base.rows, own.rows)
    np.testing.assert_array_equal(base.scores, own.scores)
    for block in (1, 2, 3):
        np.testing.assert_array_equal(
            unlisted.overlap(base, unlisted.list_for("cosine", block)),
            listed.overlap(own, listed.list_for("cosine", block)),
        )


def test_a_search_finds_the_queries_whose_lists_it_holds_in_their_order():
    """A gauge search reads its queries' own lists from the base search: as a prefix, in any
    order of corpus rows, and nowhere when a query, its values or k differ."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 4))
    rows = np.array([7, 3, 19, 0, 25, 11])
    search = NeighborSearch(x[rows], rows, 3, [Block("base", 6)])
    np.testing.assert_array_equal(search.query_indices(x[rows[:4]], rows[:4], 3), np.arange(4))
    order = np.array([4, 5, 0, 1])  # the later queries first, as a grown gauge search has them
    np.testing.assert_array_equal(search.query_indices(x[rows[order]], rows[order], 3), order)
    assert search.query_indices(x[rows[:4]], rows[:4], 4) is None  # another k
    assert search.query_indices(x[[7, 5]], np.array([7, 5]), 3) is None  # row 5 not searched
    moved = x[rows[order]].copy()
    moved[1, 2] += 1e-9
    assert search.query_indices(moved, rows[order], 3) is None  # other values at the same row
    assert search.query_indices(x[rows], rows, 3) is not None
    assert search.query_indices(x[np.r_[rows, 1]], np.r_[rows, 1], 3) is None  # more queries
    # Only the queries its base block lists: the others' lists are not its.
    fewer = NeighborSearch(x[rows], rows, 3, [Block("base", 4), Block("g", 6, np.ones(4))])
    assert fewer.query_indices(x[rows[4:]], rows[4:], 3) is None
    np.testing.assert_array_equal(fewer.query_indices(x[rows[2:4]], rows[2:4], 3), [2, 3])
    # A query file's rows carry no position: found as the search's first queries only.
    external = np.full(3, knn.EXTERNAL_ROW)
    outside = NeighborSearch(x[:3], external, 3, [Block("base", 3)])
    np.testing.assert_array_equal(outside.query_indices(x[:2], external[:2], 3), np.arange(2))
    assert outside.query_indices(x[[1, 0]], external[:2], 3) is None


@pytest.mark.parametrize(
    "blocks, metrics",
    [
        ([Block("base", 5), Block("g", 5, np.ones(4), listed=False)], ("cosine",)),
        ([Block("base", 5, listed=False), Block("g", 5, np.ones(4))], knn.METRICS),
        ([Block("base", 5, listed=False)], ("cosine",)),
    ],
)
def test_only_the_base_block_of_a_cosine_search_of_gauges_may_be_unlisted(blocks, metrics):
    x = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(ValueError, match="unlisted"):
        NeighborSearch(x[:5], np.arange(5), 3, blocks, metrics)
    listed = [Block(b.name, b.n_queries, b.scale) for b in blocks]
    NeighborSearch(x[:5], np.arange(5), 3, listed, metrics)  # the same blocks, listed


@pytest.mark.parametrize("metrics", [("l2", "dot"), ("cosine", "hamming"), ()])
def test_a_search_without_cosine_or_with_an_unknown_metric_is_refused(metrics):
    with pytest.raises(ValueError, match="metrics"):
        NeighborSearch(np.eye(3), np.arange(3), 1, [Block("base", 3)], metrics)


def test_extreme_magnitudes_do_not_overflow_the_float32_products():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((200, 16)) * 1e30
    search = _search(x, np.arange(10), 5)
    ref_rows, _ = exact_lists(x / 1e30, np.arange(10), 5, "l2")
    for got, want in zip(search.list_for("l2").rows, ref_rows, strict=True):
        assert set(got) == set(want)


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_rows_in_cluster_order_give_the_brute_force_lists(metric):
    """Rows stored cluster by cluster: a later chunk puts hundreds of rows of a query's own
    cluster above the bar an earlier chunk set, in every tile. The candidates are cut to the k
    nearest (and their ties) per query before their features are kept; the lists stay exact."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((6, 32)) * 4
    x = np.concatenate([centre + rng.standard_normal((700, 32)) for centre in centres])
    x *= rng.lognormal(0, 0.3, size=(len(x), 1))
    query_rows = rng.choice(len(x), 120, replace=False)
    search = _search(x, query_rows, k=10, chunk=1400)  # the first chunk holds two clusters
    found = search.list_for(metric)
    ref_rows, ref_scores = exact_lists(x, query_rows, 10, metric)
    scale = np.abs(ref_scores).max()
    _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, 1e-5 * scale)


def test_a_query_with_nothing_outside_a_zeroed_dimension_scores_zero_without_warnings():
    # The canonical gauge gives dead dimensions a scale of 0: a row that lives only there has no
    # direction under it. It must neither warn nor disturb the other queries' lists.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((200, 6))
    x[:, 0] = 0.5  # a dead dimension
    x[0, 1:] = 0.0  # row 0 lives only on it
    scale = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0])
    query_rows = np.array([0, 5, 17, 33])
    search = _search(x, query_rows, 5, [Block("base", 4), Block("gauge", 4, scale)], chunk=1)
    gauged = search.list_for("cosine", block=1)
    assert np.all(gauged.scores[0] == 0.0)
    # Row 0 is a zero vector under the gauge: cosine 0 with every row, as the reference has it.
    expected = exact_cosine_top(x * scale, query_rows[1:], 5)
    for found, wanted in zip(gauged.rows[1:], expected, strict=True):
        assert set(found) == set(wanted)


def test_a_search_cut_to_its_first_queries_searches_on_as_one_of_those_alone():
    # head(m) keeps the first m queries of every block; rows added to it afterwards give the
    # lists of a search of those m queries from the start (its groups and memory are its own).
    rng = np.random.default_rng(12)
    x = rng.standard_normal((900, 12)) * rng.lognormal(size=(900, 1))
    query_rows = rng.choice(400, 30, replace=False)  # rows of the first part
    scale = np.exp(rng.normal(0.0, 0.7, size=12))
    blocks = [Block("base", 30), Block("gauge", 20, scale)]
    first = NeighborSearch(x[query_rows], query_rows, 5, blocks)
    first.add(clean_rows(x[:400]))
    cut = first.head(12)
    for start in range(400, 900, 61):
        cut.add(clean_rows(x[start : start + 61], start))
    whole = _search(x, query_rows[:12], 5, [Block("base", 12), Block("gauge", 12, scale)])
    for a, b in zip(cut.lists, whole.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_a_search_sent_to_another_process_takes_no_products_memory_along():
    import pickle

    rng = np.random.default_rng(13)
    x = rng.standard_normal((600, 8))
    search = _search(x, np.arange(10), 3)
    search.scratch.products(10, 4096)  # memory a worker keeps between its steps
    assert search.scratch.nbytes > 0
    copy = pickle.loads(pickle.dumps(search))
    assert copy.scratch.nbytes == 0
    np.testing.assert_array_equal(copy.list_for("cosine").rows, search.list_for("cosine").rows)


@pytest.mark.parametrize("spread", [0.0, 0.7])
def test_rows_are_taken_in_norm_order_only_where_their_norms_differ(spread):
    # L2 and inner-product bounds tighten when a tile holds rows of similar norms, so a chunk's
    # rows are taken by norm; a unit-norm export's norms differ by rounding alone, and its rows
    # are taken as they come, without a copy. The lists are brute force's either way.
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3000, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= np.exp(spread * rng.standard_normal((3000, 1)))
    query_rows = np.sort(rng.choice(len(x), 40, replace=False))
    search = NeighborSearch(x[query_rows], query_rows, 8, [Block("base", 40)])
    rows = clean_rows(x[:1000])
    positions, norms, unit = search._ordered(rows)
    if spread:
        assert unit is not rows.unit and (np.diff(norms) >= 0).all()
        np.testing.assert_array_equal(unit, rows.unit[positions])
    else:
        assert unit is rows.unit and (positions == rows.positions).all()
    search = _search(x, query_rows, k=8, chunk=1000)
    for metric in knn.METRICS:
        found = search.list_for(metric)
        ref_rows, ref_scores = exact_lists(x, query_rows, 8, metric)
        tolerance = 1e-5 * np.abs(ref_scores).max()
        _same_sets_up_to_ties(found.rows, found.scores, ref_rows, ref_scores, tolerance)


@pytest.mark.parametrize("metric", knn.METRICS)
def test_rows_that_all_tie_give_the_lowest_rows_from_k_candidates_a_query(metric, monkeypatch):
    """A file of one repeated row (a broken encoder's) ties every product: the lists are brute
    force's (equal scores, the lower row first), and each chunk gives a query at most k
    candidates to compute features for, not every row that ties (its memory grew with rows
    × queries: 5.9 GB on 30,000 such 64-d rows)."""
    rng = np.random.default_rng(31)
    x = np.tile(rng.standard_normal((1, 12)), (3000, 1))
    x[::97] = rng.standard_normal((len(x[::97]), 12))  # a few other rows
    query_rows = np.arange(1, 3000, 50)
    computed: list[int] = []
    features = knn.select.TopKSelection._features

    def counted(self, chunk, query, column):
        computed.append(len(query))
        return features(self, chunk, query, column)

    monkeypatch.setattr(knn.select.TopKSelection, "_features", counted)
    search = _search(x, query_rows, 10, chunk=700)
    ref_rows, _ = exact_lists(x, query_rows, 10, metric)
    np.testing.assert_array_equal(search.list_for(metric).rows, ref_rows)
    assert max(computed) <= 10 * len(query_rows)
