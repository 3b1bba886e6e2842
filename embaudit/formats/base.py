"""The interface every output format implements (one module per format)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from embaudit.model import Report


class Format(ABC):
    """Renders a report to text. Formats compute nothing: the report holds every number."""

    #: The name users pass to ``--format``.
    name: str
    #: Whether the output is meant for people (colour and width follow the terminal).
    human: bool = False

    @abstractmethod
    def render(self, report: Report, *, color: bool = False, width: int = 100) -> str:
        """Return the whole document, ending with a newline."""
