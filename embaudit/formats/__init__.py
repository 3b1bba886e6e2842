"""Output formats, by the name users pass to ``--format``."""

from __future__ import annotations

from embaudit.formats.base import Format
from embaudit.formats.json import JsonFormat
from embaudit.formats.table import TableFormat

FORMATS: dict[str, Format] = {fmt.name: fmt for fmt in (TableFormat(), JsonFormat())}

__all__ = ["FORMATS", "Format"]
