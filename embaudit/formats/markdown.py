"""``--format markdown``: a table of codes, statuses and values fit for a PR comment."""

from __future__ import annotations

from embaudit.formats.base import Format
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport

ICON = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.SKIP: "⏭️"}


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


class MarkdownFormat(Format):
    name = "markdown"

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        lines = []
        outcome = f"**{report.verdict.level.value}**" if report.verdict else ""
        if not outcome:
            outcome = "**failed**" if report.failed() else "**passed**"
        lines.append(f"### embaudit {report.kind}: {outcome} — `{cell(report.subject)}`")
        lines.append("")
        lines.append("| | Code | Check | Status | Value | Message |")
        lines.append("|---|---|---|---|---:|---|")
        for check in report.checks:
            lines.append(
                f"| {ICON[check.status]} | {check.code or '–'} | {check.name} | "
                f"{check.status.value} | {format_value(check.value)} | {cell(check.message)} |"
            )
        if report.verdict is not None:
            lines += ["", "**Reasons**", ""]
            lines += [f"- {cell(reason)}" for reason in report.verdict.reasons]
            if report.verdict.recommendations:
                lines += ["", "**What to do**", ""]
                lines += [f"- {cell(action)}" for action in report.verdict.recommendations]
        summary = report.summary
        counts = " · ".join(f"{summary[s.value]} {s.value}" for s in Status)
        lines += ["", f"<sub>embaudit {report.tool['version']} · {counts}</sub>"]
        return "\n".join(lines) + "\n"
