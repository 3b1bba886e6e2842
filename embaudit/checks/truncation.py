"""EA303 truncation: the cosine neighbours of the first M dimensions against those of all d."""

from __future__ import annotations

from embaudit.checks.base import AuditData, register
from embaudit.checks.neighbors import SKIP, overlap_summary, query_population
from embaudit.model import Finding, Status


@register(
    "EA303",
    summary="Cosine neighbours on the first M dimensions against those on all of them.",
    what=(
        "With --truncate M (repeatable), computes the overlap@k between the exact cosine kNN "
        "of the query sample on the first M dimensions and on all d, against the whole file. "
        "A truncation is the diagonal gauge D = (1…1, 0…0), so it runs in the same pass and "
        "the same matrix product as EA301; a row with nothing in its first M dimensions scores "
        "0 against every row there. The value is the overlap at the smallest M; "
        "metrics.dimensions lists every M with its standard error."
    ),
    why=(
        "Matryoshka-trained encoders (and API embeddings with a 'dimensions' parameter) are "
        "meant to be cut to their first M dimensions to save memory and search time. Whether "
        "the cut keeps the neighbours depends on the model and the data: a model not trained "
        "for it loses most of them, and even a Matryoshka model loses more at small M. This is "
        "the share of today's cosine neighbours the truncated vectors still return."
    ),
    fix=(
        "Keep at least the smallest M whose overlap reaches the threshold (metrics.dimensions), "
        "or deploy all d dimensions. Re-normalize the truncated vectors before indexing with "
        "L2 or inner product (their norms are no longer 1)."
    ),
    reference="Kusupati et al. (2022), 'Matryoshka Representation Learning', NeurIPS, "
    "arXiv:2205.13147",
    threshold=0.8,
    threshold_rationale=(
        "As EA301: a truncation should not change more than one neighbour in five. Tighten it "
        "for retrieval that must match the full vectors."
    ),
    option="truncate",
    samples=("queries",),
    reads=("truncation",),
)
def truncation(data: AuditData, threshold: float) -> Finding:
    neighbors = data.neighbors
    if neighbors is None or neighbors.k == 0 or not neighbors.truncation:
        return Finding(Status.SKIP, None, SKIP)
    d = data.stats.d
    rows = [
        {"m": m} | overlap_summary(per_query, query_population(data))
        for m, per_query in sorted(neighbors.truncation.items())
    ]
    smallest = rows[0]
    value = smallest["overlap_at_k"]
    metrics = {
        "standard_error": smallest["standard_error"],  # of the value: the smallest M's overlap
        "dimensions": rows,
        "d": d,
        "k": neighbors.k,
        "queries": neighbors.queries,
    }
    others = "; ".join(f"{row['overlap_at_k']:.2f} at M = {row['m']}" for row in rows[1:])
    message = (
        f"overlap@{neighbors.k} {value:.2f} on the first {smallest['m']} of {d} dimensions"
        + (f" ({others})" if others else "")
    )
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    enough = [row["m"] for row in rows if row["overlap_at_k"] >= threshold]
    keep = f"at least {enough[0]} dimensions" if enough else f"all {d} dimensions"
    return Finding(
        Status.WARN,
        value,
        f"{message}: truncating to {smallest['m']} changes more neighbours than the threshold "
        "allows",
        metrics,
        recommendation=f"Keep {keep} of the vectors (truncation changes the cosine neighbours)",
    )
