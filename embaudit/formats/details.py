"""The details of a comparison report (compare-knn, gauge) beyond its rows: overlap by k, the
per-item spread, the items that changed most, the gauge curves, the balance of the towers and
which similarity to use. Built once per report type as blocks that every text format renders,
so markdown and HTML carry the same content as the table format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embaudit.figures import beside
from embaudit.reports import FilesReport, GaugeReport, MetricsReport


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Paragraph:
    text: str
    title: str = ""


@dataclass(frozen=True)
class Bullets:
    title: str
    items: list[str]


Block = Table | Paragraph | Bullets


def _by_k(curves: dict[str, dict[int, float]]) -> Table:
    ks = list(next(iter(curves.values()))) if curves else []
    rows = [[name, *(f"{curve[j]:.3f}" for j in ks)] for name, curve in curves.items()]
    return Table("Overlap by k", ["", *(f"@{j}" for j in ks)], rows)


def _metrics(report: MetricsReport) -> list[Block]:
    pairs = report.comparison.pairs
    return [
        _by_k({f"{p.a} vs {p.b}": p.by_k for p in pairs}),
        Table(
            "Top-1 neighbour",
            ["pair", "top-1 differs"],
            [[f"{p.a} vs {p.b}", f"{p.top1_differs:.1%}"] for p in pairs],
        ),
    ]


def _files(report: FilesReport) -> list[Block]:
    comparison = report.comparison
    quantiles = comparison.quantiles()
    changed = [[str(i["id"]), f"{i['overlap_at_k']:.2f}"] for i in comparison.changed_most()]
    return [
        Paragraph(
            f"overlap@{report.k} {comparison.overlap_at_k:.3f} over {comparison.queries:,} of "
            f"{comparison.n_matched:,} items matched by {comparison.matched_by}"
        ),
        _by_k({comparison.metric: comparison.by_k}),
        Table("Per-item overlap", list(quantiles), [[f"{v:.2f}" for v in quantiles.values()]]),
        Table("Changed most", ["id", f"overlap@{report.k}"], changed)
        if changed
        else Paragraph(
            f"none — all {comparison.queries:,} items compared kept their {report.k} nearest "
            "neighbours.",
            title="Changed most",
        ),
    ]


def _gauge(report: GaugeReport) -> list[Block]:
    blocks: list[Block] = []
    for side in report.sides:
        rows = [
            [f"{p['condition']:g}", f"{p['overlap_at_k']:.3f}"] for p in side.overlap_by_condition
        ]
        cosines = side.cosine_range
        blocks += [
            Table(
                f"{side.side}: overlap@{side.k} under random gauges",
                ["condition ≤", f"overlap@{side.k}"],
                rows,
            ),
            Paragraph(
                f"Worst gauge found (condition {side.worst_condition:.3g}, {side.evaluations} "
                f"evaluations): overlap@{side.k} {side.worst_overlap_at_k:.3f}. Cosine of "
                f"{side.side[:-1]} pairs reached {cosines['min']:.3f} … {cosines['max']:.3f} "
                f"(a pair's range {cosines['mean_width']:.3f} wide on average)."
            ),
        ]
    balance = report.balance
    condition = (
        "undefined"
        if balance.condition is None
        else beside(balance.condition, balance.tolerance, ".4g")
    )
    return [
        *blocks,
        Paragraph(
            "Predictions under the worst gauge: max relative change "
            f"{report.prediction_max_rel_change:.1e}."
        ),
        Paragraph(
            f"condition of the balancing gauge {condition} (balanced ≤ {balance.tolerance:g}; "
            f"column norms over all {balance.rows['items']:,} item and "
            f"{balance.rows['users']:,} user rows).",
            title="Balance of the towers",
        ),
        Bullets("Which similarity", list(report.recommendations)),
    ]


_DETAILS: dict[type, Callable[[Any], list[Block]]] = {
    MetricsReport: _metrics,
    FilesReport: _files,
    GaugeReport: _gauge,
}


def details(report: MetricsReport | FilesReport | GaugeReport) -> list[Block]:
    """The detail blocks of a comparison report, in reading order."""
    return _DETAILS[type(report)](report)
