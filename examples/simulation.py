"""Simulated data of Steck, Ekanadham & Kallus (2024), §4, and the closed-form solutions of their
two matrix-factorisation objectives (docs/science.md).

Steck, H., Ekanadham, C. & Kallus, N. (2024). Is Cosine-Similarity of Embeddings Really About
Similarity? Companion Proceedings of the ACM Web Conference 2024. arXiv:2403.05440.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interactions:
    matrix: np.ndarray  # (users, items) 0/1 float64
    item_cluster: np.ndarray  # (items,) ground-truth cluster of each item


def simulate(
    users: int = 20_000,
    items: int = 1_000,
    clusters: int = 5,
    min_items: int = 20,
    seed: int = 0,
) -> Interactions:
    """The §4 data-generating process.

    Items fall into ``clusters`` equal clusters; within each cluster item popularity follows a
    power law whose exponent is drawn from U(0.25, 1.5). Each user has random preferences over
    the clusters (Dirichlet(1)) and a power-law number of items (Pareto with index 1.5, at
    least ``min_items``, at most a quarter of the items), drawn without replacement with
    probability proportional to cluster preference times item popularity.
    """
    rng = np.random.default_rng(seed)
    item_cluster = np.repeat(np.arange(clusters), -(-items // clusters))[:items]
    popularity = np.empty(items)
    for c in range(clusters):
        members = np.flatnonzero(item_cluster == c)
        exponent = rng.uniform(0.25, 1.5)
        popularity[members] = rng.permutation(np.arange(1, len(members) + 1) ** -exponent)
    matrix = np.zeros((users, items))
    preference = rng.dirichlet(np.ones(clusters), size=users)
    counts = np.clip((rng.pareto(1.5, size=users) + 1) * min_items, min_items, items // 4)
    counts = counts.astype(int)
    for u in range(users):
        weights = preference[u, item_cluster] * popularity
        chosen = rng.choice(items, size=counts[u], replace=False, p=weights / weights.sum())
        matrix[u, chosen] = 1.0
    return Interactions(matrix, item_cluster)


def _top_singular(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``rank`` singular values and right singular vectors of the data matrix."""
    gram = matrix.T @ matrix
    eigenvalues, vectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1][:rank]
    return np.sqrt(np.clip(eigenvalues[order], 0, None)), vectors[:, order]


def fit_eq1(
    matrix: np.ndarray, rank: int = 50, penalty: float = 10_000.0, gauge: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 1, min ||X - X A B^T||^2 + lambda ||A B^T||^2, in closed form.

    A B^T = V_k diag(g) V_k^T with g = 1 / (1 + lambda / sigma^2). Every split
    B = V_k diag(g)^(1/2) D, A = V_k diag(g)^(1/2) D^-1 is optimal (the gauge freedom); ``gauge``
    is D (default: the identity). Returns (item embeddings B, user embeddings X A).
    """
    sigma, vectors = _top_singular(matrix, rank)
    g = 1.0 / (1.0 + penalty / sigma**2)
    d = np.ones(rank) if gauge is None else gauge
    items = vectors * np.sqrt(g) * d
    users = matrix @ (vectors * np.sqrt(g) / d)
    return items, users


def fit_eq2(
    matrix: np.ndarray, rank: int = 50, penalty: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 2, min ||X - X A B^T||^2 + lambda (||X A||^2 + ||B||^2), in closed form (up to rotation).

    B = V_k diag(sqrt(sigma (1 - lambda / sigma)_+)), X A = U_k diag(sqrt(sigma (1 - lambda /
    sigma)_+)). Returns (item embeddings B, user embeddings X A).
    """
    sigma, vectors = _top_singular(matrix, rank)
    weight = np.sqrt(sigma * np.clip(1 - penalty / sigma, 0, None))
    items = vectors * weight
    left = matrix @ vectors / sigma  # U_k = X V_k diag(1/sigma)
    return items, left * weight
