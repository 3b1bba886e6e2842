"""EA0xx, data defects: non-finite rows (EA001), zero vectors (EA002), exact duplicates (EA003),
dead dimensions (EA004) and near-duplicates (EA005)."""

from __future__ import annotations

from typing import Any

import numpy as np

from embaudit.array_types import Ints
from embaudit.checks.base import AuditData, register
from embaudit.checks.common import (
    DIMENSION_LIST_CAP,
    FEW_ROWS,
    ON_QUERY_LISTS,
    on_corpus_hygiene,
    query_share,
    share_text,
    warned_if,
)
from embaudit.measurement.neighbors import QueryHygiene
from embaudit.model import Action, Advice, Finding, Level, Status
from embaudit.stats import DEAD_RATIO, RowSet, dead_dimension_mask


def describe_rows(rows: RowSet) -> str:
    """'rows 3, 17, 40' (or 'ids a, b') with an ellipsis when the list is capped."""
    shown = rows.ids if rows.ids is not None else rows.rows
    label = ("id" if rows.ids is not None else "row") + ("s" if len(shown) > 1 else "")
    more = ", …" if rows.count > len(shown) else ""
    return f"{label} {', '.join(str(v) for v in shown)}{more}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _failed_on_rows(
    rows: RowSet, threshold: float, metrics: dict[str, Any], clean: str, found: str, action: Advice
) -> Finding:
    """EA001 and EA002: a pass (``clean``) while the rows number at most the threshold, else a
    failure that makes the verdict untrustworthy (``found``, recommending ``action``)."""
    count = float(rows.count)
    if rows.count <= threshold:
        return Finding(Status.PASS, count, clean, metrics)
    return Finding(
        Status.FAIL, count, found, metrics, impact=Level.UNTRUSTWORTHY, recommendation=action
    )


@register(
    "EA001",
    measures="rows with NaN/Inf (or a float64 norm beyond range), listed and counted",
    rule="fail on any",
    exact=True,
    summary="Rows containing NaN, ±Inf or a null.",
    what=(
        "Counts the rows with at least one NaN or infinite value (or, in float64, a norm beyond "
        "the float64 range) and lists the first of them. A null vector, or a null value inside "
        "one (pandas writes NaN in a list column that way), is read as NaN and counted here."
    ),
    why=(
        "Cosine similarity of a row with NaN or Inf is undefined, and most vector indexes either "
        "reject such rows or return them as nearest neighbours of everything. A non-finite value "
        "in an export usually means a diverged model, a failed batch or an overflow in a "
        "lower-precision cast. embaudit excludes these rows from every other check and says so."
    ),
    fix=(
        "Find where the listed rows come from (the failed batch or input), recompute them, or "
        "drop them from the export. Do not index them."
    ),
    threshold=0,
    threshold_rationale="Any non-finite row fails: cosine is undefined for it.",
)
def non_finite(data: AuditData, threshold: float) -> Finding:
    stats = data.stats
    rows = stats.non_finite
    metrics: dict[str, Any] = {**rows.to_dict(), "nan_rows": stats.nan_rows}
    metrics["inf_rows"] = stats.inf_rows
    listed = describe_rows(rows)
    return _failed_on_rows(
        rows,
        threshold,
        metrics,
        "every value is finite",
        f"{_plural(rows.count, 'row')} with NaN, Inf or null ({listed}); excluded from the other "
        "checks",
        Advice(
            f"Repair or drop the {_plural(rows.count, 'non-finite row')} ({listed}) before "
            "indexing",
            (Action.REPAIR,),
            specificity=1,
        ),
    )


@register(
    "EA002",
    measures="rows with norm 0 or below the dtype's smallest normal number",
    rule="fail on any",
    exact=True,
    summary="Rows whose norm is zero (or too small to carry a direction).",
    what=(
        "Counts the finite rows whose L2 norm is 0 or below the smallest normal number of the "
        "storage dtype (every component subnormal), and lists the first of them."
    ),
    why=(
        "Cosine divides by the norms, so it is undefined for a zero vector; libraries return 0, "
        "NaN or an arbitrary neighbour list for it. Zero rows usually stand for missing inputs "
        "(empty text, unknown item) that were exported as padding."
    ),
    fix=(
        "Drop the listed rows, or give missing items an explicit fallback (e.g. exclude them "
        "from retrieval). embaudit excludes them from the other checks."
    ),
    threshold=0,
    threshold_rationale="Any zero row fails: cosine is undefined for it.",
)
def zero_vectors(data: AuditData, threshold: float) -> Finding:
    rows = data.stats.zero
    smallest = float(np.finfo(data.stats.dtype).tiny)
    metrics = {**rows.to_dict(), "norm_below": smallest}
    zero, listed = _plural(rows.count, "zero vector"), describe_rows(rows)
    return _failed_on_rows(
        rows,
        threshold,
        metrics,
        "no zero vectors",
        f"{zero} ({listed}); cosine is undefined for them; excluded from the other checks",
        Advice(
            f"Drop the {zero} ({listed}) or give missing items an explicit fallback",
            (Action.DROP_ZERO,),
            specificity=1,
        ),
    )


@register(
    "EA003",
    measures="rows bit-identical to an earlier row (−0.0 = 0.0): share and groups",
    rule="warn on any",
    exact=True,
    summary="Rows that are exact copies of another row.",
    what=(
        "Finds rows whose values are bit-for-bit identical (−0.0 equal to 0.0) among the finite, "
        "non-zero rows. Reports the share of rows that repeat an earlier row and the first groups."
    ),
    why=(
        "Exact duplicates mean duplicated inputs or a pipeline bug (the same batch written twice, "
        "a fallback vector reused). They tie in every neighbour list, inflate hubness and waste "
        "index space. They do not make cosine wrong."
    ),
    fix="Deduplicate the inputs (or the rows) before embedding and indexing.",
    threshold=0.0,
    threshold_rationale=(
        "Warn on any duplicate: in an embedding export an exact copy is almost never intended."
    ),
)
def duplicates(data: AuditData, threshold: float) -> Finding:
    stats = data.stats
    fraction = stats.duplicate_rows / stats.n_clean if stats.n_clean else 0.0
    metrics = {
        "duplicate_rows": stats.duplicate_rows,
        "fraction": fraction,
        "groups": stats.duplicate_group_count,
        "examples": [group.to_dict() for group in stats.duplicate_groups],
    }
    if fraction <= threshold:
        return Finding(Status.PASS, fraction, "no exact duplicate rows", metrics)
    first = describe_rows(stats.duplicate_groups[0])
    return Finding(
        Status.WARN,
        fraction,
        f"{_plural(stats.duplicate_rows, 'row')} ({fraction:.2%}) repeat an earlier row, in "
        f"{_plural(stats.duplicate_group_count, 'group')} (e.g. {first})",
        metrics,
        recommendation=Advice(
            f"Deduplicate the inputs: {_plural(stats.duplicate_rows, 'row')} "
            f"{'is an exact copy' if stats.duplicate_rows == 1 else 'are exact copies'}",
            (Action.DEDUPLICATE,),
            specificity=1,
        ),
    )


#: Share of the dimensions above which dead dimensions that are zero warn (EA004).
DEAD_ZERO_SHARE = 0.05


def _all_zero(constants: np.ndarray, rms_coordinate: float, d: int, ratio: float) -> bool:
    """Whether constant columns add nothing to a cosine: each constant's square, what it adds to
    every dot product, at most ``ratio`` of the mean squared norm (d × rms coordinate²)."""
    return bool(np.all(constants.astype(np.float64) ** 2 <= ratio * d * rms_coordinate**2))


@register(
    "EA004",
    measures="dimensions whose std ≤ 1e-6 × the RMS coordinate (value: the smallest ratio)",
    rule="warn on any that is not zero, or on zero ones over 5% of the dimensions",
    exact=True,
    summary="Dimensions with (near-)zero variance.",
    what=(
        "Computes each dimension's standard deviation over the finite, non-zero rows and flags "
        "the dimensions whose standard deviation is at most the threshold times the root mean "
        "square coordinate, sqrt(mean ||x||^2 / d). A constant dimension is dead whatever its "
        "value. Its value is the smallest ratio std / rms coordinate over the dimensions, which "
        "the threshold judges; metrics.count is the number of dead dimensions. A dead dimension "
        "counts as zero when its constant c moves no cosine: c^2 (what it adds to every dot "
        "product) at most the threshold times the mean squared norm."
    ),
    why=(
        "A dead dimension carries no information about which items are similar. A constant "
        "non-zero one adds the same offset to every vector, which inflates every cosine; a zero "
        "one wastes index memory and compute. Many dead dimensions point to a collapsed or "
        "over-parameterised model."
    ),
    fix="Drop the listed dimensions before indexing (or reduce the output dimension).",
    threshold=DEAD_RATIO,
    threshold_rationale=(
        "1e-6 of the typical coordinate: far below any informative spread, well above the "
        "rounding noise of float32 and float64 values. The same rule decides which dimensions "
        "EA205 and EA302 leave out, so this threshold moves them too. A non-zero constant warns "
        "(it shifts every cosine); zero ones change no similarity and cost only their share of "
        f"the index, so they warn above {DEAD_ZERO_SHARE:.0%} of the dimensions (an output "
        "larger than the model uses). Both real sentence encoders measured (all-MiniLM-L6-v2 "
        "and all-mpnet-base-v2, on 6,000 and 2,000 docstring paragraphs) output three "
        "dimensions that are zero on every input: 0.8% of 384 and 0.4% of 768."
    ),
)
def dead_dimensions(data: AuditData, threshold: float) -> Finding:
    stats = data.stats
    if stats.moments.count < 2:
        return Finding(Status.SKIP, None, FEW_ROWS)
    std = stats.moments.std
    rms_coordinate = stats.rms_coordinate
    dead = np.flatnonzero(dead_dimension_mask(std, rms_coordinate, threshold))
    smallest = float(std.min() / rms_coordinate) if rms_coordinate > 0 else 0.0
    listed = [int(j) for j in dead[:DIMENSION_LIST_CAP]]
    metrics = {
        "count": len(dead),
        "dimensions": listed,
        "truncated": len(dead) > len(listed),
        "std_min": float(std.min()),
        "rms_coordinate": rms_coordinate,
        "threshold_applies_to": "std of a dimension / rms_coordinate",
    }
    if not len(dead):
        return Finding(Status.PASS, smallest, f"all {stats.d} dimensions vary", metrics)
    shown = ", ".join(map(str, listed[:10])) + (", …" if len(dead) > 10 else "")
    share = len(dead) / stats.d
    if share <= DEAD_ZERO_SHARE and _all_zero(
        stats.moments.mean[dead], rms_coordinate, stats.d, threshold
    ):
        return Finding(
            Status.PASS,
            smallest,
            f"{_plural(len(dead), 'dimension')} of {stats.d} {'is' if len(dead) == 1 else 'are'} "
            f"always zero: {shown}; no similarity changes, dropping "
            f"{'it' if len(dead) == 1 else 'them'} saves {share:.1%} of the index",
            metrics,
        )
    return Finding(
        Status.WARN,
        smallest,
        f"{_plural(len(dead), 'dimension')} of {stats.d} {'is' if len(dead) == 1 else 'are'} "
        f"dead (constant): {shown}",
        metrics,
        recommendation=Advice(
            f"Drop dead {'dimension' if len(dead) == 1 else 'dimensions'} {shown}",
            (Action.DEAD_DIMENSIONS,),
            specificity=1,
        ),
    )


#: EA005 fails above this share (it warns above its threshold).
NEAR_DUPLICATE_FAIL = 0.10


@register(
    "EA005",
    measures=(
        "share of rows whose nearest other row has cosine ≥ 0.99 (`--near-duplicate-cosine`), exact"
        " copies left to EA003; standard error, example pairs"
    ),
    rule="warn > 1%, fail > 10%",
    corpus_queries=True,
    summary="Rows whose nearest other row is almost the same direction (cosine ≥ 0.99).",
    what=(
        "For each query of the sample, the cosine of its nearest other row (exact search, the "
        "query's own row left out); with --query-file, for as many corpus rows drawn at random "
        "(the near-duplicates of the corpus, not of the queries). The value is the share of "
        "them whose nearest row has cosine ≥ near-duplicate-cosine (default 0.99; "
        "--near-duplicate-cosine or the config; a cosine at the cutoff counts, up to the float32 "
        "rounding of the scores), leaving out bit-identical copies (EA003 counts those; a copy "
        "that differs in its last bits is a near-duplicate). It estimates the share of "
        "such rows in the whole corpus; metrics.standard_error is the error of that estimate "
        "over the queries (a mean of 0/1 values: sqrt(p(1 − p) / queries)). metrics.examples "
        "lists the closest pairs (ids when the input has an id column)."
    ),
    why=(
        "Near-duplicates (the same passage chunked twice, boilerplate, templated items, a "
        "document and its lightly edited copy) fill a top-k with copies of one result: users "
        "see 'top-k is full of copies', and retrieval-augmented generation spends its context "
        "on one fact. They also pile up in one spot of an HNSW graph."
    ),
    fix=(
        "Deduplicate before indexing (MinHash or the embedding itself: cluster rows whose "
        "cosine passes the threshold and keep one), or diversify results at query time "
        "(maximal marginal relevance)."
    ),
    reference=(
        "Broder (1997), 'On the resemblance and containment of documents'; Carbonell & "
        "Goldstein (1998), 'The use of MMR, diversity-based reranking for reordering documents "
        "and producing summaries', SIGIR"
    ),
    threshold=0.01,
    threshold_rationale=(
        f"Warn above 1% of rows, fail above {NEAR_DUPLICATE_FAIL:.0%}: at 1% a top-10 list "
        "shows a copy for about one query in ten; at 10% copies are the rule. Generated "
        "encoder-like corpora without planted copies have none at cosine 0.99."
    ),
    **ON_QUERY_LISTS,
)
@on_corpus_hygiene
def near_duplicates(
    data: AuditData, hygiene: QueryHygiene, queries: Ints, threshold: float
) -> Finding:
    cutoff = data.params.near_duplicate_cosine
    # The nearest row that is not a bit-identical copy (those are EA003's); a cosine at the
    # cutoff counts, up to the float32 rounding of the scores.
    nearest = hygiene.near_cosine[queries]
    near = nearest >= cutoff - hygiene.tie_tolerance
    share, error = query_share(near)
    order = queries[near][np.argsort(-nearest[near], kind="stable")]
    examples = [
        {
            "row": hygiene.query_name(int(q)),
            "nearest": hygiene.row_name(int(hygiene.near_row[q])),
            "cosine": float(hygiene.near_cosine[q]),
        }
        for q in order[:5]
    ]
    metrics: dict[str, Any] = {
        "share": share,
        "standard_error": error,
        "upper_95": 3 / len(queries) if share == 0 else None,
        "near_duplicate_cosine": cutoff,
        "queries": len(queries),
        "near": int(near.sum()),
        "exact_copies": int(hygiene.exact_copy[queries].sum()),
        "examples": examples,
    }
    message = (
        f"{share_text(share, error, len(queries))} have a near-duplicate at cosine ≥ {cutoff:g}"
    )
    if examples:
        first = examples[0]
        message += f" (e.g. {first['row']} and {first['nearest']}: {first['cosine']:.4f})"
    if share > max(threshold, NEAR_DUPLICATE_FAIL):
        return Finding(
            Status.FAIL,
            share,
            f"{message}: top-k lists fill with copies",
            metrics,
            recommendation=Advice(
                "Deduplicate near-identical rows before indexing (or diversify results with MMR)",
                (Action.NEAR_DUPLICATES,),
                specificity=1,
            ),
        )
    return warned_if(
        share > threshold,
        share,
        message,
        metrics,
        Advice("Deduplicate near-identical rows before indexing", (Action.NEAR_DUPLICATES,)),
    )
