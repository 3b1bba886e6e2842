"""Nothing from a library underneath reaches the user: no numpy warning, whatever the export.

Each case runs the CLI in a child process with every warning turned into an error, on data
shaped like real exports (float64, float16, constant dimensions, log-normal norms, extreme
magnitudes), so a warning fails the run with exit 3 instead of printing a stray line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliResult
from tests.exports import DEAD_VALUES, encoder_like, lognormal_norms


def _exports() -> dict[str, np.ndarray]:
    unit = encoder_like(1500, 48, dead=(2, 9, 30), seed=3)
    raw = lognormal_norms(encoder_like(1500, 48, seed=5, normalize=False), seed=5)
    raw[:, [5, 6]] = DEAD_VALUES[:2]  # constant after the rescaling, as a bias would be
    return {
        "float64-dead-dims": unit,
        "float64-lognormal-norms": raw,
        "float32-dead-dims": unit.astype(np.float32),
        "float16": unit.astype(np.float16),
        "float32-huge": (raw * 1e30).astype(np.float32),
        "float32-tiny": (raw * 1e-30).astype(np.float32),
        "float64-huge": raw * 1e200,
    }


EXPORTS = _exports()


@pytest.mark.parametrize("name", sorted(EXPORTS))
@pytest.mark.parametrize("trained_with", ["dot", "unknown"])
def test_check_prints_the_report_and_nothing_else(
    cli_process: Callable[..., CliResult], tmp_path: Path, name: str, trained_with: str
) -> None:
    path = tmp_path / f"{name}.npy"
    np.save(path, EXPORTS[name])
    done = cli_process("check", path, "--trained-with", trained_with, "-f", "json")
    assert done.stderr == ""
    assert done.code in (0, 1)
    report = json.loads(done.stdout)
    assert report["input"]["dtype"] == str(EXPORTS[name].dtype)
    assert all(c["status"] != "skip" for c in report["checks"] if c["code"] == "EA302")


@pytest.mark.parametrize("command", [("compare-knn",), ("gauge",)])
def test_the_other_commands_print_nothing_else_on_float64_with_dead_dimensions(
    cli_process: Callable[..., CliResult], tmp_path: Path, command: tuple[str, ...]
) -> None:
    items, users = tmp_path / "items.npy", tmp_path / "users.npy"
    np.save(items, EXPORTS["float64-lognormal-norms"])
    np.save(users, encoder_like(800, 48, dead=(5,), seed=8, normalize=False))
    paths = (items,) if command == ("compare-knn",) else (items, users)
    done = cli_process(*command, *paths, "-f", "json")
    assert done.stderr == ""
    assert done.code in (0, 1)
    json.loads(done.stdout)
