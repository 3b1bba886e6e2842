"""``--format html``: one self-contained page with the report and its plots.

Styles and plots (SVG, text drawn as paths) are inline: the page fetches nothing, opens offline
and can be attached to a CI run. It carries the content of the JSON — verdict, reasons and
recommendations, the checks with their thresholds and ``explain`` text on demand, the input and
the parameters — plus plots. Needs matplotlib: ``pip install 'embaudit[report]'``.
"""

from __future__ import annotations

import html
import json
from typing import Any

from embaudit.checks import REGISTRY
from embaudit.errors import UsageError
from embaudit.formats.base import Format
from embaudit.formats.table import format_value
from embaudit.model import Status
from embaudit.reports import AnyReport, CheckReport, FilesReport, GaugeReport, MetricsReport

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.subject { color: #57606a; font-family: ui-monospace, monospace; }
.verdict { border-radius: 8px; padding: 12px 16px; margin: 16px 0; border: 2px solid; }
.trustworthy, .passed { border-color: #1a7f37; background: #dafbe1; }
.caution { border-color: #9a6700; background: #fff8c5; }
.untrustworthy, .failed { border-color: #cf222e; background: #ffebe9; }
.verdict h2 { margin: 0 0 6px; text-transform: capitalize; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { font-weight: 600; border-radius: 10px; padding: 1px 8px; font-size: 12px; }
.pass { background: #dafbe1; color: #1a7f37; } .warn { background: #fff8c5; color: #9a6700; }
.fail { background: #ffebe9; color: #cf222e; } .skip { background: #eaeef2; color: #57606a; }
details summary { cursor: pointer; color: #0969da; }
details pre { white-space: pre-wrap; font: 13px/1.4 system-ui, sans-serif; margin: 6px 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: #57606a; font-size: 13px; margin-top: 4px; }
footer { color: #57606a; font-size: 12px; margin-top: 32px; }
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


class HtmlFormat(Format):
    name = "html"

    def require(self) -> None:
        try:
            from embaudit import plots

            plots.require()
        except ImportError:
            raise UsageError(
                "--format html needs matplotlib: pip install 'embaudit[report]'"
            ) from None

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        self.require()
        from embaudit.plots import plots_for

        verdict = report.verdict
        if verdict is not None:
            level = verdict.level.value
            items = "".join(f"<li>{_e(r)}</li>" for r in verdict.reasons)
            actions = "".join(f"<li>{_e(r)}</li>" for r in verdict.recommendations)
            verdict_html = (
                f'<section class="verdict {level}"><h2>Verdict: {level}</h2><ul>{items}</ul>'
                + (f"<strong>What to do</strong><ul>{actions}</ul>" if actions else "")
                + "</section>"
            )
        else:
            outcome = "failed" if report.failed() else "passed"
            minimum = report.params.get("min_overlap")
            rule = (
                "No gate: set --min-overlap to fail below an overlap."
                if minimum is None
                else f"The gate fails when an overlap@k is below --min-overlap {minimum:g}."
            )
            if report.fail_on == Status.WARN:
                rule += " With --fail-on warn, a warning fails it too."
            verdict_html = (
                f'<section class="verdict {outcome}"><h2>Gate {outcome}</h2>'
                f"<p>{_e(rule)}</p></section>"
            )
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
        checks_html = (
            "<table><thead><tr><th>Code</th><th>Check</th><th>Status</th><th>Value</th>"
            "<th>Threshold</th><th>Message</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
        figures = "".join(
            f'<figure role="img" aria-label="{_e(plot.alt)}">{plot.svg}'
            f"<figcaption><strong>{_e(plot.title)}.</strong> {_e(plot.guide)}</figcaption>"
            "</figure>"
            for plot in plots_for(report)
        )
        inputs, extra = dict(report.input), ""
        if not isinstance(report, CheckReport):
            results = _results(report)
            extra = f"<h2>Results</h2>{_pairs_table(results)}" if results else ""
        if isinstance(report, GaugeReport):
            extra += _balance_html(report.balance.to_dict())
        summary = report.summary
        counts = " · ".join(f"{count} {status}" for status, count in summary.items())
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>embaudit {_e(report.kind)}: {_e(report.subject)}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>embaudit {_e(report.kind)}</h1>"
            f'<div class="subject">{_e(report.subject)}</div>'
            f"{verdict_html}"
            f"<h2>Checks</h2>{checks_html}"
            f"{extra}"
            f'<h2>Plots</h2><div class="plots">{figures}</div>'
            f"<h2>Input</h2>{_pairs_table(inputs)}"
            f"<h2>Parameters</h2>{_pairs_table(report.params)}"
            f"<footer>embaudit {_e(report.tool['version'])} · {counts}</footer>"
            "</body></html>\n"
        )
