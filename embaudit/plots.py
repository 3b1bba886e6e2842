"""Plots of a report as inline SVG (matplotlib, the optional ``report`` extra).

Each plot returns a :class:`Plot`: an SVG document (text as paths: no fonts to fetch), a title,
a one-line reading guide and alt text. Plots draw only what the report holds.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embaudit.reports import AnyReport, CheckReport, FilesReport, GaugeReport, MetricsReport

PALETTE = ["#3b6ea8", "#d1495b", "#edae49", "#00798c", "#66a182"]


@dataclass(frozen=True)
class Plot:
    title: str
    guide: str
    alt: str
    svg: str


def require() -> None:
    """Raise ImportError when matplotlib is missing."""
    import matplotlib  # noqa: F401


def _figure(width: float = 6.4, height: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "svg.hashsalt": "embaudit"})
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    axes.grid(alpha=0.3)
    return figure, axes


def _svg(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF boilerplate
    return text[text.index("<svg") :]


def _overlap_axes(axes: Any, title: str, xlabel: str, *, log_x: bool = True) -> None:
    """The axes of an overlap@k chart: a log x axis (unless not ``log_x``), the overlap from 0
    to 1 with room above for the markers at 1."""
    scale = {"xscale": "log"} if log_x else {}
    axes.set(**scale, title=title, xlabel=xlabel, ylabel="overlap@k", ylim=(0, 1.05))


def _curve(
    axes: Any,
    points: list[dict[str, Any]],
    x: str,
    y: str,
    label: str,
    color: str = PALETTE[0],
    style: str = "o-",
) -> None:
    """The curve of ``points`` (records of a report), ``y`` against ``x``, each point marked."""
    axes.plot([p[x] for p in points], [p[y] for p in points], style, color=color, label=label)


def _by_k_curves(axes: Any, curves: list[tuple[str, dict[Any, float]]]) -> None:
    """Overlap@k against k (the keys, as numbers), one labelled curve a comparison."""
    for color, (label, by_k) in zip(PALETTE, curves, strict=False):
        axes.plot([int(j) for j in by_k], list(by_k.values()), "o-", color=color, label=label)


def _bars(axes: Any, edges: list[float], counts: list[int], color: str, label: str) -> None:
    widths = [b - a for a, b in itertools.pairwise(edges)] or [1.0]
    axes.bar(edges[: len(counts)], counts, width=widths, align="edge", color=color, label=label)


Metrics = dict[str, dict[str, Any]]


def check_plots(report: CheckReport) -> list[Plot]:
    """The figures of a check report, in reading order; a check that measured nothing for its
    figure (skipped, not selected) has none."""
    metrics: Metrics = {check.code: check.metrics for check in report.checks}

    def of(code: str, needs: str, draw: Callable[[dict[str, Any]], Plot]) -> Plot | None:
        """The figure ``draw`` makes of check ``code``'s metrics, when they hold ``needs``."""
        measured = metrics.get(code, {})
        return draw(measured) if needs in measured else None

    figures = [
        of("EA101", "histogram", _norm_plot),
        of("EA201", "pair_histogram", lambda m: _pair_cosine_plot(m, report.input)),
        of("EA203", "eigenvalues", _spectrum_plot),
        of("EA204", "all_contributions", _contribution_plot),
        _metric_overlap_plot(metrics),
        of("EA301", "levels", _rescaling_plot),
        of("EA501", "occurrence_counts", _occurrence_plot),
        _index_sweep_plot(metrics, {check.code: check.threshold for check in report.checks}),
    ]
    return [plot for plot in figures if plot is not None]


def _norm_plot(m: dict[str, Any]) -> Plot:
    figure, axes = _figure()
    _bars(axes, m["histogram"]["edges"], m["histogram"]["counts"], PALETTE[0], "rows")
    low, high = m["histogram"]["edges"][0], m["histogram"]["edges"][-1]
    if low <= 1.0 <= high or high - low < 1e-6:
        axes.axvline(1.0, color=PALETTE[1], linestyle="--", label="unit norm")
    axes.set(title="Norm histogram", xlabel="L2 norm", ylabel="rows")
    axes.legend()
    return Plot(
        "Norm histogram",
        "A single spike at 1 means normalized vectors; a wide or bimodal spread means "
        "L2 and inner-product indexes rank differently from cosine.",
        f"Histogram of the L2 norms from {m['min']:.4g} to {m['max']:.4g}, median {m['p50']:.4g}.",
        _svg(figure),
    )


def _pair_cosine_plot(m: dict[str, Any], report_input: dict[str, Any]) -> Plot:
    figure, axes = _figure()
    hist = m["pair_histogram"]
    _bars(axes, hist["edges"], hist["counts"], PALETTE[0], "random pairs")
    sigma = 1 / math.sqrt(report_input["d"])
    total = sum(hist["counts"])
    width = hist["edges"][1] - hist["edges"][0]
    xs = [-1 + 2 * i / 400 for i in range(401)]
    ys = [
        total * width * math.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
        for x in xs
    ]
    axes.plot(xs, ys, color=PALETTE[1], label=f"isotropic reference (0 ± {sigma:.3f})")
    axes.axvline(m["mean"], color="black", linestyle=":", label=f"mean {m['mean']:.3f}")
    axes.set(title="Cosine of random pairs", xlabel="cosine", ylabel="pairs", xlim=(-1, 1))
    axes.legend(fontsize=8)
    return Plot(
        "Cosine of random pairs",
        "Cosines squeezed into a narrow band far right of the reference mean a shared "
        "component dominates every similarity.",
        f"Histogram of the cosine of {m.get('pairs', 0):,} random pairs, mean "
        f"{m['mean']:.3f}, against a normal curve at 0 with spread {sigma:.3f}.",
        _svg(figure),
    )


def _spectrum_plot(m: dict[str, Any]) -> Plot:
    values = [max(v, 0.0) for v in m["eigenvalues"]]
    total = sum(values) or 1.0
    cumulative, running = [], 0.0
    for v in values:
        running += v
        cumulative.append(running / total)
    figure, axes = _figure()
    ranks = list(range(1, len(values) + 1))
    axes.plot(ranks, [v / total for v in values], color=PALETTE[0], label="variance share")
    axes.set_yscale("log")
    twin = axes.twinx()
    twin.plot(ranks, cumulative, color=PALETTE[2], label="cumulative share")
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("cumulative share")
    axes.axvline(m["effective_rank"], color=PALETTE[1], linestyle="--", label="effective rank")
    axes.set(title="Eigenvalue spectrum", xlabel="component", ylabel="share of variance")
    axes.legend(loc="lower left", fontsize=8)
    return Plot(
        "Eigenvalue spectrum",
        "One component towering over the rest means cosine mostly measures a position "
        "along it; the dashed line is the effective rank.",
        f"Covariance eigenvalues of {m['sample']:,} rows as shares of the variance, top "
        f"share {m['top_share']:.2f}, effective rank {m['effective_rank']:.1f}.",
        _svg(figure),
    )


def _contribution_plot(m: dict[str, Any]) -> Plot:
    figure, axes = _figure()
    contributions = m["all_contributions"]
    colors = [PALETTE[1] if j in m["dimensions"] else PALETTE[0] for j in range(len(contributions))]
    axes.bar(range(len(contributions)), contributions, color=colors, width=1.0)
    axes.set(
        title="Per-dimension share of the expected cosine",
        xlabel="dimension",
        ylabel="contribution to E[cos]",
    )
    return Plot(
        "Per-dimension share of the expected cosine",
        "A few tall bars (red: the top three) are rogue dimensions that decide most of "
        "every cosine.",
        f"Bar chart of each dimension's contribution to the expected cosine; the top "
        f"three are dimensions {', '.join(map(str, m['dimensions']))}.",
        _svg(figure),
    )


def _metric_overlap_plot(metrics: Metrics) -> Plot | None:
    by_k: dict[str, dict[str, float]] = {
        code: metrics[code]["by_k"]
        for code in ("EA401", "EA402")
        if "by_k" in metrics.get(code, {})
    }
    if not by_k:
        return None
    figure, axes = _figure()
    labels = {"EA401": "cosine vs L2", "EA402": "cosine vs inner product"}
    _by_k_curves(axes, [(labels[code], overlaps) for code, overlaps in by_k.items()])
    _overlap_axes(axes, "Overlap@k between metrics", "k", log_x=False)
    axes.legend()
    return Plot(
        "Overlap@k between metrics",
        "At 1 the metrics agree on every neighbour; lower means an index with that "
        "metric returns other neighbours than cosine.",
        "Line chart of the overlap@k of cosine with L2 and with inner-product neighbours.",
        _svg(figure),
    )


def _rescaling_plot(m: dict[str, Any]) -> Plot:
    figure, axes = _figure()
    levels = [level["s"] for level in m["levels"]]
    _curve(axes, m["levels"], "s", "overlap_at_k", "mean over draws")
    for level in m["levels"]:
        axes.scatter(
            [level["s"]] * len(level["draws"]), level["draws"], color=PALETTE[3], s=12, alpha=0.7
        )
    if m.get("s50") is not None:
        axes.axvline(m["s50"], color=PALETTE[1], linestyle="--", label=f"s50 = {m['s50']:.2f}")
    axes.axhline(0.5, color="grey", linewidth=0.8)
    _overlap_axes(axes, "Overlap against rescaling strength", "s (D = exp(N(0, s²)))")
    axes.legend()
    return Plot(
        "Overlap against rescaling strength",
        "Neighbours melting away under modest rescaling mean cosine depends on the "
        "per-dimension scale; s50 is where half are gone.",
        "Line chart of the cosine overlap@k under random diagonal rescalings at s = "
        + ", ".join(f"{s:g}" for s in levels)
        + ".",
        _svg(figure),
    )


def _occurrence_plot(m: dict[str, Any]) -> Plot:
    figure, axes = _figure()
    counts = m["occurrence_counts"]
    axes.bar(range(len(counts)), counts, color=PALETTE[0], width=1.0)
    axes.axvline(m["k"], color=PALETTE[1], linestyle="--", label=f"k = {m['k']}")
    axes.set(
        yscale="log",
        title="k-occurrence distribution (hubness)",
        xlabel="times a point is among the others' k nearest",
        ylabel="points",
    )
    axes.legend()
    return Plot(
        "k-occurrence distribution",
        "A long right tail means hubs that crowd every neighbour list; a tall bar at 0 "
        "means antihubs that are never retrieved.",
        f"Histogram of k-occurrences, skewness {m['skewness']:.2f}, antihub rate "
        f"{m['antihub_rate']:.1%}.",
        _svg(figure),
    )


def _index_sweep_plot(metrics: Metrics, thresholds: dict[str, float | None]) -> Plot | None:
    recall, wanted = metrics.get("EA701", {}), metrics.get("EA702", {})
    if not recall.get("sweep"):
        return None
    figure, axes = _figure()
    param = recall["sweep"][0]["param"]
    values = [point["value"] for point in recall["sweep"]]
    _curve(axes, recall["sweep"], "value", "recall", f"recall@k ({recall['metric']}, EA701)")
    if wanted.get("sweep"):
        returned = f"{wanted['objective']} neighbours returned (EA702)"
        _curve(axes, wanted["sweep"], "value", "overlap_at_k", returned, PALETTE[1], "s--")
    threshold = thresholds.get("EA701")
    if threshold is not None:
        axes.axhline(threshold, color="grey", linewidth=0.8, label=f"threshold {threshold:g}")
    _overlap_axes(axes, f"{recall['index']}: recall against {param}", f"{param} (log scale)")
    axes.set_xticks(values, [str(v) for v in values])
    axes.minorticks_off()
    axes.legend(fontsize=8)
    recommended = recall.get("recommended")
    return Plot(
        f"{recall['index']}: recall against {param}",
        "Recall rising to 1 with the setting means the index can find the neighbours at a "
        "cost in time; a gap between the two curves is the metric, not the approximation.",
        f"Line chart of the recall@k of {recall['index']} ({recall['metric']}) for {param} "
        f"from {values[0]} to {values[-1]}"
        + (
            f"; {param} = {recommended['value']} is the smallest reaching the threshold."
            if recommended
            else "; no setting reaches the threshold."
        ),
        _svg(figure),
    )


def _condition_plot(report: GaugeReport) -> Plot:
    figure, axes = _figure()
    for color, side in zip(PALETTE, report.sides, strict=False):
        curve = side.overlap_by_condition
        _curve(axes, curve, "condition", "overlap_at_k", f"{side.side}: random gauges", color)
        axes.axhline(
            side.worst_overlap_at_k, color=color, linestyle="--", label=f"{side.side}: worst found"
        )
    _overlap_axes(axes, "Overlap by condition number", "max(D) / min(D)")
    axes.legend(fontsize=8)
    return Plot(
        "Overlap by condition number",
        "Every gauge here leaves the predictions unchanged; the lower the curve, the less the "
        "model determines its cosine neighbours.",
        "Line chart of the cosine overlap@k under score-preserving gauges by condition number, "
        "with the worst gauge found as a dashed line.",
        _svg(figure),
    )


def _by_k_plot(curves: list[tuple[str, dict[int, float]]]) -> Plot:
    figure, axes = _figure()
    _by_k_curves(axes, curves)
    _overlap_axes(axes, "Overlap by k", "k")
    axes.legend()
    return Plot(
        "Overlap by k",
        "At 1 every neighbour is shared; the curve shows whether disagreement sits at the top of "
        "the lists or further down.",
        "Line chart of overlap@k against k.",
        _svg(figure),
    )


def _per_item_plot(report: FilesReport) -> Plot:
    figure, axes = _figure()
    hist = report.comparison.per_item_histogram()
    _bars(axes, hist["edges"], hist["counts"], PALETTE[0], "items")
    axes.set(
        title="Per-item overlap",
        xlabel=f"overlap@{report.k} of an item's neighbours",
        ylabel="items",
    )
    return Plot(
        "Per-item overlap",
        "Mass at the left means many items whose neighbourhoods changed completely between the "
        "exports.",
        "Histogram of the overlap@k of each sampled item's neighbours between the two exports.",
        _svg(figure),
    )


def compare_plots(report: MetricsReport | FilesReport | GaugeReport) -> list[Plot]:
    if isinstance(report, GaugeReport):
        return [_condition_plot(report)]
    if isinstance(report, FilesReport):
        comparison = report.comparison
        return [_by_k_plot([(comparison.metric, comparison.by_k)]), _per_item_plot(report)]
    pairs = report.comparison.pairs
    return [_by_k_plot([(f"{pair.a} vs {pair.b}", pair.by_k) for pair in pairs])]


def plots_for(report: AnyReport) -> list[Plot]:
    return check_plots(report) if isinstance(report, CheckReport) else compare_plots(report)
