"""``--format markdown``: a table of codes, statuses and values fit for a PR comment, and the
same details as the table format (overlap by k, per-item spread, gauges, balance, advice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from embaudit.formats.base import Format
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport, CheckReport, FilesReport, GaugeReport, MetricsReport

ICON = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.SKIP: "⏭️"}
#: A row that only measures (no gate set): no pass mark.
MEASURED = "·"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return ["", *lines]


def _by_k(title: str, curves: dict[str, dict[int, float]]) -> list[str]:
    ks = list(next(iter(curves.values()))) if curves else []
    rows = [[name, *(f"{curve[j]:.3f}" for j in ks)] for name, curve in curves.items()]
    return ["", f"**{title}**", *_table(["", *(f"@{j}" for j in ks)], rows)]


def _metrics_details(report: MetricsReport) -> list[str]:
    pairs = report.comparison.pairs
    lines = _by_k("Overlap by k", {f"{p.a} vs {p.b}": p.by_k for p in pairs})
    lines += _table(
        ["pair", "top-1 differs"], [[f"{p.a} vs {p.b}", f"{p.top1_differs:.1%}"] for p in pairs]
    )
    return lines


def _files_details(report: FilesReport) -> list[str]:
    comparison = report.comparison
    lines = [
        "",
        f"overlap@{report.k} {comparison.overlap_at_k:.3f} over {comparison.queries:,} of "
        f"{comparison.n_matched:,} items matched by {comparison.matched_by}",
        *_by_k("Overlap by k", {comparison.metric: comparison.by_k}),
    ]
    quantiles = comparison.quantiles()
    lines += [
        "",
        "**Per-item overlap**",
        *_table(list(quantiles), [[f"{v:.2f}" for v in quantiles.values()]]),
    ]
    changed = [
        [str(item["id"]), f"{item['overlap_at_k']:.2f}"] for item in comparison.changed_most()
    ]
    lines += ["", "**Changed most**", *_table(["id", f"overlap@{report.k}"], changed)]
    return lines


def _gauge_details(report: GaugeReport) -> list[str]:
    lines: list[str] = []
    for side in report.sides:
        curve = {p["condition"]: p["overlap_at_k"] for p in side.overlap_by_condition}
        rows = [[f"{condition:g}", f"{overlap:.3f}"] for condition, overlap in curve.items()]
        cosines = side.cosine_range
        lines += [
            "",
            f"**{side.side}: overlap@{side.k} under random gauges**",
            *_table(["condition ≤", f"overlap@{side.k}"], rows),
            "",
            f"Worst gauge found (condition {side.worst_condition:.3g}, {side.evaluations} "
            f"evaluations): overlap@{side.k} {side.worst_overlap_at_k:.3f}. Cosine of "
            f"{side.side[:-1]} pairs reached {cosines['min']:.3f} … {cosines['max']:.3f} "
            f"(a pair's range {cosines['mean_width']:.3f} wide on average).",
        ]
    balance = report.balance
    condition = "undefined" if balance.condition is None else f"{balance.condition:.4g}"
    lines += [
        "",
        f"Predictions under the worst gauge: max relative change "
        f"{report.prediction_max_rel_change:.1e}.",
        "",
        f"**Balance of the towers**: condition of the balancing gauge {condition} (balanced ≤ "
        f"{balance.tolerance:g}; column norms over all {balance.rows['items']:,} item and "
        f"{balance.rows['users']:,} user rows).",
        "",
        "**Which similarity**",
        "",
        *(f"- {cell(advice)}" for advice in report.recommendations),
    ]
    return lines


_DETAILS: dict[type, Callable[[Any], list[str]]] = {
    MetricsReport: _metrics_details,
    FilesReport: _files_details,
    GaugeReport: _gauge_details,
}


class MarkdownFormat(Format):
    name = "markdown"

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        lines = []
        if report.verdict:
            outcome = f"**{report.verdict.level.value}**"
        elif not report.gated:
            outcome = "**measured** (no gate: set --min-overlap)"
        else:
            outcome = "**failed**" if report.failed() else "**passed**"
        lines.append(f"### embaudit {report.kind}: {outcome} — `{cell(report.subject)}`")
        lines.append("")
        lines.append("| | Code | Check | Status | Value | Message |")
        lines.append("|---|---|---|---|---:|---|")
        for check in report.checks:
            icon, status = ICON[check.status], check.status.value
            if not report.gated:
                icon, status = MEASURED, "measured"
            lines.append(
                f"| {icon} | {check.code or '–'} | {check.name} | "
                f"{status} | {format_value(check.value)} | {cell(check.message)} |"
            )
        if not isinstance(report, CheckReport):
            lines += _DETAILS[type(report)](report)
        if report.verdict is not None:
            lines += ["", "**Reasons**", ""]
            lines += [f"- {cell(reason)}" for reason in report.verdict.reasons]
            if report.verdict.recommendations:
                lines += ["", "**What to do**", ""]
                lines += [f"- {cell(action)}" for action in report.verdict.recommendations]
        summary = report.summary
        counts = " · ".join(f"{summary[s.value]} {s.value}" for s in Status)
        if not report.gated:
            counts = f"{len(report.checks)} measured, no gate"
        lines += ["", f"<sub>embaudit {report.tool['version']} · {counts}</sub>"]
        return "\n".join(lines) + "\n"
