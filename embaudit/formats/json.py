"""``--format json``: the output contract (docs/output.md, docs/science.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from embaudit.formats.base import Format
from embaudit.reports import AnyReport, ProjectReport


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class JsonFormat(Format):
    name = "json"
    projects = True

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False) + "\n"

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        return json.dumps(_finite(project.to_dict()), indent=2, allow_nan=False) + "\n"
