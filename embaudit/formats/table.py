"""``--format table``: a Rich table of checks, a norm histogram and a verdict panel."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from embaudit.figures import beside
from embaudit.formats.base import Format
from embaudit.gauge import Balance
from embaudit.model import Level, Status
from embaudit.reports import (
    AnyReport,
    CheckReport,
    FilesReport,
    GaugeReport,
    MetricsReport,
    ProjectReport,
)

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


def _header(report: CheckReport) -> Text:
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
    _queries_line(text, source)
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


def _checks_table(report: CheckReport) -> Table:
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


def _norms(report: CheckReport) -> Text | None:
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


def _verdict(report: CheckReport) -> Panel:
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


def _title(report: AnyReport) -> Text:
    text = Text()
    text.append(f"embaudit {report.tool['version']} {report.kind}", style="bold")
    return text


def _gauge_header(report: GaugeReport) -> Text:
    text = _title(report)
    items, users = report.items, report.users
    text.append(f"  items {items.get('path')} ({items['n']:,}) · users {users.get('path')} ")
    text.append(f"({users['n']:,}) · d={items['d']}")
    text.append(f"  k={report.k} max-condition={report.options.max_condition:g}", style="dim")
    return _excluded(text, report.excluded_rows)


def _files_header(report: FilesReport) -> Text:
    text = _title(report)
    old, new = report.old, report.new
    text.append(f"  {old.get('path')} ({old['n']:,} rows) → {new.get('path')} ({new['n']:,})")
    text.append(
        f"  metric={report.comparison.metric} k={report.k} seed={report.options.seed}",
        style="dim",
    )
    return _excluded(text, report.comparison.excluded_rows)


def _metrics_header(report: MetricsReport) -> Text:
    text = _title(report)
    source = report.input
    text.append(f"  {source.get('path') or '(array)'}  {source['n']:,} × {source['d']}")
    text.append(f"  k={report.k} seed={report.options.seed}", style="dim")
    _queries_line(text, source)
    return _excluded(text, report.comparison.excluded_rows)


def _queries_line(text: Text, source: dict[str, Any]) -> None:
    """Where the queries come from, when a query file gave them."""
    queries = source.get("queries")
    if queries is not None:
        text.append(
            f"\nqueries: {queries['drawn']:,} rows of {queries.get('path') or '(array)'} "
            f"({queries['n']:,} × {queries['d']} {queries['format']}), searched against the "
            "corpus"
        )


def _excluded(text: Text, excluded: int | dict[str, int]) -> Text:
    """The rows left out, in words: '7', or '7 of old, 3 of new' per file or tower."""
    if isinstance(excluded, dict):
        counted = [(count, f" of {name}") for name, count in excluded.items() if count]
    else:
        counted = [(excluded, "")] if excluded else []
    if counted:
        said = ", ".join(f"{count:,}{where}" for count, where in counted)
        text.append(
            f"\nrows with NaN/Inf or zero norm left out of the neighbour lists: {said}",
            style="yellow",
        )
    return text


def _metrics_tables(report: MetricsReport) -> list[Any]:
    pairs = report.comparison.pairs
    metrics = ["cosine", "l2", "dot"]
    overlap = {(p.a, p.b): p.by_k[report.k] for p in pairs}
    matrix = Table(title=f"overlap@{report.k}", show_edge=False, header_style="bold")
    matrix.add_column("")
    for metric in metrics:
        matrix.add_column(metric, justify="right")
    for a in metrics:
        row = []
        for b in metrics:
            value = 1.0 if a == b else overlap.get((a, b), overlap.get((b, a)))
            row.append(f"{value:.3f}" if value is not None else "")
        matrix.add_row(a, *row)
    ladder = Table(title="overlap by k", show_edge=False, header_style="bold")
    ladder.add_column("pair")
    ks = list(pairs[0].by_k) if pairs else []
    for j in ks:
        ladder.add_column(f"@{j}", justify="right")
    ladder.add_column("top-1 differs", justify="right")
    for pair in pairs:
        ladder.add_row(
            f"{pair.a} vs {pair.b}",
            *(f"{pair.by_k[j]:.3f}" for j in ks),
            f"{pair.top1_differs:.1%}",
        )
    return [matrix, Text(), ladder]


def _files_tables(report: FilesReport) -> list[Any]:
    comparison = report.comparison
    summary = Text(
        f"overlap@{report.k} {comparison.overlap_at_k:.3f} over {comparison.queries:,} of "
        f"{comparison.n_matched:,} items matched by {comparison.matched_by}"
    )
    ladder = Table(title="overlap by k", show_edge=False, header_style="bold")
    for j in comparison.by_k:
        ladder.add_column(f"@{j}", justify="right")
    ladder.add_row(*(f"{v:.3f}" for v in comparison.by_k.values()))
    quantiles = comparison.quantiles()
    spread = Table(title="per-item overlap", show_edge=False, header_style="bold")
    for name in quantiles:
        spread.add_column(name, justify="right")
    spread.add_row(*(f"{v:.2f}" for v in quantiles.values()))
    most = comparison.changed_most()
    if not most:
        unchanged = (
            f"changed most: none — all {comparison.queries:,} items compared kept their "
            f"{report.k} nearest neighbours"
        )
        return [summary, Text(), ladder, Text(), spread, Text(), Text(unchanged)]
    changed = Table(title="changed most", show_edge=False, header_style="bold")
    changed.add_column("id")
    changed.add_column(f"overlap@{report.k}", justify="right")
    for item in most:
        changed.add_row(str(item["id"]), f"{item['overlap_at_k']:.2f}")
    return [summary, Text(), ladder, Text(), spread, Text(), changed]


def _gauge_tables(report: GaugeReport) -> list[Any]:
    parts: list[Any] = []
    for side in report.sides:
        curve = Table(
            title=f"{side.side}: overlap@{side.k} under random gauges",
            show_edge=False,
            header_style="bold",
        )
        curve.add_column("condition ≤", justify="right")
        curve.add_column(f"overlap@{side.k}", justify="right")
        for point in side.overlap_by_condition:
            curve.add_row(f"{point['condition']:g}", f"{point['overlap_at_k']:.3f}")
        cosines = side.cosine_range
        pairs = "item" if side.side == "items" else "user"
        parts += [
            curve,
            Text(
                f"worst gauge found (condition {side.worst_condition:.3g}, "
                f"{side.evaluations} evaluations): overlap@{side.k} "
                f"{side.worst_overlap_at_k:.3f}"
            ),
            Text(
                f"cosine of {pairs} pairs reached {cosines['min']:.3f} … {cosines['max']:.3f}; "
                f"a pair's range is {cosines['mean_width']:.3f} wide on average"
            ),
            Text(),
        ]
    parts.append(
        Text(
            "predictions under the worst gauge: max relative change "
            f"{report.prediction_max_rel_change:.1e}"
        )
    )
    parts += [Text(), _balance_text(report.balance), Text(), _users_metric_text(report)]
    return parts


def _users_metric_text(report: GaugeReport) -> Text:
    """Which similarity to use for which question, and how far plain cosine is from the one the
    model identifies."""
    similarity = report.users_metric
    text = Text("similarity ", style="bold")
    text.append(
        f"(users' metric AᵀA of rank {similarity.rank} of {report.items['d']}; "
        f"{similarity.sample:,} items compared)\n",
        style="dim",
    )
    for advice in report.recommendations:
        text.append(f"→ {advice}\n")
    return text


def _balance_text(balance: Balance) -> Text:
    """The balancing gauge D² = user / item column norm, and what its condition number says."""
    rows = balance.rows
    text = Text("balance of the towers ", style="bold")
    text.append(
        f"(column norms over all {rows['items']:,} item and {rows['users']:,} user rows)\n",
        style="dim",
    )
    condition, dead = balance.condition, balance.dead
    if condition is not None:
        style = "green" if balance.balanced else "yellow"
        shown = beside(condition, balance.tolerance, ".4g")
        text.append(f"condition of the balancing gauge {shown}", style=style)
        text.append(
            f" (balanced ≤ {balance.tolerance:g}); std of ln D {balance.log_scale_std:.3g}\n"
        )
    for zero_in, other in (("items", "users"), ("users", "items")):
        if dead[zero_in]:
            text.append(
                f"{len(dead[zero_in])} dimension(s) zero in the {zero_in} but not the {other}: "
                "no gauge balances them\n",
                style="yellow",
            )
    if condition is None and balance.live_condition is not None:
        text.append(f"the other dimensions: condition {balance.live_condition:.4g}\n")
    if dead["both"]:
        text.append(f"{len(dead['both'])} dimension(s) zero in both towers left out\n", style="dim")
    text.append(
        "≈ 1: the split weight decay on both towers selects (then cosine is fixed up to a "
        "rotation, if that is how the model was trained); ≫ 1 or a one-sided zero: the split is "
        "arbitrary and cosine depends on it",
        style="dim",
    )
    return text


def _gate_line(report: MetricsReport | FilesReport | GaugeReport) -> Text:
    failed = [check for check in report.checks if report.check_fails(check)]
    minimum = report.options.min_overlap
    if minimum is None:
        return Text("no gate (set --min-overlap to fail below an overlap)", style="dim")
    if failed:
        return Text(
            f"gate failed: {'; '.join(c.message for c in failed)}", style=STATUS_STYLE[Status.FAIL]
        )
    return Text(f"gate passed: overlap ≥ {minimum:g}", style="green")


_HEADERS: dict[type, Callable[[Any], Text]] = {
    MetricsReport: _metrics_header,
    FilesReport: _files_header,
    GaugeReport: _gauge_header,
}
_TABLES: dict[type, Callable[[Any], list[Any]]] = {
    MetricsReport: _metrics_tables,
    FilesReport: _files_tables,
    GaugeReport: _gauge_tables,
}


def _project_lines(project: ProjectReport) -> list[Text]:
    """One line per export, never cut: its path, verdict, fail and warn counts, and its gate."""
    width = max(len(report.subject) for report in project.reports)
    lines = []
    for report in project.reports:
        summary, level = report.summary, report.verdict.level
        line = Text(f"{report.subject:<{width}}  ")
        line.append(f"{level.value:<13}", style=LEVEL_STYLE[level])
        line.append(f"  {summary['fail']} fail, {summary['warn']} warn  ")
        if report.failed():
            line.append(
                f"gate failed (--fail-on {report.fail_on.value})", STATUS_STYLE[Status.FAIL]
            )
        else:
            line.append("gate passed", style="green")
        lines.append(line)
    return lines


def _project_line(project: ProjectReport) -> Text:
    summary = project.summary
    levels = ", ".join(f"{count} {level}" for level, count in summary["levels"].items() if count)
    line = f"{summary['exports']} exports ({levels}): "
    if summary["failed"]:
        failed = ", ".join(summary["failed"])
        return Text(line + f"gate failed on {failed}", style=STATUS_STYLE[Status.FAIL])
    return Text(line + "gate passed", style="green")


def _printed(parts: list[Any], color: bool, width: int, soft_wrap: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(Group(*parts), soft_wrap=soft_wrap)
    return buffer.getvalue()


class TableFormat(Format):
    name = "table"
    human = True
    projects = True

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        parts: list[Any]
        if not isinstance(report, CheckReport):
            tables = _TABLES[type(report)](report)
            parts = [_HEADERS[type(report)](report), Text(), *tables, Text(), _gate_line(report)]
        else:
            parts = [_header(report), Text(), _checks_table(report), Text()]
            norms = _norms(report)
            if norms is not None:
                parts += [norms, Text()]
            parts.append(_verdict(report))
        return _printed(parts, color, width)

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        parts = [*_project_lines(project), Text(), _project_line(project)]
        return _printed(parts, color, width, soft_wrap=True)
