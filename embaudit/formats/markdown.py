"""``--format markdown``: a table of codes, statuses and values fit for a PR comment, and the
same details as the table format (overlap by k, per-item spread, gauges, balance, advice)."""

from __future__ import annotations

from embaudit.formats.base import Format
from embaudit.formats.details import Block, Bullets, Table, details
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport, CheckReport, ProjectReport

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
    projects = True

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

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        """A table of the exports (verdict, counts, gate), then each export's report."""
        summary = project.summary
        failed = summary["failed"]
        outcome = "**failed**" if failed else "**passed**"
        lines = [f"## embaudit check: {outcome} — {summary['exports']} exports", ""]
        lines += _project_rows(project)
        sections = [self.render(report) for report in project.reports]
        return "\n".join(lines) + "\n\n" + "\n".join(sections)


def _project_rows(project: ProjectReport) -> list[str]:
    """One row per export: its path, verdict, fail and warn counts, and its gate."""
    rows = []
    for report in project.reports:
        summary = report.summary
        gate = f"failed (--fail-on {report.fail_on.value})" if report.failed() else "passed"
        rows.append(
            [
                f"`{report.subject}`",
                report.verdict.level.value,
                str(summary["fail"]),
                str(summary["warn"]),
                gate,
            ]
        )
    return _table(["Export", "Verdict", "Fail", "Warn", "Gate"], rows)[1:]
