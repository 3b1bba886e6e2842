"""Progress of long passes: a Rich progress bar on stderr, with rows per second.

A pass shows its bar only once it has run for a second, so quick runs print nothing; the bar is
off with ``--quiet`` and whenever stderr is not a terminal (CI logs, pipes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: Called with a pass's description and its total rows; returns the callback that advances it.
PassReporter = Callable[[str, int], Callable[[int], None]]

#: Seconds a pass runs before its bar appears.
SHOW_AFTER = 1.0


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="cyan")


@contextmanager
def pass_progress(enabled: bool) -> Iterator[PassReporter | None]:
    """Yield a reporter when progress should show (``enabled`` and stderr is a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    def start(description: str, total: int) -> Callable[[int], None]:
        task = progress.add_task(description, total=total, visible=False)
        began = time.monotonic()

        def advance(rows: int) -> None:
            visible = time.monotonic() - began >= SHOW_AFTER
            progress.update(task, advance=rows, visible=visible)

        return advance

    with progress:
        yield start
