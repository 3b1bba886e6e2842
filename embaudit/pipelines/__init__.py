"""The pipelines of the commands: source → measurements → checks → verdict → typed report.

``check`` audits one source (and its baseline), ``compare`` compares neighbours (of three metrics
on one file, or of two exports), ``gauge`` audits the gauge freedom of two towers. Each takes
opened sources and validated options (:mod:`embaudit.options`) and returns its report type
(:mod:`embaudit.reports`); :mod:`embaudit.audit` is the front door that opens and validates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embaudit._version import __version__
from embaudit.engines import Engine
from embaudit.progress import PassReporter
from embaudit.sources import EmbeddingSource

TOOL = {"name": "embaudit", "version": __version__}


@dataclass(frozen=True)
class Run:
    """How the passes of one command run: the engine, the chunk size, the progress display."""

    engine: Engine
    chunk_rows: int | None
    progress: PassReporter | None

    def reporting(self, action: str, source: EmbeddingSource) -> Callable[[int], None] | None:
        """The advance callback of one pass over ``source``, if progress is shown."""
        if self.progress is None:
            return None
        name = Path(source.path).name if source.path else "array"
        return self.progress(f"{action} {name}", source.n)

    def stages(self, description: str, total: int) -> Callable[[int], None] | None:
        """The advance callback of work counted in stages rather than rows (the geometry of
        the sample after the pass), if progress is shown: the bar moves on instead of sitting
        at 100%."""
        return None if self.progress is None else self.progress(description, total)
