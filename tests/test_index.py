"""Index readiness (EA701, EA702) and truncation (EA303) against faiss used directly and a
float64 brute force."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import faiss
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from embaudit import Level, Status, audit
from embaudit.checks import REGISTRY
from embaudit.index import (
    CORETYPE,
    IndexMetric,
    IndexPlan,
    kernel_for_faiss,
    measure_index,
    numpy_blas_kernel,
    training_sample,
)
from embaudit.measurement.sampling import Sampling
from embaudit.measurement.steps import measure
from embaudit.sources import open_source
from embaudit.stats import row_norms
from tests.exports import encoder_like, exact_cosine_top, lognormal_norms, set_overlap

K = 10
N, D = 3000, 32
SAMPLING = Sampling(queries=200)
ONE_CHUNK = 10**6  # the index is built from one add, as the direct faiss build below


def _export(seed: int = 0, sigma: float = 0.0) -> np.ndarray:
    """Clustered float32 rows; log-normal norms of spread ``sigma`` (0: unit rows)."""
    rows = encoder_like(N, D, seed=seed, common=0.5)
    return (lognormal_norms(rows, sigma=sigma, seed=seed) if sigma else rows).astype(np.float32)


def _unit32(x: np.ndarray) -> np.ndarray:
    """Unit rows as embaudit hands them to a cosine index: float64 division, then float32."""
    wide = np.asarray(x, dtype=np.float64)
    return (wide / row_norms(wide)[:, None]).astype(np.float32)


def _measured(x, spec, metric, objective="cosine", sample=None):
    """The audit's exact lists of a query sample, and the index measured against them."""
    source = open_source(x)
    neighbors = measure(source, k=K, seed=0, sampling=SAMPLING, chunk_rows=ONE_CHUNK).neighbors
    assert neighbors is not None and neighbors.search is not None
    plan = IndexPlan(spec, IndexMetric(metric), sample, seed=0)
    indexed = measure_index(source, neighbors.search, plan, objective, chunk_rows=ONE_CHUNK)
    return neighbors.query_rows, indexed


def _faiss_lists(index, queries, query_rows):
    """faiss searched directly for k + 1; the query's own row dropped (else the last)."""
    _, labels = index.search(queries, K + 1)
    lists = []
    for row, found in zip(query_rows, labels, strict=True):
        others = [int(label) for label in found if label != row]
        lists.append(others[:K])
    return np.array(lists)


def _brute(x, query_rows, metric):
    """float64 brute force: the k nearest rows under ``metric``, the query excluded."""
    wide = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        return exact_cosine_top(wide, query_rows, K)
    scores = wide[query_rows] @ wide.T
    if metric == "l2":
        scores = -((wide[query_rows] ** 2).sum(1)[:, None] + (wide**2).sum(1) - 2 * scores)
    scores[np.arange(len(query_rows)), query_rows] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :K]


def test_hnsw_recall_at_defaults_and_along_the_sweep_is_faiss_against_brute_force():
    x = _export(sigma=0.5)
    query_rows, indexed = _measured(x, "HNSW32", "cosine")
    unit = _unit32(x)
    index = faiss.index_factory(D, "HNSW32", faiss.METRIC_INNER_PRODUCT)
    index.add(unit)
    exact = _brute(x, query_rows, "cosine")

    def recall(ef_search: int) -> float:
        index.hnsw.efSearch = ef_search
        return set_overlap(_faiss_lists(index, unit[query_rows], query_rows), exact)

    assert indexed.knob == "efSearch" and indexed.default_setting == 16
    assert indexed.recall.mean() == pytest.approx(recall(16), abs=1e-12)
    assert [point.value for point in indexed.sweep][:2] == [16, 32]
    for point in indexed.sweep:
        assert point.param == "efSearch"
        assert point.recall == pytest.approx(recall(point.value), abs=1e-12)
        assert point.ms_per_query > 0
    # The objective is cosine and so is the index: EA702 is the recall itself.
    assert np.array_equal(indexed.objective_overlap, indexed.recall)


def test_ivf_flat_recall_is_faiss_trained_on_the_same_rows_and_exact_at_every_list():
    x = _export(sigma=0.5)
    query_rows, indexed = _measured(x, "IVF16,Flat", "l2", objective="l2")
    train = training_sample(open_source(x), N, seed=0)  # fewer rows than TRAIN_MIN: all
    assert indexed.trained_on == len(train) == N and indexed.lists == 16
    index = faiss.index_factory(D, "IVF16,Flat", faiss.METRIC_L2)
    # embaudit scales L2 and inner-product rows by one power of two: exact, same ranking.
    index.train(train.astype(np.float32))
    index.add(x)
    exact = _brute(x, query_rows, "l2")

    def recall(nprobe: int) -> float:
        faiss.extract_index_ivf(index).nprobe = nprobe
        return set_overlap(_faiss_lists(index, x[query_rows], query_rows), exact)

    assert indexed.knob == "nprobe" and indexed.default_setting == 1
    assert indexed.recall.mean() == pytest.approx(recall(1), abs=1e-12)
    assert indexed.recall.mean() < 1.0
    for point in indexed.sweep:
        assert point.recall == pytest.approx(recall(point.value), abs=1e-12)
    # Probing every list is exhaustive search: recall 1, and the sweep stops there.
    assert indexed.sweep[-1].recall == 1.0
    assert indexed.sweep[-1].value <= 16


@pytest.mark.parametrize("spec", ["HNSW32", "HNSW4"])  # recall near 1, and well below
def test_ea702_of_an_inner_product_index_on_unnormalized_rows_is_agreement_times_recall(spec):
    x = _export(sigma=0.05)
    query_rows, indexed = _measured(x, spec, "ip", objective="cosine")
    # What faiss returns, against the brute-force cosine and inner-product neighbours.
    index = faiss.index_factory(D, spec, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    returned = _faiss_lists(index, x[query_rows], query_rows)
    cosine, inner = _brute(x, query_rows, "cosine"), _brute(x, query_rows, "dot")
    assert indexed.objective_overlap.mean() == pytest.approx(set_overlap(returned, cosine))
    assert indexed.recall.mean() == pytest.approx(set_overlap(returned, inner))
    agreement = set_overlap(inner, cosine)
    assert indexed.exact_agreement.mean() == pytest.approx(agreement)
    assert 0.3 < agreement < 0.8  # the norms move the inner-product neighbours
    product = agreement * indexed.recall.mean()
    assert indexed.objective_overlap.mean() == pytest.approx(product, abs=0.03)


def test_ea702_fails_for_a_declared_objective_and_names_the_index_and_the_fix():
    x = _export(sigma=0.6)
    report = audit(x, trained_with="cosine", index="HNSW32", index_metric="ip", sampling=SAMPLING)
    check = report.check("EA702")
    assert check.status == Status.FAIL and check.impact == Level.UNTRUSTWORTHY
    assert check.metrics["exact_agreement"] == pytest.approx(report.check("EA402").value)
    assert check.value == pytest.approx(
        check.metrics["exact_agreement"] * check.metrics["recall"], abs=0.03
    )
    assert report.verdict.level == Level.UNTRUSTWORTHY
    reason = next(r for r in report.verdict.reasons if r.startswith("EA702"))
    assert "HNSW32 (ip)" in reason
    assert any("Normalize the vectors" in r for r in report.verdict.recommendations)
    # The same index with the objective's metric returns the cosine neighbours.
    fixed = audit(x, trained_with="cosine", index="HNSW32", sampling=SAMPLING)
    assert fixed.params["index_metric"] == "cosine"
    assert fixed.check("EA702").status == Status.PASS


def test_ea702_warns_when_the_objective_is_unknown():
    x = _export(sigma=0.6)
    check = audit(x, index="HNSW32", index_metric="ip", sampling=SAMPLING).check("EA702")
    assert check.status == Status.WARN and check.impact == Level.CAUTION


def test_ea701_recommends_the_smallest_setting_reaching_the_threshold():
    x = _export(sigma=0.5)
    check = audit(x, index="IVF16,Flat", sampling=SAMPLING).check("EA701")
    sweep = check.metrics["sweep"]
    assert set(sweep[0]) == {"param", "value", "recall", "ms_per_query"}
    reaching = [point for point in sweep if point["recall"] >= check.threshold]
    assert check.metrics["recommended"] == {"param": "nprobe", "value": reaching[0]["value"]}
    assert check.value == sweep[0]["recall"]  # nprobe 1 is faiss's default and the first
    if check.value < check.threshold:
        assert check.status == Status.WARN
        assert check.recommendation is not None
        assert f"nprobe = {reaching[0]['value']}" in check.recommendation.text


def test_a_duplicate_of_a_true_neighbour_is_not_a_miss():
    base = _export()[: N // 2]
    x = np.concatenate([base, base])  # every row twice: ties everywhere
    _, indexed = _measured(x, "Flat", "cosine")
    assert indexed.recall.mean() == 1.0
    assert indexed.knob is None and indexed.sweep == []


def test_an_index_sample_is_compared_with_the_exact_neighbours_in_that_sample():
    x = _export(sigma=0.5)
    report = audit(x, index="IVF16,Flat", index_sample=1000, sampling=SAMPLING)
    check = report.check("EA701")
    assert check.metrics["rows"] == 1000 and check.metrics["sample"] is True
    assert "built on a sample of 1,000 rows" in check.message
    assert report.params["index_sample"] == 1000
    # Exhaustive search finds every exact neighbour of the sample (not of the whole file).
    assert check.metrics["sweep"][-1]["recall"] == 1.0


def test_ea303_is_the_brute_force_overlap_on_the_first_columns():
    x = _export(sigma=0.5)
    source = open_source(x)
    neighbors = measure(source, k=K, seed=0, sampling=SAMPLING, truncate=(8, 16)).neighbors
    assert neighbors is not None
    wide = x.astype(np.float64)
    full = exact_cosine_top(wide, neighbors.query_rows, K)
    for m in (8, 16):
        truncated = exact_cosine_top(wide[:, :m], neighbors.query_rows, K)
        assert neighbors.truncation[m].mean() == pytest.approx(set_overlap(truncated, full))
    check = audit(x, truncate=[16, 8], sampling=SAMPLING).check("EA303")
    assert [row["m"] for row in check.metrics["dimensions"]] == [8, 16]
    assert check.value == pytest.approx(neighbors.truncation[8].mean())
    assert check.value < check.metrics["dimensions"][1]["overlap_at_k"] < 1.0


def test_ea303_passes_when_the_last_dimensions_carry_nothing():
    x = _export()
    x = np.concatenate([x, 1e-4 * np.ones((N, 8), np.float32)], axis=1)  # a constant tail
    check = audit(x, truncate=[D], sampling=SAMPLING).check("EA303")
    assert check.status == Status.PASS and check.value > 0.95


def test_checks_an_option_asks_for_appear_only_with_it():
    report = audit(_export(), sampling=SAMPLING)
    codes = {check.code for check in report.checks}
    assert not codes & {"EA303", "EA701", "EA702"}
    assert not {"index", "index_metric", "index_sample", "truncate"} & set(report.params)
    assert {REGISTRY[c].option for c in ("EA303", "EA701", "EA702")} == {"truncate", "index"}


def test_cli_index_report_in_every_format(cli, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _export(sigma=0.5))
    # Every check finds something, so that the github format annotates each.
    index = ["--index", "IVF16,Flat", "--index-metric", "ip"]
    args = ["check", path, *index, "--truncate", "8", "--queries", "200"]
    for name in ("table", "markdown", "junit", "github", "html"):
        result = cli(*args, "-f", name)
        assert result.code in (0, 1), result.stderr
        for code in ("EA303", "EA701", "EA702"):
            assert code in result.stdout, (name, code)
    html = cli(*args, "-f", "html").stdout
    assert "IVF16,Flat: recall against nprobe" in html
    document = cli(*args, "-f", "json").json()
    assert document["params"]["index"] == "IVF16,Flat" and document["params"]["truncate"] == [8]
    statuses = {c["code"]: c["status"] for c in document["checks"]}
    assert {statuses[code] for code in ("EA303", "EA701", "EA702")} == {"warn"}
    assert {"EA303", "EA701", "EA702"} <= {check["code"] for check in document["checks"]}


def test_cli_index_from_the_configuration_file(cli, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _export(sigma=0.5))
    config = tmp_path / "embaudit.toml"
    config.write_text(
        'index = "IVF16,Flat"\nindex-metric = "l2"\nindex-sample = 1000\ntruncate = [8]\n'
        'select = ["EA3", "EA7"]\nqueries = 200\n[checks.EA701]\nthreshold = 0.5\n'
    )
    document = cli("check", path, "--config", config, "-f", "json").json()
    checks = {check["code"]: check for check in document["checks"]}
    assert {"EA303", "EA701", "EA702"} <= set(checks)
    assert checks["EA701"]["threshold"] == 0.5
    assert checks["EA701"]["metrics"]["metric"] == "l2"
    assert checks["EA701"]["metrics"]["rows"] == 1000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--index", "Nonsense42"], "--index 'Nonsense42' cannot be built for d = 32"),
        (["--index", "IVF8,PQ5"], "--index 'IVF8,PQ5' cannot be built for d = 32"),
        (["--index", "HNSW32", "--engine", "ray"], "--index needs the local engine"),
        (["--truncate", "32"], "--truncate must be below the dimension d = 32, got 32"),
        (["--truncate", "0"], "--truncate must be a list of positive integers"),
        (["--index", "HNSW32", "--index-sample", "5"], "--index-sample must be larger than"),
    ],
)
def test_bad_index_options_are_one_line_usage_errors(cli, tmp_path, args, expected):
    path = tmp_path / "x.npy"
    np.save(path, _export()[:500])
    result = cli("check", path, *args)
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert result.stdout == ""


def test_faiss_prints_nothing_when_it_trains_on_fewer_rows_than_it_asks_for(cli_process, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, _export()[:2000])  # 2,000 rows for 256 lists: faiss would warn
    result = cli_process("check", path, "--index", "IVF256,Flat", "-f", "json", "--queries", "100")
    assert result.code in (0, 1), result.stderr
    assert "WARNING" not in result.stderr and "clustering" not in result.stderr
    check = next(c for c in json.loads(result.stdout)["checks"] if c["code"] == "EA701")
    assert "trained on 2,000 rows for 256 lists (faiss asks for 39 per list)" in check["message"]


def test_explain_says_which_option_runs_the_check(cli):
    for code, flag in (("EA701", "--index"), ("EA702", "--index"), ("EA303", "--truncate")):
        result = cli("explain", code)
        assert result.code == 0 and f"`{flag}`" in result.stdout


def test_same_options_same_measurements():
    x = _export(sigma=0.5)

    def values(report):
        return [(c.code, c.value, c.message) for c in report.checks]

    first = audit(x, index="HNSW32", index_metric="ip", truncate=[8], sampling=SAMPLING)
    second = audit(x, index="HNSW32", index_metric="ip", truncate=[8], sampling=SAMPLING)
    assert values(first) == values(second)
    sweeps = [r.check("EA701").metrics["sweep"] for r in (first, second)]
    assert [p["recall"] for p in sweeps[0]] == [p["recall"] for p in sweeps[1]]


def test_a_plan_carries_the_deployed_build_setting():
    from embaudit.index import IndexMetric, IndexPlan, _hnsw_of, new_index

    plan = IndexPlan("HNSW16", IndexMetric.COSINE, None, 0, build=(("efConstruction", 64),))
    assert _hnsw_of(new_index(8, plan)).hnsw.efConstruction == 64
    default = IndexPlan("HNSW16", IndexMetric.COSINE, None, 0)
    assert _hnsw_of(new_index(8, default)).hnsw.efConstruction == 40  # faiss's own


_KERNELS = """
import json, os, sys
from threadpoolctl import threadpool_info
import embaudit.index.faiss_import as index
exec(sys.argv[1])  # the test's patch, if any
before = {i["filepath"] for i in threadpool_info()}
numpy = index.numpy_blas_kernel()
index._faiss()
faiss = [  # the OpenBLAS libraries faiss brought
    i.get("architecture")
    for i in threadpool_info()
    if i["internal_api"] == "openblas" and i["filepath"] not in before
]
print(json.dumps({"numpy": numpy, "faiss": faiss, "env": os.environ.get("OPENBLAS_CORETYPE")}))
"""


def _kernels(coretype: str | None, patch: str = "pass") -> dict:
    environment = {k: v for k, v in os.environ.items() if k != CORETYPE}
    if coretype is not None:
        environment[CORETYPE] = coretype
    done = subprocess.run(
        [sys.executable, "-c", _KERNELS, patch], capture_output=True, text=True, env=environment
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return json.loads(done.stdout)


def _numpy_says(kernel: str | None) -> str:
    return f"index.numpy_blas_kernel = lambda libraries=None: {kernel!r}"


#: Whether this faiss brings its own OpenBLAS (faiss-cpu's Linux wheels do) next to numpy's.
needs_openblas = pytest.mark.skipif(
    not any(i["internal_api"] == "openblas" and "faiss" in i["filepath"] for i in threadpool_info())
    or numpy_blas_kernel() is None,
    reason="faiss and numpy do not both run on OpenBLAS here",
)
x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels")


def test_numpy_blas_kernel_is_the_first_openblas_that_names_one():
    libraries = [
        {"internal_api": "openmp", "architecture": None},
        {"internal_api": "mkl", "architecture": "Haswell"},  # not an OpenBLAS: not its kernel
        {"internal_api": "openblas", "architecture": None},
        {"internal_api": "openblas", "architecture": "SkylakeX"},
        {"internal_api": "openblas", "architecture": "Zen"},
    ]
    assert numpy_blas_kernel(libraries) == "SkylakeX"
    assert numpy_blas_kernel(libraries[:3]) is None
    assert numpy_blas_kernel([]) is None


def test_faiss_is_handed_only_kernels_its_openblas_knows():
    assert kernel_for_faiss("SkylakeX") == "SkylakeX"
    assert kernel_for_faiss("HASWELL") == "HASWELL"  # OpenBLAS compares names without case
    assert kernel_for_faiss("SapphireRapids") == "Cooperlake"  # newer than 0.3.15: the nearest
    assert kernel_for_faiss("NeoverseV2") is None  # unknown: faiss's OpenBLAS detects itself
    assert kernel_for_faiss(None) is None


@needs_openblas
@x86
def test_faiss_runs_on_the_kernel_numpy_detected_and_the_environment_is_left_as_it_was():
    """faiss-cpu's older bundled OpenBLAS gives CPUs newer than itself a generic kernel
    (Prescott on a virtualized Xeon whose numpy runs SkylakeX): faiss's ends up on numpy's
    kernel, and the variable that told it is gone after the import."""
    seen = _kernels(None)
    assert seen["faiss"] == [kernel_for_faiss(seen["numpy"])]
    assert seen["env"] is None
    # Whatever this CPU: a kernel numpy reports is the one faiss's OpenBLAS runs (Sandybridge:
    # AVX, which every x86-64 CPU this suite runs on has).
    assert _kernels(None, _numpy_says("Sandybridge"))["faiss"] == ["Sandybridge"]


@needs_openblas
@x86
def test_a_kernel_faiss_would_not_know_is_not_handed_over():
    own = _kernels(None, _numpy_says(None))["faiss"]  # faiss's OpenBLAS left to detect
    seen = _kernels(None, _numpy_says("NoSuchKernel"))
    assert seen["faiss"] == own and seen["env"] is None


@needs_openblas
@x86
def test_a_kernel_the_user_chose_is_kept():
    seen = _kernels("Prescott")  # SSE3: every x86-64 CPU runs it
    assert seen["faiss"] == ["Prescott"]
    assert seen["env"] == "Prescott"


def test_faiss_loads_in_a_process_whose_standard_streams_are_closed(tmp_path):
    out = tmp_path / "loaded"
    script = (  # the result file opened first: it would take descriptor 1 once that is closed
        f"import os, sys; result = open({str(out)!r}, 'w'); os.close(1); os.close(2); "
        "sys.stdout = sys.stderr = None; from embaudit.index import _faiss; "
        "result.write(_faiss().__name__); result.close()"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == 0
    assert out.read_text() == "faiss"
