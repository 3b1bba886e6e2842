"""``--format html``: one self-contained page with the report and its plots; the same body is
what a report shows in a notebook (``_repr_html_``).

Styles and plots (SVG, text drawn as paths) are inline: the page fetches nothing, opens offline
and can be attached to a CI run. It carries the content of the JSON — verdict, reasons and
recommendations, the checks with their thresholds and ``explain`` text on demand, the input and
the parameters — plus plots. Needs matplotlib: ``pip install 'embaudit[report]'``. In a notebook
the body stands alone (its styles scoped to it, so the notebook keeps its own), and without
matplotlib it shows the same tables without the plots.
"""

from __future__ import annotations

import html
import json
from typing import Any

from embaudit.checks import REGISTRY
from embaudit.errors import UsageError
from embaudit.formats.base import Format
from embaudit.formats.details import Block, Bullets, Table, details
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport, CheckReport, FilesReport, GaugeReport, MetricsReport

#: The page around the report (``--format html`` only).
PAGE_STYLE = "body { margin: 0 auto; max-width: 1100px; padding: 24px; }"
#: The report's own styles, scoped to its ``<div class="embaudit">`` so that a notebook keeps
#: its look around it.
STYLE = """
.embaudit { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; }
.embaudit h1 { font-size: 22px; margin: 0 0 4px; }
.embaudit h2 { font-size: 17px; margin: 28px 0 8px; }
.embaudit .subject { color: #57606a; font-family: ui-monospace, monospace; }
.embaudit .verdict { border-radius: 8px; padding: 12px 16px; margin: 16px 0; border: 2px solid; }
.embaudit .trustworthy, .embaudit .passed { border-color: #1a7f37; background: #dafbe1; }
.embaudit .caution { border-color: #9a6700; background: #fff8c5; }
.embaudit .measured { border-color: #57606a; background: #f6f8fa; }
.embaudit .untrustworthy, .embaudit .failed { border-color: #cf222e; background: #ffebe9; }
.embaudit .verdict h2 { margin: 0 0 6px; text-transform: capitalize; }
.embaudit table { border-collapse: collapse; border: 0; width: 100%; margin: 8px 0; }
.embaudit th, .embaudit td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
.embaudit td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.embaudit .status { font-weight: 600; border-radius: 10px; padding: 1px 8px; font-size: 12px; }
.embaudit .pass { background: #dafbe1; color: #1a7f37; }
.embaudit .warn { background: #fff8c5; color: #9a6700; }
.embaudit .fail { background: #ffebe9; color: #cf222e; }
.embaudit .skip { background: #eaeef2; color: #57606a; }
.embaudit details summary { cursor: pointer; color: #0969da; }
.embaudit details pre { white-space: pre-wrap; font: 13px/1.4 system-ui, sans-serif;
                        margin: 6px 0; }
.embaudit .plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr));
                   gap: 16px; }
.embaudit figure { margin: 0; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px; }
.embaudit figure svg { width: 100%; height: auto; display: block; }
.embaudit figcaption { color: #57606a; font-size: 13px; margin-top: 4px; }
.embaudit footer { color: #57606a; font-size: 12px; margin-top: 32px; }
.embaudit .hint { color: #57606a; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pairs_table(values: dict[str, Any]) -> str:
    rows = []
    for key, value in values.items():
        shown = (
            value if isinstance(value, str | int | float) or value is None else json.dumps(value)
        )
        rows.append(f"<tr><th>{_e(key)}</th><td>{_e(shown)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


#: The fields every JSON document has: the rest are a comparison's own results.
_DOCUMENT_FIELDS = ("schema_version", "tool", "mode", "input", "params", "k", "checks")


def _results(report: MetricsReport | FilesReport | GaugeReport) -> dict[str, Any]:
    """The single-valued results of a comparison, in the order of its JSON document."""
    document = report.to_dict()
    return {
        key: value
        for key, value in document.items()
        if key not in (*_DOCUMENT_FIELDS, "summary", "timings")
        and not isinstance(value, list | dict)
    }


def _block_html(block: Block) -> str:
    """A detail block (:mod:`embaudit.formats.details`) as HTML."""
    if isinstance(block, Table):
        head = "".join(f"<th>{_e(name)}</th>" for name in block.header)
        rows = "".join(
            "<tr>" + "".join(f"<td>{_e(value)}</td>" for value in row) + "</tr>"
            for row in block.rows
        )
        return f"<h3>{_e(block.title)}</h3><table><tr>{head}</tr>{rows}</table>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{_e(item)}</li>" for item in block.items)
        return f"<h3>{_e(block.title)}</h3><ul>{items}</ul>"
    title = f"<strong>{_e(block.title)}</strong>: " if block.title else ""
    return f"<p>{title}{_e(block.text)}</p>"


def _balance_html(balance: dict[str, Any]) -> str:
    """The towers' balancing gauge (``embaudit gauge``): its numbers and how to read them."""
    shown = {key: value for key, value in balance.items() if key != "scale"}
    return (
        "<h2>Balance of the towers</h2>"
        "<p>The balancing gauge D² = ‖user column‖ / ‖item column‖, over every row of each tower, "
        "makes the column norms of items·D and users·D⁻¹ equal, as weight decay on both towers "
        "leaves them. Its condition number max(D)/min(D) near 1 means the export sits at that "
        "split (then cosine is fixed up to a rotation, if that is how the model was trained); "
        "far from 1, or a dimension zero in one tower only, means the split is arbitrary and "
        "cosine depends on it.</p>" + _pairs_table(shown)
    )


def _verdict_html(report: AnyReport) -> str:
    """The verdict with its reasons and actions, or, for a comparison, the gate's outcome."""
    verdict = report.verdict
    if verdict is not None:
        level = verdict.level.value
        items = "".join(f"<li>{_e(r)}</li>" for r in verdict.reasons)
        actions = "".join(f"<li>{_e(r)}</li>" for r in verdict.recommendations)
        return (
            f'<section class="verdict {level}"><h2>Verdict: {level}</h2><ul>{items}</ul>'
            + (f"<strong>What to do</strong><ul>{actions}</ul>" if actions else "")
            + "</section>"
        )
    minimum = report.params.get("min_overlap")
    if not report.gated:  # nothing decides pass or fail: no pass mark
        heading, outcome = "Measured (no gate)", "measured"
        rule = "No gate: set --min-overlap to fail below an overlap."
    else:
        outcome = "failed" if report.failed() else "passed"
        heading = f"Gate {outcome}"
        rule = (
            f"The gate fails when an overlap@k is below --min-overlap {minimum:g}."
            if minimum is not None
            else "The gate fails on a check at the failing level."
        )
    if report.fail_on == Status.WARN:
        rule += " With --fail-on warn, a warning fails it too."
    return f'<section class="verdict {outcome}"><h2>{heading}</h2><p>{_e(rule)}</p></section>'


def _checks_html(report: AnyReport) -> str:
    rows = []
    for check in report.checks:
        explain = REGISTRY[check.code].explain() if check.code in REGISTRY else ""
        details = (
            f"<details><summary>explain</summary><pre>{_e(explain)}</pre></details>"
            if explain
            else ""
        )
        rows.append(
            f"<tr><td>{_e(check.code or '–')}</td><td>{_e(check.name)}</td>"
            f'<td><span class="status {check.status.value}">{check.status.value}</span></td>'
            f'<td class="value">{_e(format_value(check.value))}</td>'
            f'<td class="value">{_e(format_value(check.threshold))}</td>'
            f"<td>{_e(check.message)}{details}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Code</th><th>Check</th><th>Status</th><th>Value</th>"
        "<th>Threshold</th><th>Message</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _plots_html(report: AnyReport) -> str:
    from embaudit.plots import plots_for

    figures = "".join(
        f'<figure role="img" aria-label="{_e(plot.alt)}">{plot.svg}'
        f"<figcaption><strong>{_e(plot.title)}.</strong> {_e(plot.guide)}</figcaption>"
        "</figure>"
        for plot in plots_for(report)
    )
    return f'<h2>Plots</h2><div class="plots">{figures}</div>'


def plots_available() -> bool:
    """Whether matplotlib (the ``report`` extra) is installed."""
    try:
        from embaudit import plots

        plots.require()
    except ImportError:
        return False
    return True


def body(report: AnyReport, *, plots: bool = True) -> str:
    """The report as one ``<div class="embaudit">``: the page's body, and what a notebook shows.
    ``plots``: draw the figures (needs matplotlib); without them, a line says how to get them."""
    extra = ""
    if not isinstance(report, CheckReport):
        results = _results(report)
        extra = f"<h2>Results</h2>{_pairs_table(results)}" if results else ""
        extra += "".join(_block_html(block) for block in details(report))
    if isinstance(report, GaugeReport):
        extra += _balance_html(report.balance.to_dict())
    figures = (
        _plots_html(report)
        if plots
        else "<p class=\"hint\">Plots: pip install 'embaudit[report]' (matplotlib).</p>"
    )
    counts = " · ".join(f"{count} {status}" for status, count in report.summary.items())
    return (
        '<div class="embaudit">'
        f"<h1>embaudit {_e(report.kind)}</h1>"
        f'<div class="subject">{_e(report.subject)}</div>'
        f"{_verdict_html(report)}"
        f"<h2>Checks</h2>{_checks_html(report)}"
        f"{extra}"
        f"{figures}"
        f"<h2>Input</h2>{_pairs_table(dict(report.input))}"
        f"<h2>Parameters</h2>{_pairs_table(report.params)}"
        f"<footer>embaudit {_e(report.tool['version'])} · {counts}</footer>"
        "</div>"
    )


def notebook_html(report: AnyReport) -> str:
    """What a notebook shows (``_repr_html_``): the body with its scoped styles, plots inline
    when matplotlib is installed."""
    return f"<style>{STYLE}</style>{body(report, plots=plots_available())}"


class HtmlFormat(Format):
    name = "html"

    def notebook(self, report: AnyReport) -> str:
        return notebook_html(report)

    def require(self) -> None:
        if not plots_available():
            raise UsageError("--format html needs matplotlib: pip install 'embaudit[report]'")

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        self.require()
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>embaudit {_e(report.kind)}: {_e(report.subject)}</title>"
            f"<style>{PAGE_STYLE}{STYLE}</style></head>"
            f"<body>{body(report)}</body></html>\n"
        )
