"""Index checks: EA701 ann-recall (what the index returns against the exact neighbours under its
own metric) and EA702 index-vs-objective (against the neighbours the objective wants)."""

from __future__ import annotations

from typing import Any

from embaudit.checks.base import AuditData, register
from embaudit.checks.common import (
    ON_QUERY_LISTS,
    OVERLAP_ERROR,
    SKIP,
    overlap_summary,
    query_population,
    skipped_without,
)
from embaudit.index import IndexMeasurement, IndexMetric, SweepPoint
from embaudit.index.live_report import LiveReport
from embaudit.model import Action, Advice, Finding, Level, Status, TrainedWith

#: The index metric that ranks like each exact metric of an objective.
_METRIC_FOR = {"cosine": IndexMetric.COSINE, "l2": IndexMetric.L2, "dot": IndexMetric.IP}


_OBJECTIVE_NAME = {"cosine": "cosine", "l2": "L2", "dot": "inner-product"}


#: Training rows per inverted list below which faiss's k-means warns.
FAISS_ROWS_PER_LIST = 39


def _index_name(index: IndexMeasurement) -> str:
    """'HNSW32 (ip)', and where it was built on a sample, how large."""
    built = f", built on a sample of {index.rows:,} rows" if index.sampled else ""
    return f"{index.spec} ({index.metric}{built})"


def _common(index: IndexMeasurement) -> dict[str, Any]:
    return {
        "index": index.spec,
        "metric": index.metric.value,
        "rows": index.rows,
        "sample": index.sampled,
        "trained_on": index.trained_on,
        "lists": index.lists,
        "k": index.k,
        "ms_per_query": index.ms_per_query,
        "default": None
        if index.knob is None
        else {"param": index.knob, "value": index.default_setting, "from": index.defaults_from},
    }


def _at_defaults(index: IndexMeasurement) -> str:
    """'at faiss's defaults', or the deployed default it was searched at."""
    if index.defaults_from == "faiss's default" or index.knob is None:
        return "at faiss's defaults"
    if index.default_setting is None:
        return f"at {index.defaults_from}"
    return f"at {index.knob} = {index.default_setting} ({index.defaults_from})"


def _smallest(sweep: list[SweepPoint], reaches: float, key: str) -> dict[str, Any] | None:
    for point in sweep:
        if getattr(point, key) >= reaches:
            return {"param": point.param, "value": point.value}
    return None


def _setting(setting: dict[str, Any] | None) -> str:
    return "" if setting is None else f"{setting['param']} = {setting['value']}"


def _index(data: AuditData) -> tuple[IndexMeasurement] | None:
    neighbors = data.neighbors
    if neighbors is None or neighbors.k == 0 or neighbors.index is None:
        return None
    return (neighbors.index,)


#: A check on the index measured (``--index``): ``measure(data, index, threshold)``.
_on_index = skipped_without(_index, SKIP)


@register(
    "EA701",
    measures=(
        "with `--index SPEC`: recall@k of that index against the exact neighbours under its metric;"
        " a sweep of its search knob"
    ),
    rule="warn below 0.9",
    summary="Recall@k of the index you deploy against the exact neighbours under its metric.",
    what=(
        "A pgvector table's own hnsw / ivfflat index is searched live by default (params.index "
        "= live): each query goes to the server as SELECT key FROM table ORDER BY column <op> q "
        "LIMIT k + 1 (the operator of the index's operator class) in the audit's read-only "
        "transaction, at the session's hnsw.ef_search / ivfflat.probes / iterative_scan as the "
        "database sets them; metrics.live names the index, its operator class, parameters and "
        "those settings, metrics.sweep the recall and the server's time per query (p50, p95 "
        "ms, EXPLAIN ANALYZE) at each setting set with SET LOCAL, metrics.recommended the "
        "statements that set the smallest one reaching the threshold and metrics.build the "
        "CREATE INDEX of a stronger index when none does. "
        "With --index SPEC (a faiss index_factory string: HNSW32, IVF4096,Flat, IVF1024,PQ64, "
        "SQ8, HNSW32,SQ8, ...), or with --index rebuild the index stored with the data (a "
        "pgvector "
        "table's hnsw / ivfflat index, a Lance dataset's index: input.index, params.index_from), "
        "builds that index on every clean row of the file (streamed in "
        "chunks; trained first on a seeded sample when it needs training), or on --index-sample "
        "rows, and searches the query sample with it at faiss's default search parameters "
        "(efSearch 16, nprobe 1) — a pgvector index is built with its ef_construction and "
        "searched at the server's hnsw.ef_search / ivfflat.probes (pgvector's defaults: 40, "
        "1) — the query's own row left out as in the exact lists. The value "
        "is the mean overlap@k of what it returns with the exact neighbours under the index's "
        "metric (--index-metric, else the stored index's operator class or the ann-benchmarks "
        "distance; cosine = normalize, then inner product), tie-aware: a "
        "duplicate of a true neighbour is not a miss. metrics.sweep lists recall and time per "
        "query along the search knob (efSearch for HNSW, nprobe for inverted files), "
        "metrics.recommended the smallest setting that reaches the threshold. "
        + OVERLAP_ERROR
        + " The index is built once: measured again, the larger query sample searches it."
    ),
    why=(
        "An approximate index trades neighbours for speed, and quantizers (SQ8, PQ, fp16) lose "
        "some for memory: brute force finds them, the index does not. faiss's defaults are "
        "chosen for speed, not for your data; recall at the defaults is often far below what "
        "users assume, and what it takes to recover it depends on the corpus."
    ),
    fix=(
        "Search with the recommended setting (metrics.recommended: efSearch for HNSW, nprobe "
        "for IVF; for a pgvector index, the SET / ALTER DATABASE statements). When no setting "
        "reaches the threshold, the index itself loses the "
        "neighbours: use more HNSW links (HNSW64), more inverted lists or a finer quantizer "
        "(SQ8 for PQ, Flat for SQ8), or re-rank with the exact vectors (a ',RFlat' refine)."
    ),
    reference="Aumüller, Bernhardsson & Faithfull (2020), 'ANN-Benchmarks: A Benchmarking Tool "
    "for Approximate Nearest Neighbor Algorithms', Information Systems 87; Douze et al. (2024), "
    "'The Faiss library', arXiv:2401.08281",
    threshold=0.9,
    threshold_rationale=(
        "0.9: nine neighbours in ten, the recall ANN benchmarks and vector databases quote as "
        "the usual operating point."
    ),
    option="index",
    **ON_QUERY_LISTS,
)
@_on_index
def ann_recall(data: AuditData, index: IndexMeasurement, threshold: float) -> Finding:
    summary = overlap_summary(index.recall, query_population(data))
    value = summary.pop("overlap_at_k")
    if index.live is not None:
        return _live_recall(index, index.live, value, summary, threshold)
    recommended = _smallest(index.sweep, threshold, "recall")
    metrics = (
        {"recall_at_k": value}
        | summary
        | _common(index)
        | {
            "sweep": [
                {
                    "param": point.param,
                    "value": point.value,
                    "recall": point.recall,
                    "ms_per_query": point.ms_per_query,
                }
                for point in index.sweep
            ],
            "recommended": recommended,
        }
    )
    at = f" at {_setting(metrics['default'])}" if index.knob else ""
    message = f"{_index_name(index)} recall@{index.k} {value:.2f}{at} ({index.defaults_from})"
    if index.lists and index.trained_on < FAISS_ROWS_PER_LIST * index.lists:
        message += (
            f"; trained on {index.trained_on:,} rows for {index.lists:,} lists (faiss asks for "
            f"{FAISS_ROWS_PER_LIST} per list)"
        )
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    if recommended is not None:
        action = Advice(
            f"Search {index.spec} with {_setting(recommended)} (recall {threshold:g} or more)",
            (Action.SEARCH,),
            specificity=1,
        )
        message += f"; {_setting(recommended)} reaches {threshold:g}"
    elif index.knob is not None:
        last = index.sweep[-1]
        action = Advice(
            f"{index.spec} loses neighbours that no {index.knob} up to {last.value} recovers: "
            "use more links or lists, a finer quantizer, or re-rank with the exact vectors",
            (Action.EXACT_INDEX,),
            specificity=1,
        )
        message += f"; {last.recall:.2f} at {last.param} = {last.value}, below {threshold:g}"
    else:
        action = Advice(
            f"{index.spec} loses neighbours: use a finer quantizer or re-rank with the exact "
            "vectors",
            (Action.EXACT_INDEX,),
            specificity=1,
        )
    return Finding(Status.WARN, value, message, metrics, recommendation=action)


def _live_metrics(index: IndexMeasurement, live: LiveReport, key: str) -> dict[str, Any]:
    """What EA701 / EA702 report of a stored index searched live, the sweep by ``key``."""
    return {
        "index": live.name,
        "metric": index.metric.value,
        "rows": index.rows,
        "k": index.k,
        "live": live.info,
        "default": {
            "param": index.knob,
            "value": index.default_setting,
            "from": live.settings_from,
        },
        "p50_ms": live.default.p50_ms,
        "p95_ms": live.default.p95_ms,
        "rows_returned": live.default.returned,
        "index_used": live.index_used,
        "sweep": [
            {
                "param": point.param,
                "value": point.value,
                key: getattr(point, "objective_overlap" if key == "overlap_at_k" else key),
                "p50_ms": point.p50_ms,
                "p95_ms": point.p95_ms,
                "rows_returned": point.returned,
            }
            for point in index.sweep
        ],
    }


def _live_statements(live: LiveReport, setting: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if setting is None else setting | {"statements": live.statements[setting["value"]]}


def _live_message(index: IndexMeasurement, live: LiveReport, value: float) -> str:
    message = (
        f"{live.title} probed live{live.filtered}: recall@{index.k} {value:.2f} "
        f"{_at_defaults(index)}, p50 {live.default.p50_ms or 0:.2f} ms per query {live.timed}"
    )
    if live.index_used < live.queries:
        message += (
            f"; the planner searched the index for {live.index_used} of {live.queries} "
            "queries (the others scanned the rows)"
        )
    return message


def _live_recall(
    index: IndexMeasurement,
    live: LiveReport,
    value: float,
    summary: dict[str, Any],
    threshold: float,
) -> Finding:
    """EA701 of a stored index searched live: advice in the store's own statements."""
    recommended = _smallest(index.sweep, threshold, "recall")
    metrics = (
        {"recall_at_k": value}
        | summary
        | _live_metrics(index, live, "recall")
        | {
            "recommended": _live_statements(live, recommended),
            "build": None if recommended is not None else live.build,
        }
    )
    message = _live_message(index, live, value)
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    if recommended is not None:
        text = f"{live.set_action(recommended['value'])} (recall {threshold:g} or more)"
        action = Advice(text, (Action.SEARCH,), specificity=1)
        message += f"; {_setting(recommended)} reaches {threshold:g}"
    else:
        last = index.sweep[-1] if index.sweep else live.default
        message += f"; {last.recall:.2f} at {last.param} = {last.value}, below {threshold:g}"
        text = (
            f"No {index.knob} up to {last.value} reaches {threshold:g}: build a stronger "
            f"index, {live.build}"
        )
        action = Advice(text, (Action.EXACT_INDEX,), specificity=1)
    return Finding(Status.WARN, value, message, metrics, recommendation=action)


def _live_cause(index: IndexMeasurement, live: LiveReport, threshold: float) -> tuple[str, Advice]:
    """Why a stored index searched live misses the objective's neighbours, and the statements
    that fix it."""
    agreement = float(index.exact_agreement.mean())
    wanted = _METRIC_FOR[index.objective]
    recall = float(index.recall.mean())
    better = _smallest(index.sweep, threshold, "objective_overlap")
    if agreement < threshold and wanted != index.metric:
        ranking = (
            f"even exact {index.metric} search agrees with {_OBJECTIVE_NAME[index.objective]} "
            f"on only {agreement:.2f}"
        )
        return ranking, _reindex(live, wanted)
    if recall < threshold or better is not None:
        missed = f"the index misses neighbours (recall {recall:.2f})"
        if better is not None:
            return missed, Advice(live.set_action(better["value"]), (Action.SEARCH,), 2)
        return missed, Advice(f"Build a stronger index: {live.build}", (Action.EXACT_INDEX,), 2)
    return (
        f"metric and approximation together (exact agreement {agreement:.2f}, recall {recall:.2f})",
        _reindex(live, wanted),
    )


def _reindex(live: LiveReport, wanted: IndexMetric) -> Advice:
    """Index by the metric the objective ranks with, as the store builds it."""
    return Advice(
        f"Index by {wanted}: {live.build_for[wanted.value]}", (Action.METRIC, Action.NORMALIZE), 2
    )


def _cause(index: IndexMeasurement, threshold: float) -> tuple[str, Advice]:
    """Why the index misses the objective's neighbours, and what to change."""
    agreement = float(index.exact_agreement.mean())
    wanted = _METRIC_FOR[index.objective]
    recall = float(index.recall.mean())
    if agreement < threshold and wanted != index.metric:
        ranking = (
            f"even exact {index.metric} search agrees with {_OBJECTIVE_NAME[index.objective]} "
            f"on only {agreement:.2f}"
        )
        if wanted == IndexMetric.COSINE:
            text = (
                f"Normalize the vectors before indexing with {index.metric} (or build "
                f"{index.spec} with --index-metric cosine)"
            )
            actions: tuple[Action, ...] = (Action.NORMALIZE,)
        else:
            text = f"Index with --index-metric {wanted}, the metric the model was trained for"
            actions = (Action.METRIC,)
        if recall < threshold:
            better = _smallest(index.sweep, threshold, "recall")
            then = f"search with {_setting(better)}" if better else "use a more exact index"
            text += f", then {then} (recall {recall:.2f} at the defaults)"
            actions += (Action.SEARCH,) if better else (Action.EXACT_INDEX,)
        return ranking, Advice(text, actions, specificity=2)
    if recall < threshold:
        better = _smallest(index.sweep, threshold, "objective_overlap")
        missed = f"the index misses neighbours (recall {recall:.2f})"
        if better is not None:
            wants = f"{_OBJECTIVE_NAME[index.objective]} neighbours"
            return missed, Advice(
                f"Search {index.spec} with {_setting(better)} ({threshold:g} or more of the "
                f"exact {wants})",
                (Action.SEARCH,),
                specificity=2,
            )
        return missed, Advice(
            f"Use a more exact index than {index.spec} (more links or lists, a finer quantizer, "
            "a ',RFlat' re-rank)",
            (Action.EXACT_INDEX,),
        )
    return (
        f"metric and approximation together (exact agreement {agreement:.2f}, recall {recall:.2f})",
        Advice(
            f"Index with --index-metric {wanted} and search {index.spec} with a higher "
            f"{index.knob or 'setting'}",
            (Action.METRIC, Action.SEARCH),
            specificity=1,
        ),
    )


@register(
    "EA702",
    measures=(
        "with `--index SPEC`: of the neighbours the declared objective wants, the share the index "
        "returns"
    ),
    rule="warn below 0.9",
    summary="Of the neighbours the objective wants, how many the index you deploy returns.",
    what=(
        "With --index SPEC (or the index stored with the data), the mean overlap@k between "
        "what that index returns (as EA701: built on the file, searched at faiss's defaults) "
        "and the exact neighbours under the metric of the declared objective (--trained-with: "
        "cosine; dot: inner product; l2; unknown: cosine). It measures metric mismatch and "
        "approximation in one number: an inner-product index over unnormalized vectors of a "
        "cosine model returns about (the exact inner-product/cosine agreement) × (its recall). "
        "metrics.exact_agreement is the first "
        "factor, metrics.recall the second, metrics.sweep the overlap along the search knob. "
        + OVERLAP_ERROR
    ),
    why=(
        "This is the number a user cares about: the neighbours the model was trained to put "
        "near, returned by the index that serves them. Vector stores default to inner product "
        "or L2 on whatever vectors they are given, and approximate search at default settings "
        "loses more; each alone can look harmless."
    ),
    fix=(
        "Normalize the vectors before indexing when the objective is cosine (or build the "
        "index with the cosine metric); index with the metric the model was trained for "
        "(inner product for a dot-product model); raise efSearch / nprobe to the setting in "
        "metrics.recommended."
    ),
    reference="Steck, Ekanadham & Kallus (2024), arXiv:2403.05440 (the metric must match the "
    "objective); Aumüller et al. (2020), ANN-Benchmarks",
    threshold=0.9,
    threshold_rationale="As EA701: nine of the ten neighbours the objective wants.",
    option="index",
    **ON_QUERY_LISTS,
)
@_on_index
def index_vs_objective(data: AuditData, index: IndexMeasurement, threshold: float) -> Finding:
    summary = overlap_summary(index.objective_overlap, query_population(data))
    value = summary["overlap_at_k"]
    live = index.live
    metrics = (
        summary
        | (_common(index) if live is None else _live_metrics(index, live, "overlap_at_k"))
        | {
            "objective": index.objective,
            "exact_agreement": float(index.exact_agreement.mean()),
            "recall": float(index.recall.mean()),
            "sweep": [
                {
                    "param": point.param,
                    "value": point.value,
                    "overlap_at_k": point.objective_overlap,
                    "ms_per_query": point.ms_per_query,
                }
                for point in index.sweep
            ],
            "recommended": _smallest(index.sweep, threshold, "objective_overlap"),
        }
    )
    if live is not None:
        metrics["sweep"] = _live_metrics(index, live, "overlap_at_k")["sweep"]
        metrics["recommended"] = _live_statements(live, metrics["recommended"])
    wanted = _OBJECTIVE_NAME[index.objective]
    name = _index_name(index) if live is None else f"{live.title}, probed live{live.filtered},"
    message = (
        f"{name} returns {value:.2f} of the {index.k} exact {wanted} neighbours "
        f"{_at_defaults(index)}"
    )
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    if live is None:
        cause, action = _cause(index, threshold)
    else:
        cause, action = _live_cause(index, live, threshold)
    message = f"{message}: {cause}"
    if data.params.trained_with == TrainedWith.UNKNOWN:
        return Finding(
            Status.WARN,
            value,
            f"{message} (if the model was trained for cosine)",
            metrics,
            impact=Level.CAUTION,
            recommendation=action,
        )
    return Finding(
        Status.FAIL, value, message, metrics, impact=Level.UNTRUSTWORTHY, recommendation=action
    )


def _filtered(data: AuditData) -> tuple[IndexMeasurement, LiveReport] | None:
    found = _index(data)
    if found is None or found[0].live is None or found[0].live.where is None:
        return None
    return found[0], found[0].live


@register(
    "EA705",
    measures=(
        "with `--where`: recall@k of the table's index, searched live under the filter, "
        "against the exact neighbours among the rows it selects"
    ),
    rule="warn below 0.9",
    summary="Recall@k of the deployed index under a filter, and the rows it returns per query.",
    what=(
        "With --where PREDICATE on a pgvector table whose index is searched live, the audit "
        "reads only the rows the predicate selects, and every search of the index carries the "
        "filter: SELECT key FROM table WHERE (PREDICATE) ORDER BY column <op> q LIMIT k + 1, "
        "in the audit's read-only transaction, at the server's settings. The value is the mean "
        "overlap@k of what the index returns with the exact neighbours among the selected "
        "rows (tie-aware, the query's own row left out). metrics.rows_returned is the mean "
        "number of rows a query got and metrics.short the share of queries that got fewer "
        "than k; metrics.iterative the recall, rows and server time with each iterative-scan "
        "mode pgvector offers (0.8 and later: hnsw.iterative_scan = relaxed_order, "
        "strict_order), measured with SET LOCAL; metrics.partial_index the partial index that "
        "would serve the filter (not measured: the audit writes nothing). " + OVERLAP_ERROR
    ),
    why=(
        "An HNSW search finds hnsw.ef_search candidates first and applies the filter after: "
        "under a filter that keeps 10% of the rows, about one candidate in ten survives, and a "
        "query asking for 10 rows gets one or two. Recall without a filter says nothing of "
        "this, and it is the question most users of a vector database ask."
    ),
    fix=(
        "Turn on iterative scans (SET hnsw.iterative_scan = relaxed_order; pgvector 0.8 and "
        "later), raise hnsw.ef_search, or build a partial index for a filter used often "
        "(CREATE INDEX ... WHERE PREDICATE); metrics.recommendation says which the audit "
        "measured to reach the threshold."
    ),
    reference="pgvector README, 'Filtering' and 'Iterative Index Scans' (pgvector 0.8.0)",
    threshold=0.9,
    threshold_rationale="As EA701: nine of the ten neighbours under the filter.",
    option="where",
    **ON_QUERY_LISTS,
)
@skipped_without(_filtered, "needs --where on a table whose index is searched live")
def filtered_recall(
    data: AuditData, index: IndexMeasurement, live: LiveReport, threshold: float
) -> Finding:
    summary = overlap_summary(index.recall, query_population(data))
    value = summary.pop("overlap_at_k")
    default = live.default
    iterative = [
        {
            "mode": point.mode,
            "recall": point.recall,
            "rows_returned": point.returned,
            "short": point.short,
            "p50_ms": point.p50_ms,
            "p95_ms": point.p95_ms,
            "statement": statement,
        }
        for point, statement in live.iterative
    ]
    iterative_sweep = [
        {
            "mode": point.mode,
            "param": point.param,
            "value": point.value,
            "recall": point.recall,
            "rows_returned": point.returned,
            "p50_ms": point.p50_ms,
            "p95_ms": point.p95_ms,
        }
        for point in live.iterative_sweep
    ]
    metrics = (
        {"recall_at_k": value}
        | summary
        | {
            "where": live.where,
            "index": live.name,
            "k": index.k,
            "rows": index.rows,
            "rows_returned": default.returned,
            "short": default.short,
            "p50_ms": default.p50_ms,
            "p95_ms": default.p95_ms,
            "iterative": iterative,
            "iterative_sweep": iterative_sweep,
            "partial_index": live.partial,
        }
    )
    message = (
        f"{live.title} under WHERE {live.where}: recall@{index.k} {value:.2f} against the "
        f"exact neighbours among the {index.rows:,} rows it selects; "
        f"{default.returned or 0:.1f} rows per query, fewer than {index.k} for "
        f"{default.short or 0:.0%} of queries"
    )
    for point, _ in live.iterative:
        message += (
            f"; with iterative_scan = {point.mode}: recall {point.recall:.2f}, "
            f"{point.returned or 0:.1f} rows, p50 {point.p50_ms or 0:.2f} ms"
        )
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    metrics["recommendation"] = action = _filtered_action(index, live, threshold)
    advice = Advice(action, (Action.FILTERED_SEARCH,), specificity=1)
    return Finding(Status.WARN, value, message, metrics, recommendation=advice)


def _filtered_action(index: IndexMeasurement, live: LiveReport, threshold: float) -> str:
    """The cheapest change measured to reach ``threshold`` under the filter: an iterative scan
    at the server's setting, then with a higher setting, then a higher setting alone; else a
    partial index (not measured)."""
    fixed = [(point, statement) for point, statement in live.iterative if point.recall >= threshold]
    turn_on = {point.mode: statement for point, statement in live.iterative}
    both = next((point for point in live.iterative_sweep if point.recall >= threshold), None)
    setting = _smallest(index.sweep, threshold, "recall")
    if fixed:
        return f"Turn on iterative scans: {fixed[0][1]} (recall {fixed[0][0].recall:.2f})"
    if both is not None:
        return (
            f"Turn on iterative scans and raise {both.param}: {turn_on[both.mode]} "
            f"{live.statements[both.value][0]} (recall {both.recall:.2f}, p50 "
            f"{both.p50_ms or 0:.2f} ms on the server)"
        )
    if setting is not None:
        return f"{live.set_action(setting['value'])} (recall {threshold:g} or more)"
    return (
        "Nothing measured reaches the threshold under this filter: build a partial index "
        f"for it (not measured), {live.partial}"
    )
