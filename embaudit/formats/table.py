"""``--format table``: a Rich table of checks, a norm histogram and a verdict panel."""

from __future__ import annotations

import io
import math
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from embaudit.formats.base import Format
from embaudit.model import Level, Report, Status

STATUS_STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.SKIP: "dim",
}
LEVEL_STYLE = {
    Level.TRUSTWORTHY: "green",
    Level.CAUTION: "yellow",
    Level.UNTRUSTWORTHY: "bold red",
}
_BARS = " ▁▂▃▄▅▆▇█"


def format_value(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def sparkline(counts: list[int]) -> str:
    """One character per bin, its height proportional to the count (any non-zero count shows)."""
    top = max(counts) or 1
    return "".join(
        _BARS[0] if c == 0 else _BARS[max(1, round(c / top * (len(_BARS) - 1)))] for c in counts
    )


def _header(report: Report) -> Text:
    source = report.input
    params = report.params
    text = Text()
    text.append(f"embaudit {report.tool['version']}", style="bold")
    text.append(f"  {source.get('path') or '(array)'}  ")
    text.append(f"{source['n']:,} × {source['d']} {source['dtype']} ({source['format']})")
    text.append(
        f"  k={params['k']} seed={params['seed']} trained-with={params['trained_with']}",
        style="dim",
    )
    excluded = {name: count for name, count in source["excluded_rows"].items() if count}
    if excluded:
        parts = ", ".join(f"{name} {count:,}" for name, count in excluded.items())
        total = sum(excluded.values())
        text.append(
            f"\n{total:,} row{'' if total == 1 else 's'} excluded from the diagnostics "
            f"({parts}); {source['n_used']:,} used",
            style="yellow",
        )
    return text


def _checks_table(report: Report) -> Table:
    table = Table(show_edge=False, header_style="bold", pad_edge=False, expand=False)
    table.add_column("Code", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Message", overflow="fold")
    for check in report.checks:
        table.add_row(
            check.code,
            check.name,
            Text(check.status.value, style=STATUS_STYLE[check.status]),
            format_value(check.value),
            check.message,
        )
    return table


def _norms(report: Report) -> Text | None:
    try:
        metrics: dict[str, Any] = report.check("EA101").metrics
    except KeyError:
        return None
    if "histogram" not in metrics:
        return None
    histogram = metrics["histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    text = Text("Norms  ")
    if len(counts) == 1:
        text.append(f"all {counts[0]:,} ≈ {edges[0]:.6g}")
        return text
    # Enough significant digits to tell the ends apart (normalized data spans ~1e-7).
    spread = (edges[-1] - edges[0]) / max(abs(edges[-1]), abs(edges[0]))
    digits = min(9, max(4, 2 + math.ceil(-math.log10(spread))))
    text.append(f"{edges[0]:.{digits}g} ", style="dim")
    text.append(sparkline(counts), style="cyan")
    text.append(f" {edges[-1]:.{digits}g}", style="dim")
    text.append(
        f"   p1 {metrics['p1']:.{digits}g} · p50 {metrics['p50']:.{digits}g}"
        f" · p99 {metrics['p99']:.{digits}g} · CV {metrics['cv']:.3g}"
    )
    return text


def _verdict(report: Report) -> Panel:
    verdict = report.verdict
    body = Text()
    for reason in verdict.reasons:
        body.append(f"• {reason}\n")
    if verdict.recommendations:
        body.append("\nWhat to do\n", style="bold")
        for action in verdict.recommendations:
            body.append(f"→ {action}\n")
    body.rstrip()
    summary = report.summary
    counts = " · ".join(f"{summary[s.value]} {s.value}" for s in Status)
    return Panel(
        body,
        title=Text(f"Verdict: {verdict.level.value}", style=LEVEL_STYLE[verdict.level]),
        title_align="left",
        subtitle=counts,
        subtitle_align="right",
        border_style=LEVEL_STYLE[verdict.level],
    )


class TableFormat(Format):
    name = "table"
    human = True

    def render(self, report: Report, *, color: bool = False, width: int = 100) -> str:
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=width,
            force_terminal=color,
            no_color=not color,
            color_system="standard" if color else None,
            highlight=False,
        )
        parts: list[Any] = [_header(report), Text(), _checks_table(report), Text()]
        norms = _norms(report)
        if norms is not None:
            parts += [norms, Text()]
        parts.append(_verdict(report))
        console.print(Group(*parts))
        return buffer.getvalue()
