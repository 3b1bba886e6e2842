"""The pass as map and reduce: fragments, their merge, and the Ray engine on a two-node cluster.

The Ray tests start a local cluster of two nodes (``ray.cluster_utils.Cluster``) once for the
module; every claim about the Ray engine is checked against the local engine on the same data.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import embaudit
from embaudit import engines as engines_module
from embaudit.engines import LocalEngine, RayEngine, make_engine
from embaudit.errors import IncompleteError, InputError, UsageError
from embaudit.knn import TILE, Block, NeighborSearch, Scratch, SharedBars, exact_lists
from embaudit.map_step import PassPlan, Searched
from embaudit.measurement.sampling import Sampling, gauge_corpus
from embaudit.measurement.steps import measure
from embaudit.sources import Chunk, Fragment, ParquetSource, ShardedSource, open_source
from embaudit.sources import parquet as parquet_module
from embaudit.sources import shards as shards_module
from embaudit.stats import (
    CleanRows,
    clean_mask,
    fold_fragment,
    norm_summary,
    row_norms,
    scan,
    shuffle,
)

D = 24


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """Anisotropic data with norms that vary, a NaN row, a zero row and duplicates."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, D)) * rng.uniform(0.2, 3.0, size=D)).astype(np.float32)
    x += rng.normal(size=D).astype(np.float32)  # a common direction
    x[7, 3] = np.nan
    x[1500] = 0.0
    x[2900] = x[11]  # a duplicate across files
    x[3100] = x[3000]  # and within one
    return x


def write_dataset(directory: Path, x: np.ndarray, files: int = 3, row_group: int = 300) -> Path:
    """A directory of parquet files with an id column and several row groups per file."""
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(x), files + 1).astype(int)
    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        part = x[start:stop]
        table = pa.table(
            {
                "id": pa.array([f"doc-{i}" for i in range(start, stop)]),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), D),
            }
        )
        pq.write_table(table, directory / f"part-{index:03d}.parquet", row_group_size=row_group)
    return directory


@pytest.fixture
def small_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fragments of two or three row groups, so that a small dataset has many of them."""
    monkeypatch.setattr(parquet_module, "FRAGMENT_BYTES", 600 * D * 4)


@pytest.fixture
def dataset(tmp_path: Path, small_fragments: None) -> Path:
    return write_dataset(tmp_path / "export", _vectors(3600))


def _comparable(report: Any) -> dict[str, Any]:
    """A report's JSON without what may differ between runs: timings and the engine's name."""
    out: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    out.pop("timings")
    assert out["params"].pop("engine") in ("local", "ray")
    return out


# Fragments and the local engine ----------------------------------------------------------------


def test_fragments_cover_every_row_once_in_whole_row_groups(dataset: Path) -> None:
    source = open_source(dataset)
    fragments = source.fragments()
    assert len(fragments) >= 6
    assert fragments[0].start == 0 and fragments[-1].stop == source.n
    for before, after in itertools.pairwise(fragments):
        assert before.stop == after.start
    for fragment in fragments:
        assert fragment.start % 300 == 0  # whole row groups
        chunks = list(source.read(fragment, 128))
        assert chunks[0].start == fragment.start and chunks[-1].stop == fragment.stop
        assert all(len(chunk.values) <= 128 for chunk in chunks)
        assert fragment.where is not None and fragment.where.endswith(".parquet")
    whole = np.concatenate([chunk.values for chunk in source.chunks(128)])
    np.testing.assert_array_equal(whole, _vectors(3600))


def test_merged_fragments_equal_one_pass_over_the_array(dataset: Path) -> None:
    """Statistics merged from many fragments agree with the same pass over one array."""
    x = _vectors(3600)
    merged = scan(open_source(dataset))
    whole = scan(open_source(x))
    assert len(open_source(x).fragments()) == 1
    np.testing.assert_array_equal(merged.norms, whole.norms)
    np.testing.assert_array_equal(merged.clean, whole.clean)
    assert merged.non_finite.rows == whole.non_finite.rows == [7]
    assert merged.non_finite.ids == ["doc-7"]
    assert merged.zero.rows == [1500]
    assert merged.duplicate_rows == whole.duplicate_rows == 2
    assert [group.rows for group in merged.duplicate_groups] == [[11, 2900], [3000, 3100]]
    assert merged.moments.count == whole.moments.count
    # Chan's merge in another order: equal up to float64 rounding of sums over 3,600 rows.
    np.testing.assert_allclose(merged.moments.mean, whole.moments.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(merged.moments.m2, whole.moments.m2, rtol=1e-12)
    np.testing.assert_allclose(merged.unit_sum, whole.unit_sum, rtol=1e-12, atol=1e-12)
    clean = x[whole.clean].astype(np.float64)
    np.testing.assert_allclose(merged.moments.mean, clean.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(merged.moments.m2, clean.var(axis=0) * len(clean), rtol=1e-10)


def _search(x: np.ndarray, k: int = 10) -> NeighborSearch:
    rows = np.flatnonzero(clean_mask(x.astype(np.float64), x.dtype))[::37][:60]
    scale = np.exp(np.random.default_rng(5).normal(0, 0.5, size=x.shape[1]))
    blocks = [Block("base", len(rows)), Block("gauge", 20, scale)]
    return NeighborSearch(x[rows].astype(np.float64), rows, k, blocks)


def _feed(search: NeighborSearch, x: np.ndarray, start: int, stop: int, step: int) -> None:
    for begin in range(start, stop, step):
        values = x[begin : min(stop, begin + step)].astype(np.float64)
        keep = clean_mask(values, x.dtype)
        norms = row_norms(values[keep])
        unit = (values[keep] / norms[:, None]).astype(np.float32)
        search.add(CleanRows(begin + np.flatnonzero(keep), values[keep], norms, unit))


@pytest.mark.parametrize("part_step", [100, 333])
def test_search_lists_merged_from_parts_equal_one_search(part_step: int) -> None:
    """absorb(): top-k lists of disjoint parts, merged in any order, are the lists of one pass;
    and they agree with a brute-force float64 reference. With the same chunks the features are
    bit-identical; with other chunks the float32 products may round differently (BLAS blocks by
    shape) but the neighbour sets are the same."""
    x = _vectors(3600)
    one = _search(x)
    _feed(one, x, 0, len(x), 100)
    parts = []
    for start, stop in itertools.pairwise([0, 700, 1900, 2000, 3600]):
        part = one.fresh()
        assert all((held.rows == -1).all() for held in part.lists)
        _feed(part, x, start, stop, part_step)
        parts.append(part)
    merged = one.fresh()
    for part in reversed(parts):
        merged.absorb(part.lists)
    for a, b in zip(one.lists, merged.lists, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        if part_step == 100:
            np.testing.assert_array_equal(a.features, b.features)
        else:
            np.testing.assert_allclose(a.features, b.features, rtol=1e-6)
    clean = clean_mask(x.astype(np.float64), x.dtype)
    usable = np.flatnonzero(clean)
    queries = np.searchsorted(usable, one.query_rows)
    for metric in ("cosine", "l2", "dot"):
        rows, ref_scores = exact_lists(x[usable], queries, 10, metric)
        found = merged.list_for(metric).rows
        # No wrong neighbour: a row outside the reference list ties with its 10th (float32).
        tolerance = 1e-5 * np.abs(ref_scores).max()
        for want, want_scores, got, got_scores in zip(
            rows, ref_scores, found, merged.list_for(metric).scores, strict=True
        ):
            extra = np.isin(got, usable[want], invert=True)
            assert np.all(np.abs(got_scores[extra] - want_scores[-1]) <= tolerance), metric


def test_local_engine_name_and_options(tmp_path: Path) -> None:
    assert make_engine("local").name == "local"
    with pytest.raises(UsageError, match="--ray-address applies to --engine ray"):
        make_engine("local", "auto")
    with pytest.raises(UsageError, match="--engine must be one of local, ray"):
        make_engine("spark")
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"embedding": [1.0, 2.0]}\n{"embedding": [2.0, 1.0]}\n')
    with pytest.raises(UsageError, match=r"reads parquet datasets.*rows.jsonl is jsonl.*local"):
        make_engine("ray", None, [open_source(lines)])


def test_a_dataset_of_many_files_keeps_few_open(tmp_path: Path) -> None:
    directory = tmp_path / "many"
    directory.mkdir()
    x = _vectors(3600)[:600]
    for index in range(60):
        part = x[index * 10 : (index + 1) * 10]
        table = pa.table({"v": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), D)})
        pq.write_table(table, directory / f"part-{index:03d}.parquet")
    before = len(list(Path("/proc/self/fd").iterdir()))
    source = open_source(directory)
    assert len(source.fragments()) == 60
    stats = scan(source)
    source.take(np.arange(0, 600, 7))
    assert len(list(Path("/proc/self/fd").iterdir())) - before <= parquet_module.OPEN_FILES
    assert stats.non_finite.rows == [7] and stats.zero.count == 0


class CountingEngine(LocalEngine):
    closed = 0

    def close(self) -> None:
        CountingEngine.closed += 1


def test_an_engine_passed_in_stays_open_for_the_next_call(dataset: Path) -> None:
    engine = CountingEngine()
    first = embaudit.audit(dataset, engine=engine)
    second = embaudit.compare_knn(dataset, engine=engine, queries=50)
    assert CountingEngine.closed == 0
    assert first.params["engine"] == second.params["engine"] == "local"
    with pytest.raises(UsageError, match="ray_address applies to an engine given by name"):
        embaudit.audit(dataset, engine=engine, ray_address="auto")


def test_uri_opens_the_same_dataset(dataset: Path) -> None:
    by_path = embaudit.audit(dataset)
    by_uri = embaudit.audit(dataset.resolve().as_uri())
    assert by_uri.input["path"].startswith("file://")
    assert by_uri.input["files"] == 3
    a, b = _comparable(by_path), _comparable(by_uri)
    a["input"].pop("path"), b["input"].pop("path")
    assert a == b


def test_ray_missing_is_a_usage_error_with_the_install_command(
    cli: Any, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = cli("check", dataset, "--engine", "ray")
    assert result.code == 2
    assert result.stderr.strip() == (
        "embaudit: error: --engine ray needs Ray: pip install 'embaudit[ray]'"
    )


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:1", "--ray-address 127.0.0.1:1: no Ray cluster answers there"),
        ("ray://127.0.0.1:1", "--ray-address ray://127.0.0.1:1: no Ray cluster answers there"),
        ("head-node", "--ray-address 'head-node': expected auto, host:port or ray://host:port"),
    ],
)
def test_an_unreachable_cluster_is_one_line_at_once(
    cli: Any, dataset: Path, address: str, problem: str
) -> None:
    assert not ray.is_initialized()
    result = cli("check", dataset, "--engine", "ray", "--ray-address", address)
    assert result.code == 2
    assert result.stderr.strip().startswith(f"embaudit: error: {problem}")
    assert len(result.stderr.strip().splitlines()) == 1


# Ray, on a local cluster of two nodes ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    # The test sources below travel to the workers by value (workers do not import tests/).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
    # One engine open for the module, as a program that runs Ray itself would hold one: the
    # raylet's messages about the workers these tests kill arrive late, and stay off the console.
    with RayEngine():
        yield nodes
    ray.shutdown()
    nodes.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class RecordingSource(ParquetSource):
    """Writes the node that read each fragment to a folder the test looks at."""

    def __init__(self, *args: Any, log: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            node = ray.get_runtime_context().get_node_id()
            (self.log / f"{fragment.index}-{node}-{os.getpid()}").touch()
        yield from super().read(fragment, chunk_rows)


class CrashingSource(ParquetSource):
    """Kills its worker process while reading fragment ``victim``, ``times`` times at most
    (counted with marker files, since every attempt runs in a new process)."""

    def __init__(self, *args: Any, markers: Path, victim: int, times: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.markers, self.victim, self.times = markers, victim, times

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        in_worker = ray.get_runtime_context().worker.mode == ray.WORKER_MODE
        if in_worker and fragment.index == self.victim:
            crashes = len(list(self.markers.iterdir()))
            if crashes < self.times:
                (self.markers / f"crash-{crashes}").touch()
                os._exit(1)  # the worker dies mid-task, as on a lost node
        yield from super().read(fragment, chunk_rows)


def test_ray_report_equals_local_report_on_two_nodes(
    cluster: Any, dataset: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    source = RecordingSource(dataset, log=log)
    local = embaudit.audit(source, seed=4)
    remote = embaudit.audit(source, seed=4, engine=RayEngine())
    assert remote.params["engine"] == "ray" and local.params["engine"] == "local"
    assert _comparable(remote) == _comparable(local)  # every value, to the last bit
    # Every fragment was mapped, on both nodes of the cluster.
    read = [path.name.split("-") for path in log.iterdir()]
    assert sorted({int(index) for index, _, _ in read}) == list(range(len(source.fragments())))
    assert len({node for _, node, _ in read}) == 2


def test_ray_measurements_equal_local_measurements(cluster: Any, dataset: Path) -> None:
    """The same query rows, neighbour sets and sample under both engines."""
    source = open_source(dataset)
    # The gauge queries search a sample of the rows: their rows travel with the plan.
    sampling = Sampling(queries=80, gauge_queries=20, sample=900, gauge_rows=1500)
    local = measure(source, k=10, seed=9, sampling=sampling, engine=LocalEngine())
    remote = measure(source, k=10, seed=9, sampling=sampling, engine=RayEngine())
    assert local.neighbors is not None and remote.neighbors is not None
    x = _vectors(3600)
    gauge_rows = gauge_corpus(len(x), 1500, seed=9)
    assert gauge_rows is not None
    clean = int(clean_mask(x[gauge_rows].astype(np.float64), x.dtype).sum())
    assert clean < 1500  # the NaN row or the zero row is among them: the count leaves it out
    assert local.neighbors.gauge_rows_searched == remote.neighbors.gauge_rows_searched == clean
    np.testing.assert_array_equal(remote.neighbors.canonical, local.neighbors.canonical)
    for pair, overlap in local.neighbors.overlap.items():
        np.testing.assert_array_equal(remote.neighbors.overlap[pair], overlap)
    for level, draws in local.neighbors.gauge.items():
        for a, b in zip(draws, remote.neighbors.gauge[level], strict=True):
            np.testing.assert_array_equal(a, b)
    assert local.geometry is not None and remote.geometry is not None
    np.testing.assert_array_equal(local.geometry.eigenvalues, remote.geometry.eigenvalues)
    np.testing.assert_array_equal(local.stats.moments.m2, remote.stats.moments.m2)
    assert remote.stats.duplicate_rows == 2


def test_ray_compare_knn_equals_local(cluster: Any, dataset: Path, tmp_path: Path) -> None:
    x = _vectors(3600)
    retrained = write_dataset(
        tmp_path / "retrained",
        x + 0.3 * np.random.default_rng(2).normal(size=x.shape).astype(np.float32),
        files=2,
    )
    for args in ((dataset,), (dataset, retrained)):
        local = embaudit.compare_knn(*args, queries=100)
        remote = embaudit.compare_knn(*args, queries=100, engine="ray")
        assert _comparable(remote) == _comparable(local)
    # check --baseline: the drift checks compare the neighbours of the two exports.
    local = embaudit.audit(retrained, baseline=dataset)
    remote = embaudit.audit(retrained, baseline=dataset, engine="ray")
    assert remote.check("EA601").value == local.check("EA601").value < 1
    assert _comparable(remote) == _comparable(local)


def test_a_task_that_dies_once_is_retried_and_the_report_is_unchanged(
    cluster: Any, dataset: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    flaky = CrashingSource(dataset, markers=markers, victim=2, times=1)
    expected = embaudit.audit(open_source(dataset), engine="local")
    report = embaudit.audit(flaky, engine=RayEngine())
    assert [path.name for path in markers.iterdir()] == ["crash-0"]  # it did die once
    assert _comparable(report) == _comparable(expected)


def test_a_fragment_lost_for_good_stops_the_run(
    cluster: Any, dataset: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    doomed = CrashingSource(dataset, markers=markers, victim=1, times=100)
    fragment = doomed.fragments()[1]
    with pytest.raises(IncompleteError) as caught:
        embaudit.audit(doomed, engine=RayEngine())
    assert caught.value.where == fragment.where
    assert f"rows {fragment.start:,}–{fragment.stop:,} were not read" in str(caught.value)
    assert len(list(markers.iterdir())) == 4  # the first attempt and three retries


def _corrupt_data_pages(path: Path) -> None:
    """Overwrite the middle of a parquet file (data pages) and keep its footer readable."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    middle = (len(data) - footer) // 2
    data[middle - 2000 : middle + 2000] = os.urandom(4000)
    path.write_bytes(bytes(data))


def test_a_corrupt_fragment_is_an_input_error_naming_its_file(
    cli: Any, cluster: Any, dataset: Path
) -> None:
    victim = dataset / "part-001.parquet"
    _corrupt_data_pages(victim)
    with pytest.raises(InputError) as caught:
        embaudit.audit(dataset, engine="ray")
    assert caught.value.where == str(victim)
    result = cli("check", dataset, "--engine", "ray")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"embaudit: error: {victim}: cannot read")
    assert result.stdout == ""


@pytest.fixture
def shard_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of .npy shards cut into fragments of 800 rows, across the shards."""
    monkeypatch.setattr(shards_module, "FRAGMENT_BYTES", 800 * D * 4)
    folder = tmp_path / "img_emb"
    folder.mkdir()
    x = _vectors(3600)
    for index, (start, stop) in enumerate(itertools.pairwise((0, 1000, 1001, 2500, 3600))):
        np.save(folder / f"img_emb_{index:04d}.npy", x[start:stop])
    return folder


@pytest.mark.parametrize("via", ["path", "uri"])
def test_ray_reads_a_directory_of_npy_shards_as_the_local_engine(
    cluster: Any, shard_directory: Path, via: str
) -> None:
    """A directory, or the same files behind a URI prefix (read by byte ranges on the
    workers), gives the local engine's report."""
    source = open_source(shard_directory if via == "path" else shard_directory.as_uri())
    assert len(source.fragments()) == 5
    local = embaudit.audit(source, seed=3)
    remote = embaudit.audit(source, seed=3, engine=RayEngine())
    assert _comparable(remote) == _comparable(local)
    duplicates = next(check for check in remote.checks if check.code == "EA003")
    assert duplicates.metrics["examples"][0]["rows"] == [11, 2900]  # across shards


def test_ray_reads_one_memory_mapped_file_as_the_local_engine(cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "vectors.npy"
    np.save(path, _vectors(3600))
    local = embaudit.audit(path, seed=5)
    assert _comparable(embaudit.audit(path, seed=5, engine="ray")) == _comparable(local)


class CrashingShards(ShardedSource):
    """CrashingSource's crash, on a directory of shards."""

    def __init__(self, *args: Any, markers: Path, victim: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.markers, self.victim = markers, victim

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        in_worker = ray.get_runtime_context().worker.mode == ray.WORKER_MODE
        if in_worker and fragment.index == self.victim and not any(self.markers.iterdir()):
            (self.markers / "crash-0").touch()
            os._exit(1)
        yield from super().read(fragment, chunk_rows)


def test_a_shard_task_that_dies_is_retried_and_one_gone_is_named(
    cluster: Any, shard_directory: Path, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    opened = open_source(shard_directory)
    assert isinstance(opened, ShardedSource)
    files = sorted(shard_directory.iterdir())
    flaky = CrashingShards(str(shard_directory), files, opened._opener, markers=markers, victim=3)
    report = embaudit.audit(flaky, seed=3, engine=RayEngine())
    assert [path.name for path in markers.iterdir()] == ["crash-0"]
    assert _comparable(report) == _comparable(embaudit.audit(opened, seed=3))
    files[2].unlink()  # the workers open their shards anew: one is gone
    with pytest.raises(InputError, match=r"img_emb_0002\.npy: disappeared during the run"):
        embaudit.audit(opened, engine=RayEngine())


class DyingTake(ParquetSource):
    """Kills its worker the first time a task reads rows by position (the shuffle's reduce
    confirming its candidates)."""

    def __init__(self, *args: Any, markers: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.markers = markers

    def take(self, rows: Any) -> Any:
        in_worker = ray.get_runtime_context().worker.mode == ray.WORKER_MODE
        if in_worker and not any(self.markers.iterdir()):
            (self.markers / "killed").touch()
            os._exit(1)
        return super().take(rows)


def _sketch_comparable(report: Any) -> dict[str, Any]:
    """_comparable without EA101's quantiles: the sketch compacts at random."""
    out = _comparable(report)
    for check in out["checks"]:
        if check["code"] == "EA101":
            for key in ("p1", "p50", "p99", "histogram"):
                check["metrics"].pop(key)
            check.pop("value"), check.pop("message")
    verdict = out["verdict"]
    verdict["reasons"] = [reason for reason in verdict["reasons"] if "EA101" not in reason]
    return out


def test_the_shuffle_on_ray_finds_the_duplicates_of_the_local_engine(
    cluster: Any, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sketched norms and duplicates found by a shuffle of 4 buckets, one of whose reduce
    tasks dies once: the report of the local engine, quantiles within the sketch's error."""
    monkeypatch.setattr(norm_summary, "SKETCH_ROWS", 1000)
    monkeypatch.setattr(shuffle, "BUCKET_BYTES", 3600 * 16 // 4)
    markers = tmp_path / "markers"
    markers.mkdir()
    local = embaudit.audit(open_source(dataset), seed=2)
    remote = embaudit.audit(DyingTake(dataset, markers=markers), seed=2, engine=RayEngine())
    assert [path.name for path in markers.iterdir()] == ["killed"]  # a reduce task died once
    assert _sketch_comparable(remote) == _sketch_comparable(local)
    duplicates = next(check for check in remote.checks if check.code == "EA003")
    assert [group["rows"] for group in duplicates.metrics["examples"]] == [[11, 2900], [3000, 3100]]
    norms = [next(c for c in r.checks if c.code == "EA101").metrics for r in (local, remote)]
    for key in ("p1", "p50", "p99"):
        assert norms[1][key] == pytest.approx(norms[0][key], rel=0.05)


def test_cli_check_with_the_ray_engine(cli: Any, cluster: Any, dataset: Path) -> None:
    local = cli("check", dataset, "-f", "json", "--seed", "1")
    remote = cli("check", dataset, "-f", "json", "--seed", "1", "--engine", "ray")
    assert (local.code, remote.code) == (1, 1)  # a NaN row fails EA001 under both
    a, b = local.json(), remote.json()
    assert b["params"].pop("engine") == "ray" and a["params"].pop("engine") == "local"
    a.pop("timings"), b.pop("timings")
    assert a == b


NOISY_RAY_CLI = """
import os, sys
from pathlib import Path
import embaudit.cli as cli
from embaudit.sources import ParquetSource

class NoisySource(ParquetSource):  # prints in every task, kills the worker of fragment 1 once
    def read(self, fragment, chunk_rows=None):
        print(f"task reads fragment {fragment.index}")
        os.write(1, b"task writes to fd 1\\n")
        marker = Path(os.environ["CRASH_MARKER"])
        if fragment.index == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        yield from super().read(fragment, chunk_rows)

audit = cli.audit
cli.audit = lambda file, *args, **options: audit(NoisySource(file), *args, **options)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("ray_logs", ["", "1"])
def test_cli_stdout_is_the_report_alone_when_ray_workers_print_and_die(
    tmp_path: Path, ray_logs: str
) -> None:
    """A local cluster started by the command: tasks print, a worker dies and its task is
    retried; stdout is the JSON report and nothing else. Ray's own output is off by default and
    goes to stderr with EMBAUDIT_RAY_LOGS=1."""
    directory = write_dataset(tmp_path / "export", _vectors(3600))
    marker = tmp_path / "crashed"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env |= {"CRASH_MARKER": str(marker), "EMBAUDIT_RAY_LOGS": ray_logs}
    command = ["check", str(directory), "--engine", "ray", "-f", "json", "--seed", "1"]
    done = subprocess.run(
        [sys.executable, "-c", NOISY_RAY_CLI, *command],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 1, done.stderr  # the NaN row fails EA001
    assert marker.exists()  # a worker did die
    report = json.loads(done.stdout)  # fails on anything but one JSON document
    assert report["params"]["engine"] == "ray" and report["input"]["files"] == 3
    if ray_logs:
        assert "Started a local Ray instance" in done.stderr
    else:
        assert done.stderr == ""


# The local engine's workers ------------------------------------------------------------------


class _Seen:
    """A consumer that records the rows it is given (and lets the other worker take a turn)."""

    def __init__(self) -> None:
        self.positions: list[np.ndarray] = []

    def __call__(self, rows: CleanRows) -> None:
        self.positions.append(rows.positions)
        time.sleep(0.002)


def test_workers_share_the_chunks_and_fold_the_statistics_of_one_worker() -> None:
    """Two workers take the chunks in turn (each in row order); every clean row reaches exactly
    one of them; the statistics, folded in row order, equal one worker's to the last bit."""
    x = _vectors(3600)
    source = open_source(x)
    (fragment,) = source.fragments()
    alone = fold_fragment(source, fragment, consumers=[[_Seen()]], chunk_rows=100)
    seen = [_Seen(), _Seen()]
    shared = fold_fragment(source, fragment, consumers=[[s] for s in seen], chunk_rows=100)
    assert alone is not None and shared is not None
    assert all(s.positions for s in seen)  # both workers searched
    for s in seen:
        starts = [int(p[0]) for p in s.positions]
        assert starts == sorted(starts)
    every = np.sort(np.concatenate([p for s in seen for p in s.positions]))
    np.testing.assert_array_equal(every, np.flatnonzero(clean_mask(x, x.dtype)))
    for name in ("norms", "hashes", "non_finite", "unit_sum", "unit_sq_sum"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name))
    np.testing.assert_array_equal(shared.moments.m2, alone.moments.m2)
    np.testing.assert_array_equal(shared.moments.mean, alone.moments.mean)
    assert shared.nan_rows == alone.nan_rows == 1


@pytest.mark.parametrize("d", [16, 768])
def test_a_chunk_is_sized_by_its_work_not_by_its_bytes(d: int) -> None:
    """Without a chunk size asked for, a chunk holds at most one step of the widest search
    (rows x stacked queries), and at most the source's chunk of bytes, in whole tiles of the
    search: 16-d rows are cut into many chunks (every worker takes some), 768-d rows keep the
    chunks of bytes, which are already smaller than a step."""
    rows = 200_000 if d == 16 else 20_000
    x = np.random.default_rng(0).standard_normal((rows, d)).astype(np.float32)
    source = open_source(x)
    wide = NeighborSearch(x[:600], np.arange(600), 10, [Block("base", 600)])
    narrow = NeighborSearch(x[:50], np.arange(50), 10, [Block("base", 50)])
    plan = PassPlan((Searched(narrow), Searched(wide)))
    bytes_rows = source.default_chunk_rows()
    chunk_rows = plan.chunk_rows(source)
    assert chunk_rows % TILE == 0 and 0 <= min(bytes_rows, wide.step_rows()) - chunk_rows < TILE
    nothing = PassPlan().chunk_rows(source)  # nothing searched: the bytes decide
    assert nothing % TILE == 0 and 0 <= bytes_rows - nothing < TILE
    if d == 16:
        assert wide.step_rows() < narrow.step_rows() and wide.step_rows() * 4 < bytes_rows
    else:
        assert chunk_rows == nothing and bytes_rows < wide.step_rows()
    wide_rows = open_source(np.ones((2, 2**16), np.float32))  # 128 rows of bytes: < a tile
    assert PassPlan().chunk_rows(wide_rows) == wide_rows.default_chunk_rows() == 128


def test_an_error_in_one_worker_stops_the_pass_and_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = open_source(_vectors(3600))
    read = source.read

    def failing(fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        for index, chunk in enumerate(read(fragment, chunk_rows)):
            if index == 5:
                raise InputError("export.npy", "row 500 is torn")
            yield chunk

    monkeypatch.setattr(source, "read", failing)
    (fragment,) = source.fragments()
    seen = [_Seen(), _Seen()]
    with pytest.raises(InputError, match="row 500 is torn"):
        fold_fragment(source, fragment, consumers=[[s] for s in seen], chunk_rows=100)
    assert sum(len(s.positions) for s in seen) <= 5


@pytest.mark.parametrize("workers", [2, 3])
def test_a_pass_on_several_workers_gives_the_report_of_one(workers: int) -> None:
    x = _vectors(3600)
    sampling = Sampling(queries=200, sample=1000, gauge_rows=1200)
    one = embaudit.audit(x, engine=LocalEngine(workers=1), chunk_rows=128, sampling=sampling)
    several = embaudit.audit(
        x, engine=LocalEngine(workers=workers), chunk_rows=128, sampling=sampling
    )
    assert LocalEngine(workers=workers).workers == workers
    assert _comparable(several) == _comparable(one)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_search_over_some_rows_sees_their_clean_rows_alone(workers: int) -> None:
    """Searched(search, rows): the lists are those of brute force on the clean rows at
    ``rows``, whatever the chunks (some hold none of them) and the workers."""
    x = _vectors(3600)
    rng = np.random.default_rng(4)
    some = [rng.choice(1000, 300, replace=False), 2000 + rng.choice(1600, 500, replace=False)]
    rows = np.unique(np.concatenate([*some, [7, 1500]]))  # with the NaN row and the zero row
    clean = rows[clean_mask(x[rows].astype(np.float64), x.dtype)]
    assert len(clean) == len(rows) - 2
    queries = clean[[0, 150, 400, 700]]
    search = NeighborSearch(x[queries].astype(np.float64), queries, 10, [Block("b", 4)])
    plan = PassPlan((Searched(search, rows),))
    LocalEngine(workers=workers).run(open_source(x), plan, chunk_rows=97)
    for metric in ("cosine", "l2", "dot"):
        want, _ = exact_lists(x[clean], np.searchsorted(clean, queries), 10, metric)
        for expected, found in zip(clean[want], search.list_for(metric).rows, strict=True):
            assert set(found.tolist()) == set(expected.tolist()), metric


@pytest.mark.parametrize("workers", [1, 2])
def test_a_workers_searches_share_memory_and_bars_until_the_pass_ends(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's searches run one after the other: their products take the same memory, kept
    from one chunk to the next (a fresh allocation per step is paged in again), and dropped
    when the pass ends, so that finished searches hold none."""
    x = _vectors(3600)
    searches = [
        NeighborSearch(x[:40].astype(np.float64), np.arange(40), 10, [Block("b", 40)])
        for _ in range(2)
    ]
    held: dict[int, set[int]] = {}  # scratch -> addresses of the products taken from it
    taken = Scratch.products

    def products(scratch: Any, *shape: int) -> np.ndarray:
        out = taken(scratch, *shape)
        held.setdefault(id(scratch), set()).add(out.__array_interface__["data"][0])
        return out

    monkeypatch.setattr(Scratch, "products", products)
    shared: set[int] = set()  # the shared bars the searches' steps reported to
    raised = SharedBars.raised

    def reported(bars: Any, *args: Any) -> Any:
        shared.add(id(bars))
        return raised(bars, *args)

    monkeypatch.setattr(SharedBars, "raised", reported)
    plan = PassPlan(tuple(Searched(s) for s in searches))
    LocalEngine(workers=workers).run(open_source(x), plan, chunk_rows=512)
    # Each worker's one scratch served both searches, the same memory on every chunk.
    assert len(held) == workers
    assert all(len(addresses) == 1 for addresses in held.values())
    assert all(s.scratch.nbytes == 0 for s in searches)
    # Two workers of a search prune by each other's bars (one set of bars per search), and
    # the searches keep none once the pass ends.
    assert len(shared) == (2 if workers > 1 else 0)
    assert all(s.shared_bars is None for s in searches)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_workers_chunks_take_the_same_memory_chunk_after_chunk(workers: int) -> None:
    """Each worker copies its chunks' rows and computes their unit rows in the same memory,
    chunk after chunk (a new array a chunk is mapped and faulted in page by page); the rows
    are the consumers' for the call only, and the statistics are those of fresh memory."""
    x = _vectors(3600)
    source = open_source(x)
    fragment = source.fragments()[0]
    seen: list[dict[str, set[int]]] = [{"values": set(), "unit": set()} for _ in range(workers)]

    def recorder(own: dict[str, set[int]]) -> Any:
        def record(rows: CleanRows) -> None:
            if len(rows.positions) == rows.rows_read:  # else the clean rows are a copy
                own["values"].add(rows.values.__array_interface__["data"][0])
            own["unit"].add(rows.unit.__array_interface__["data"][0])
            reference = x[rows.positions] / np.linalg.norm(x[rows.positions], axis=1)[:, None]
            np.testing.assert_allclose(rows.unit, reference, rtol=1e-6)
            time.sleep(0.002)  # the other worker takes a turn

        return record

    shared = fold_fragment(
        source, fragment, consumers=[[recorder(own)] for own in seen], chunk_rows=256
    )
    assert all(len(own["values"]) == 1 and len(own["unit"]) == 1 for own in seen)
    alone = fold_fragment(source, fragment, consumers=[[]], chunk_rows=3600)
    assert shared is not None and alone is not None
    np.testing.assert_array_equal(shared.norms, alone.norms)
    np.testing.assert_array_equal(shared.hashes, alone.hashes)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pass_that_fails_keeps_no_products_memory(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _vectors(3600)
    search = NeighborSearch(x[:40].astype(np.float64), np.arange(40), 10, [Block("b", 40)])
    calls = []

    def failing(self: Any, group: Any, chunk: Any, bar: Any, pairs: Any) -> None:
        calls.append(1)
        if len(calls) > 3:  # after the products of a few steps were taken
            raise RuntimeError("a worker fails")

    monkeypatch.setattr(NeighborSearch, "_add_full", failing)
    with pytest.raises(RuntimeError, match="a worker fails"):
        LocalEngine(workers=workers).run(
            open_source(x), PassPlan((Searched(search),)), chunk_rows=512
        )
    assert search.scratch.nbytes == 0


def test_the_local_engine_takes_a_worker_per_core_and_leaves_blas_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines_module, "_cores", lambda: 2)
    assert (LocalEngine().workers, LocalEngine().blas_threads) == (2, 1)
    monkeypatch.setattr(engines_module, "_cores", lambda: 16)
    assert (LocalEngine().workers, LocalEngine().blas_threads) == (engines_module.MAX_WORKERS, 4)
    monkeypatch.setattr(engines_module, "_cores", lambda: 1)
    assert (LocalEngine().workers, LocalEngine().blas_threads) == (1, 1)
    # One worker with one BLAS thread: the work of a single-CPU cluster task.
    monkeypatch.setattr(engines_module, "_cores", lambda: 2)
    assert LocalEngine(workers=1).blas_threads == 2
    assert LocalEngine(workers=1, blas_threads=1).blas_threads == 1
