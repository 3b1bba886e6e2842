"""The typed reports, one per command, and the gate rule they share.

:class:`CheckReport` (``embaudit check``), :class:`MetricsReport` (``compare-knn`` on one file),
:class:`FilesReport` (``compare-knn`` on two exports) and :class:`GaugeReport` (``gauge``). Each
holds what its command computed as typed fields; :meth:`to_dict` is the JSON document
(``schema_version`` 1), and the formats dispatch on the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from embaudit.compare import FilesComparison, MetricsComparison
from embaudit.gauge import Balance, SideResult, UsersMetric
from embaudit.model import SCHEMA_VERSION, CheckResult, Level, Status, Verdict
from embaudit.options import CheckOptions, CompareOptions, GaugeOptions
from embaudit.params import ParameterError


class Renderer(Protocol):
    """An output format as a report sees it (:class:`embaudit.formats.base.Format`)."""

    def require(self) -> None: ...

    def render(self, report: Any, *, color: bool = False, width: int = 100) -> str: ...

    def document(self, report: Any, *, color: bool = False, width: int = 100) -> str: ...


@runtime_checkable
class NotebookRenderer(Renderer, Protocol):
    """A format that also renders the fragment a notebook shows (``html``)."""

    def notebook(self, report: Any) -> str: ...


#: The output formats by the name ``--format`` takes. :mod:`embaudit.formats` registers each
#: when it is imported (``import embaudit`` does): a report renders itself through them
#: without importing the formats, which read the reports.
RENDERERS: dict[str, Renderer] = {}


def _renderer(format_name: str) -> Renderer:
    """The format ``format_name`` names, ready to render (its optional extra installed)."""
    if format_name not in RENDERERS:
        raise ParameterError(
            "format_name", f"must be one of {', '.join(RENDERERS)}, got {format_name!r}"
        )
    renderer = RENDERERS[format_name]
    renderer.require()
    return renderer


@dataclass(frozen=True, kw_only=True, repr=False)
class Gate:
    """The gate rule, one place for every report: checks at or above ``fail_on`` fail it, and so
    does a verdict at the matching level (untrustworthy; with ``fail_on=warn`` caution)."""

    tool: dict[str, str]
    params: dict[str, Any]
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)
    fail_on: Status = Status.FAIL

    kind: ClassVar[str]  # the command, as the formats name it
    verdict: Verdict | None = None

    def check_fails(self, check: CheckResult, fail_on: Status | None = None) -> bool:
        if (fail_on or self.fail_on) == Status.FAIL:
            return check.status == Status.FAIL
        return check.status in (Status.FAIL, Status.WARN)

    def verdict_fails(self, fail_on: Status | None = None) -> bool:
        if self.verdict is None:
            return False
        worst = Level.UNTRUSTWORTHY if (fail_on or self.fail_on) == Status.FAIL else Level.CAUTION
        return self.verdict.level.rank >= worst.rank

    def failed(self, fail_on: Status | None = None) -> bool:
        """Whether the gate fails (``fail_on`` default: the report's own)."""
        return self.verdict_fails(fail_on) or any(
            self.check_fails(check, fail_on) for check in self.checks
        )

    @property
    def summary(self) -> dict[str, int]:
        counts = {status.value: 0 for status in Status}
        for check in self.checks:
            counts[check.status.value] += 1
        return counts

    @property
    def subject(self) -> str:
        raise NotImplementedError

    def render(self, format_name: str = "table", *, color: bool = False, width: int = 100) -> str:
        """The report in one of the CLI's formats (``table``, ``json``, ``markdown``, ``junit``,
        ``github``, ``html``), as ``--format`` prints it."""
        renderer = _renderer(format_name)
        return renderer.render(self, color=color, width=width)

    def __repr__(self) -> str:
        """One line: the type, the subject, the verdict (or the gate's outcome) and what is not a
        pass, e.g. ``<CheckReport fixtures/x.npy: untrustworthy (2 fail, 1 warn)>``."""
        summary = self.summary
        counts = ", ".join(f"{summary[s]} {s}" for s in ("fail", "warn") if summary[s])
        subject = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.subject)
        return (
            f"<{type(self).__name__} {subject}: {self.outcome}{f' ({counts})' if counts else ''}>"
        )

    def _repr_html_(self) -> str:
        """Jupyter's display: the page of ``--format html`` without the outer document, plots
        inline when matplotlib (``embaudit[report]``) is installed, the tables alone otherwise."""
        notebook = RENDERERS["html"]
        assert isinstance(notebook, NotebookRenderer)
        return notebook.notebook(self)

    @property
    def outcome(self) -> str:
        """The verdict's level; for a comparison, ``gate failed`` / ``gate passed``, or
        ``measured`` when no threshold gates it."""
        if self.verdict is not None:
            return self.verdict.level.value
        if self.failed():
            return "gate failed"
        return "gate passed" if self.gated else "measured"

    @property
    def gated(self) -> bool:
        """Whether a threshold decides pass or fail here (a comparison without
        ``min_overlap`` only measures: no row of it may look like a pass)."""
        return True

    def _document(self, head: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            **head,
            **body,
            "checks": [check.to_dict() for check in self.checks],
            "summary": self.summary,
            "timings": self.timings,
        }


@dataclass(frozen=True, kw_only=True, repr=False)
class _OneInput(Gate):
    """A report on one input (``check``, ``compare-knn FILE``): its ``input`` section, whose
    path (or ``array``, for one in memory) is the report's subject."""

    input: dict[str, Any]

    @property
    def subject(self) -> str:
        return str(self.input.get("path") or "array")


@dataclass(frozen=True, kw_only=True, repr=False)
class _TwoInputs(Gate):
    """A report on two inputs (``compare-knn OLD NEW``, ``gauge ITEMS USERS``): its ``input``
    section holds both, and its subject joins their paths with ``joiner``."""

    joiner: ClassVar[str]

    @property
    def input(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def subject(self) -> str:
        first, second = self.input.values()
        return f"{first.get('path')}{self.joiner}{second.get('path')}"


@dataclass(frozen=True, kw_only=True, repr=False)
class CheckReport(_OneInput):
    """The result of ``embaudit check``: the checks and the verdict on cosine."""

    options: CheckOptions
    verdict: Verdict

    kind: ClassVar[str] = "check"

    def check(self, code: str) -> CheckResult:
        """The result of one check by code (KeyError when it did not run)."""
        for result in self.checks:
            if result.code == code:
                return result
        raise KeyError(code)

    def to_dict(self) -> dict[str, Any]:
        head = {"input": self.input, "params": self.params}
        return self._document(head, {"verdict": self.verdict.to_dict()})


@dataclass(frozen=True, kw_only=True, repr=False)
class _Comparison(Gate):
    """What both results of compare-knn share: the options, a gate only with ``min_overlap``."""

    options: CompareOptions
    comparison: MetricsComparison | FilesComparison

    kind: ClassVar[str] = "compare-knn"

    @property
    def gated(self) -> bool:
        return self.options.min_overlap is not None

    @property
    def k(self) -> int:
        return self.comparison.k


@dataclass(frozen=True, kw_only=True, repr=False)
class MetricsReport(_Comparison, _OneInput):
    """The result of ``embaudit compare-knn FILE``: cosine, L2 and inner-product neighbours."""

    comparison: MetricsComparison

    mode: ClassVar[str] = "metrics"

    def to_dict(self) -> dict[str, Any]:
        comparison = self.comparison
        head = _mode_head(self)
        body = {
            "queries": comparison.queries,
            "excluded_rows": comparison.excluded_rows,
            "pairs": [pair.to_dict(comparison.k) for pair in comparison.pairs],
        }
        return self._document(head, body)


@dataclass(frozen=True, kw_only=True, repr=False)
class FilesReport(_Comparison, _TwoInputs):
    """The result of ``embaudit compare-knn OLD NEW``: neighbours of the same items."""

    old: dict[str, Any]
    new: dict[str, Any]
    comparison: FilesComparison

    mode: ClassVar[str] = "files"
    joiner: ClassVar[str] = " -> "

    @property
    def input(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new}

    def to_dict(self) -> dict[str, Any]:
        return self._document(_mode_head(self), self.comparison.to_dict())


@dataclass(frozen=True, kw_only=True, repr=False)
class GaugeReport(_TwoInputs):
    """The result of ``embaudit gauge``: the gauge freedom and the balance of two towers."""

    options: GaugeOptions
    items: dict[str, Any]
    users: dict[str, Any]
    sides: list[SideResult]  # the audited sides, items first
    prediction_max_rel_change: float
    excluded_rows: dict[str, int]  # per tower, drawn rows left out (non-finite or zero)
    balance: Balance
    users_metric: UsersMetric  # plain item cosine against cosine in the users' metric
    recommendations: list[str]  # which similarity answers which question

    kind: ClassVar[str] = "gauge"
    mode: ClassVar[str] = "towers"
    joiner: ClassVar[str] = " + "

    @property
    def k(self) -> int:
        return self.sides[0].k

    @property
    def input(self) -> dict[str, Any]:
        return {"items": self.items, "users": self.users}

    @property
    def worst_overlap_at_k(self) -> float:
        return min(side.worst_overlap_at_k for side in self.sides)

    def to_dict(self) -> dict[str, Any]:
        first = self.sides[0]
        head = _mode_head(self)
        body = {
            "worst_overlap_at_k": self.worst_overlap_at_k,
            "overlap_by_condition": first.overlap_by_condition,
            "prediction_max_rel_change": self.prediction_max_rel_change,
            "cosine_range": first.cosine_range,
            "excluded_rows": self.excluded_rows,
            "sides": [side.to_dict() for side in self.sides],
            "balance": self.balance.to_dict(),
            "users_metric": self.users_metric.to_dict(),
            "recommendations": self.recommendations,
        }
        return self._document(head, body)


def _mode_head(report: MetricsReport | FilesReport | GaugeReport) -> dict[str, Any]:
    """What a compare-knn or gauge document begins with: its mode, input, parameters and k."""
    return {"mode": report.mode, "input": report.input, "params": report.params, "k": report.k}


@dataclass(frozen=True, kw_only=True, repr=False)
class ProjectReport:
    """The result of ``embaudit check`` with no path: one :class:`CheckReport` per export the
    configuration lists (``[[files]]``), each judged by its own gate (``fail_on`` per file or
    global). The project fails when any export does."""

    tool: dict[str, str]
    config: str | None  # the configuration file that lists the exports
    reports: list[CheckReport]

    kind: ClassVar[str] = "project"

    def failed(self) -> bool:
        return any(report.failed() for report in self.reports)

    @property
    def failing(self) -> list[CheckReport]:
        """The exports whose gate fails, in the configuration's order."""
        return [report for report in self.reports if report.failed()]

    @property
    def subject(self) -> str:
        return str(self.config or "configuration")

    @property
    def outcome(self) -> str:
        """``gate failed`` when an export's gate fails, else ``gate passed``."""
        return "gate failed" if self.failed() else "gate passed"

    @property
    def summary(self) -> dict[str, Any]:
        """How many exports, how many at each verdict level, and which fail their gate."""
        levels = {level.value: 0 for level in Level}
        for report in self.reports:
            levels[report.verdict.level.value] += 1
        return {
            "exports": len(self.reports),
            "levels": levels,
            "failed": [report.subject for report in self.failing],
        }

    def render(self, format_name: str = "table", *, color: bool = False, width: int = 100) -> str:
        """The document of every export in one of the formats that renders a project."""
        renderer = _renderer(format_name)
        return renderer.document(self, color=color, width=width)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "kind": self.kind,
            "config": self.config,
            "summary": self.summary,
            "reports": [report.to_dict() for report in self.reports],
        }

    def __repr__(self) -> str:
        failed = len(self.failing)
        return f"<ProjectReport {len(self.reports)} exports: {failed} failing>"


#: Every report a format renders.
AnyReport = CheckReport | MetricsReport | FilesReport | GaugeReport
#: The two results of compare-knn.
CompareReport = MetricsReport | FilesReport
