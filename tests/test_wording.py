"""What the one-liners and prompts say: every declarable objective offered where a declaration
is asked for, the outcome that happened, numbers printed with the digits that tell the side of
their threshold, and compare-knn's words."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embaudit.figures import beside
from embaudit.model import TrainedWith

DECLARABLE = {objective.value for objective in TrainedWith} - {TrainedWith.UNKNOWN.value}


def _offered(text: str) -> list[set[str]]:
    """The objectives each '--trained-with a|b|c' of ``text`` offers."""
    return [set(found.split("|")) for found in re.findall(r"--trained-with ([\w|-]+)", text)]


def test_every_prompt_to_declare_the_objective_offers_every_declarable_one(cli, fixtures):
    report = cli("check", fixtures / "unnormalized.npy", "-f", "json").json()
    verdict = report["verdict"]
    said = verdict["reasons"] + verdict["recommendations"]
    prompts = [line for line in said if "--trained-with" in line]
    assert len(prompts) == 2  # the reason that a declaration settles it, and the advice
    assert all(_offered(line) == [DECLARABLE] for line in prompts)
    refused = cli("check", fixtures / "unnormalized.npy", "--require-objective")
    assert refused.code == 2
    assert _offered(refused.stderr) == [DECLARABLE]
    assert "dot-regularized" in DECLARABLE


def test_exit_zero_says_the_gate_would_fail_and_the_exit_code_it_gives(cli, fixtures):
    args = ("check", fixtures / "sphere.npy", "--fail-on", "warn", "-q")
    failed = cli(*args)
    assert failed.code == 1 and "; gate failed on EA301 warn" in failed.stdout
    kept = cli(*args, "--exit-zero")
    assert kept.code == 0
    assert "gate failed" not in kept.stdout
    assert kept.stdout.rstrip().endswith(
        "; gate would fail on EA301 warn, verdict caution (--fail-on warn); exit 0 (--exit-zero)"
    )
    passed = cli("check", fixtures / "sphere.npy", "--trained-with", "cosine", "-q", "--exit-zero")
    assert passed.code == 0 and "gate" not in passed.stdout


@pytest.mark.parametrize(
    ("value", "threshold", "spec", "shown"),
    [
        (1.0997, 1.1, ".4g", "1.0997"),  # '1.1' would read as balanced at the bound
        (1.1003, 1.1, ".4g", "1.1003"),
        (1.1, 1.1, ".4g", "1.1"),  # at the threshold: as it is
        (4.6263, 1.1, ".4g", "4.626"),  # far from it: the digits asked for
        (0.4996, 0.5, ".3f", "0.4996"),  # '0.500' would not read as below 0.5
        (0.50004, 0.5, ".3f", "0.50004"),
        (0.032, 0.5, ".3f", "0.032"),
        (0.1 + 0.2, 0.3, ".3g", "0.30000000000000004"),  # a float64 hair above
    ],
)
def test_a_value_beside_its_threshold_shows_the_digits_that_tell_the_side(
    value, threshold, spec, shown
):
    printed = beside(value, threshold, spec)
    assert printed == shown
    assert (float(printed) > threshold) == (value > threshold)
    assert (float(printed) < threshold) == (value < threshold)


def _towers(tmp_path, condition: float):
    """Two towers balanced but for one column, scaled so that the balancing gauge has
    ``condition``; their cosine neighbours move a lot under gauges up to condition 10."""
    rng = np.random.default_rng(5)
    items, users = rng.standard_normal((400, 8)), rng.standard_normal((1200, 8))
    balance = np.linalg.norm(users, axis=0) / np.linalg.norm(items, axis=0)
    items, users = items * np.sqrt(balance), users / np.sqrt(balance)
    gauge = np.ones(8)
    gauge[3] = condition
    np.save(tmp_path / "items.npy", items * gauge)
    np.save(tmp_path / "users.npy", users / gauge)
    return tmp_path / "items.npy", tmp_path / "users.npy"


def test_balanced_towers_whose_gauge_gate_fails_are_not_told_cosine_can_be_used(cli, tmp_path):
    items, users = _towers(tmp_path, 1.0997)
    result = cli("gauge", items, users, "--sample", "300")
    assert result.code == 1  # the gauge gate fails
    printed = " ".join(result.stdout.split())
    assert "not identified by the model's scores" in printed
    assert "condition of the balancing gauge 1.0997 (balanced ≤ 1.1)" in printed
    report = cli("gauge", items, users, "--sample", "300", "-f", "json").json()
    assert report["balance"]["balanced"] is True
    (balanced,) = [line for line in report["recommendations"] if "balanced" in line]
    assert "can be used" not in balanced and "gate failed" in balanced
    assert "(condition 1.0997 ≤ 1.1)" in balanced
    # The same towers with a gate they pass are told cosine holds under that training.
    passing = cli("gauge", items, users, "--sample", "300", "--min-overlap", "0", "-f", "json")
    (balanced,) = [line for line in passing.json()["recommendations"] if "balanced" in line]
    assert "can be used" in balanced


def _export(path, vectors, ids):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"doc_id": pa.array(ids), "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}
    )
    pq.write_table(table, path)
    return path


def test_a_shuffled_copy_matched_by_row_order_names_the_id_column_to_match_by(cli, tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(600)]
    old = _export(tmp_path / "old.parquet", vectors, ids)
    order = rng.permutation(600)
    new = _export(tmp_path / "new.parquet", vectors[order], [ids[i] for i in order])
    shuffled = cli("compare-knn", old, new, "--min-overlap", "0.9")
    assert shuffled.code == 1
    printed = " ".join(shuffled.stdout.split())
    assert "matched by row order" in printed
    assert "both files have a column 'doc_id' that may identify them" in printed
    assert "--id-column doc_id" in printed
    by_id = cli("compare-knn", old, new, "--min-overlap", "0.9", "--id-column", "doc_id")
    assert by_id.code == 0 and "--id-column" not in by_id.stdout
    # Every item kept its neighbours: no table of items at overlap 1.00.
    assert "changed most: none — all 500 items compared kept their 10 nearest neighbours" in (
        " ".join(by_id.stdout.split())
    )
    report = cli("compare-knn", old, new, "--id-column", "doc_id", "-f", "json").json()
    assert report["changed_most"] == []


def test_changed_most_lists_only_items_whose_neighbours_changed(cli, tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    moved = vectors.copy()
    moved[:40] = rng.standard_normal((40, 16))  # 40 items move; their neighbours change
    old = tmp_path / "old.npy"
    np.save(old, vectors)
    np.save(tmp_path / "new.npy", moved)
    report = cli("compare-knn", old, tmp_path / "new.npy", "-f", "json").json()
    changed = report["changed_most"]
    assert 0 < len(changed) <= 10
    assert all(item["overlap_at_k"] < 1.0 for item in changed)
    overlaps = [item["overlap_at_k"] for item in changed]
    assert overlaps == sorted(overlaps)


def test_rows_left_out_are_counted_in_words(cli, tmp_path):
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((300, 8))
    vectors[[3, 10, 50]] = np.nan
    np.save(tmp_path / "old.npy", vectors)
    vectors[7] = 0.0
    np.save(tmp_path / "new.npy", vectors)
    result = cli("compare-knn", tmp_path / "old.npy", tmp_path / "new.npy")
    printed = " ".join(result.stdout.split())
    assert "left out of the neighbour lists: 3 of old, 4 of new" in printed
    assert "{" not in result.stdout


def test_an_unchanged_export_lists_no_item_as_changed_most(cli, tmp_path):
    vectors = np.random.default_rng(6).standard_normal((400, 8))
    np.save(tmp_path / "old.npy", vectors)
    np.save(tmp_path / "new.npy", vectors)
    args = ("compare-knn", tmp_path / "old.npy", tmp_path / "new.npy")
    assert cli(*args, "-f", "json").json()["changed_most"] == []
    printed = " ".join(cli(*args).stdout.split())
    assert "changed most: none — all 400 items compared kept their 10 nearest neighbours" in printed
    assert "overlap@10 ┃" not in printed  # no table of items at 1.00
