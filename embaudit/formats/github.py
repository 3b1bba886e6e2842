"""``--format github``: GitHub Actions workflow commands, and a step summary.

Each check at the failing level becomes ``::error``, each other warning ``::warning``, and the
verdict a ``::error`` (when it fails the gate) or ``::notice``. Values and properties are escaped
as the runner requires. When ``$GITHUB_STEP_SUMMARY`` is set, the Markdown report is appended to
it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from embaudit.formats.base import Attachment, Format, label
from embaudit.formats.markdown import MarkdownFormat
from embaudit.model import Status
from embaudit.reports import AnyReport, ProjectReport


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, title: str, message: str) -> str:
    return f"::{kind} title={escape_property(title)}::{escape_data(message)}"


class GithubFormat(Format):
    name = "github"
    projects = True

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        lines = []
        for check in report.checks:
            if report.check_fails(check):
                kind = "error"
            elif check.status == Status.WARN:
                kind = "warning"
            else:
                continue
            lines.append(
                command(kind, f"embaudit {label(check)}", f"{report.subject}: {check.message}")
            )
        if report.verdict is not None:
            verdict = report.verdict
            kind = "error" if report.verdict_fails() else "notice"
            reasons = "; ".join(verdict.reasons)
            lines.append(
                command(
                    kind,
                    f"embaudit verdict: {verdict.level.value}",
                    f"{report.subject}: {reasons}",
                )
            )
        summary = report.summary
        counts = ", ".join(f"{summary[s.value]} {s.value}" for s in Status)
        lines.append(f"embaudit {report.kind} {report.subject}: {counts}")
        return "\n".join(lines) + "\n"

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        """Every export's annotations, then one line for the project."""
        lines = [self.render(report) for report in project.reports]
        summary = project.summary
        failed = summary["failed"]
        outcome = f"gate failed on {', '.join(failed)}" if failed else "gate passed"
        lines.append(f"embaudit check: {summary['exports']} exports; {outcome}\n")
        return "".join(lines)

    def attachments(
        self, report: AnyReport | ProjectReport, environ: Mapping[str, str]
    ) -> list[Attachment]:
        target = environ.get("GITHUB_STEP_SUMMARY")
        if not target:
            return []
        return [Attachment(Path(target), MarkdownFormat().document(report))]
