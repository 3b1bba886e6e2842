"""``--format markdown``: a table of codes, statuses and values fit for a PR comment, and the
same details as the table format (overlap by k, per-item spread, gauges, balance, advice)."""

from __future__ import annotations

from embaudit.formats.base import Format
from embaudit.formats.details import Block, Bullets, Table, details
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport, CheckReport

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


def _block(block: Block) -> list[str]:
    if isinstance(block, Table):
        return ["", f"**{block.title}**", *_table(block.header, block.rows)]
    if isinstance(block, Bullets):
        return ["", f"**{block.title}**", "", *(f"- {cell(item)}" for item in block.items)]
    title = f"**{block.title}**: " if block.title else ""
    return ["", f"{title}{block.text}"]


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
        queries = report.input.get("queries") if isinstance(report, CheckReport) else None
        if queries is not None:
            where = cell(str(queries.get("path") or "(array)"))
            lines += [f"Queries: {queries['drawn']:,} rows of `{where}`, searched against it.", ""]
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
            for block in details(report):
                lines += _block(block)
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
