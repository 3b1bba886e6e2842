"""The shipped fixtures are exactly what the generator script writes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow.parquet as pq


def test_generator_reproduces_the_committed_fixtures(fixtures, tmp_path):
    spec = importlib.util.spec_from_file_location("make_fixtures", fixtures / "make_fixtures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.make(tmp_path)
    assert written
    for path in written:
        shipped = fixtures / path.name
        if path.suffix == ".npy":
            assert path.read_bytes() == shipped.read_bytes(), path.name
        else:
            assert pq.read_table(path).equals(pq.read_table(shipped)), path.name


def test_fixtures_stay_small(fixtures):
    total = sum(p.stat().st_size for p in fixtures.iterdir() if p.is_file())
    assert total <= 5 * 2**20


def test_sphere_fixture_is_normalized(fixtures):
    norms = np.linalg.norm(np.load(fixtures / "sphere.npy").astype(np.float64), axis=1)
    assert np.all(np.abs(norms - 1) < 1e-6)
