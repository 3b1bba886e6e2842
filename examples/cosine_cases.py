"""Generate the three worked cases of docs/worked-cases.md ("Is cosine trustworthy here?").

    python examples/cosine_cases.py [OUTPUT_DIR]        # default: examples/data

sphere.npy        10,000 × 64 clustered unit vectors, as a model trained on the sphere exports
                  them (InfoNCE with normalized outputs): check with --trained-with cosine
unnormalized.npy  the same vectors exported before the final normalization (log-normal norms):
                  check with --trained-with cosine
mf_items.npy      item embeddings of a matrix factorisation trained with the dot product: the
                  simulated data of Steck, Ekanadham & Kallus (2024) §4 (20,000 users, 1,000
                  items, 5 clusters), fitted with the closed form of their Eq. 1 (k = 50,
                  lambda = 10,000): check with --trained-with dot
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from simulation import fit_eq1, simulate


def sphere_like(n: int = 10_000, d: int = 64, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(clusters, size=n)] + rng.standard_normal((n, d)) * 0.08
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def make(output: Path, *, users: int = 20_000, n: int = 10_000) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    unit = sphere_like(n)
    norms = np.random.default_rng(1).lognormal(0.0, 0.5, size=(len(unit), 1))
    items, _ = fit_eq1(simulate(users=users).matrix, rank=50, penalty=10_000.0)
    files = {
        "sphere": (output / "sphere.npy", unit),
        "unnormalized": (output / "unnormalized.npy", unit * norms),
        "mf_items": (output / "mf_items.npy", items),
    }
    for path, array in files.values():
        np.save(path, array.astype(np.float32))
    return {name: path for name, (path, _) in files.items()}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for path in make(target).values():
        print(path)
