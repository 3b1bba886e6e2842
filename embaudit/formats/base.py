"""The interface every output format implements (one module per format)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from embaudit.errors import UsageError
from embaudit.model import CheckResult
from embaudit.reports import AnyReport, ProjectReport


@dataclass(frozen=True)
class Attachment:
    """Text a format also appends to a file (e.g. GitHub's step summary)."""

    path: Path
    text: str


class Format(ABC):
    """Renders a report to text. Formats compute nothing: the report holds every number."""

    #: The name users pass to ``--format``.
    name: str
    #: Whether the output is meant for people (colour and width follow the terminal).
    human: bool = False
    #: Whether the format renders a project: every export of the configuration in one document.
    projects: bool = False

    @abstractmethod
    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        """Return the whole document, ending with a newline."""

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        """Every export's report in one document (formats with ``projects``)."""
        raise UsageError(f"--format {self.name} renders one export: give a FILE")

    def document(
        self, report: AnyReport | ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        """:meth:`render` or :meth:`render_project`, as the report is one export or a project."""
        if isinstance(report, ProjectReport):
            return self.render_project(report, color=color, width=width)
        return self.render(report, color=color, width=width)

    def require(self) -> None:  # noqa: B027 - optional hook, a no-op for most formats
        """Raise a UsageError when the format cannot work here (a missing optional extra)."""

    def attachments(
        self, report: AnyReport | ProjectReport, environ: Mapping[str, str]
    ) -> list[Attachment]:
        """Files to append to besides the main output (none by default)."""
        return []


def label(check: CheckResult) -> str:
    """'EA301 gauge-sensitivity', or just the name for rows without a code."""
    return f"{check.code} {check.name}" if check.code else check.name
