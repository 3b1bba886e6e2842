"""Output formats, by the name users pass to ``--format``."""

from __future__ import annotations

from embaudit.formats.base import Attachment, Format
from embaudit.formats.github import GithubFormat
from embaudit.formats.html import HtmlFormat
from embaudit.formats.json import JsonFormat
from embaudit.formats.junit import JunitFormat
from embaudit.formats.markdown import MarkdownFormat
from embaudit.formats.table import TableFormat
from embaudit.reports import RENDERERS

FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        TableFormat(),
        JsonFormat(),
        MarkdownFormat(),
        JunitFormat(),
        GithubFormat(),
        HtmlFormat(),
    )
}

RENDERERS.update(FORMATS)

__all__ = ["FORMATS", "Attachment", "Format"]
