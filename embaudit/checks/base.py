"""The check registry. A check is a pure function from prepared data to a :class:`Finding`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from embaudit.codes import CODES
from embaudit.measurement.neighbors import Neighbors
from embaudit.measurement.sample import Geometry
from embaudit.measurement.steps import PARTS
from embaudit.model import CheckResult, Finding, Level, Status, Verdict
from embaudit.stats import NormSummary, ScanStats

if TYPE_CHECKING:
    from embaudit.compare import FilesComparison
    from embaudit.options import CheckOptions


@dataclass(frozen=True)
class Baseline:
    """A previous export to compare with (``check --baseline``): the EA6xx drift checks."""

    path: str | None
    comparison: FilesComparison
    norms: NormSummary  # the baseline's clean norms
    verdict: Verdict


@dataclass(frozen=True)
class AuditData:
    """Everything the checks read: computed once, upstream of every check."""

    params: CheckOptions
    stats: ScanStats
    geometry: Geometry | None = None
    neighbors: Neighbors | None = None
    baseline: Baseline | None = None
    verdict: Verdict | None = None  # of the other checks, for the drift checks


@dataclass(frozen=True)
class Check:
    """A registered check and its documentation (``embaudit explain CODE``)."""

    code: str
    name: str
    summary: str
    measures: str  # what it measures, in one line of the checks table
    rule: str  # what it fails or warns on by default, in a few words
    what: str
    why: str
    fix: str
    reference: str
    threshold: float
    threshold_rationale: str
    measure: Callable[[AuditData, float], Finding]
    needs_baseline: bool = False
    #: The option that asks for this check (``index``, ``truncate``): without it, the check is
    #: not run and not reported. None: every audit runs it.
    option: str | None = None
    #: The sample sizes (fields of :class:`~embaudit.measurement.sampling.Sampling`) its
    #: estimate rests on: when the threshold lies inside the value's 95% interval, the audit
    #: measures again with these doubled (see :mod:`embaudit.pipelines.check`). Empty:
    #: measured exactly, or with no standard error to decide by.
    samples: tuple[str, ...] = ()
    #: The parts of the measurement (:data:`~embaudit.measurement.steps.PARTS`) its value comes
    #: from: measuring again for it measures only these (the others are those measured before).
    reads: tuple[str, ...] = ()
    #: Its value is computed exactly from every clean row (no sample): no standard error.
    exact: bool = False
    #: Its queries are corpus rows also with a query file (EA005): they grow up to the corpus's
    #: rows, not the query file's.
    corpus_queries: bool = False

    def requested(self, options: CheckOptions) -> bool:
        """Whether ``options`` ask for this check (its option, if any, is given)."""
        return self.option is None or bool(getattr(options, self.option))

    def explain(self) -> str:
        """The documentation ``embaudit explain CODE`` prints (Markdown, like ``ruff rule``)."""
        threshold = f"`{self.threshold:g}`"
        sections = [f"# {self.code} ({self.name})", self.summary]
        if self.option is not None:
            flag = "--" + self.option.replace("_", "-")
            sections.append(f"Runs only when asked for: `{flag}` (or `{flag[2:]}` in the config).")
        what = self.what
        if self.samples:
            sizes = ", ".join(self.samples)
            what += (
                f" Estimated from samples ({sizes}): when a threshold lies inside the 95% "
                "interval of the estimate it judges and decides the status, the audit measures "
                "again with these "
                "doubled, up to 8 times the requested sizes (metrics.sampling; 'inconclusive at "
                "the cap' when still undecided)."
            )
            if "graphs" in self.samples:
                what += (
                    " Its value is a property of a graph of `sample` rows (a larger graph has "
                    "other hubs and islands), so what grows is the number of independent "
                    "graphs of that size it averages (graphs), not the graph."
                )
        if self.exact:
            what += (
                " Computed from every clean row (no sample): the value carries no standard error."
            )
        sections += [
            f"## What it measures\n\n{what}",
            f"## Why it matters\n\n{self.why}",
            f"## How to fix it\n\n{self.fix}",
            f"## Default threshold\n\n{threshold}\n\n{self.threshold_rationale}".rstrip(),
        ]
        if self.reference:
            sections.append(f"## Reference\n\n{self.reference}")
        return "\n\n".join(sections) + "\n"

    def run(self, data: AuditData) -> CheckResult:
        threshold = threshold_of(data.params, self.code)
        finding = self.measure(data, threshold)
        status, impact = finding.status, finding.impact
        severity = data.params.severities.get(self.code)
        if severity is not None and status in (Status.WARN, Status.FAIL):
            status = severity
            if severity == Status.WARN and impact == Level.UNTRUSTWORTHY:
                impact = Level.CAUTION  # a finding configured as a warning cannot fail the gate
        return CheckResult(
            code=self.code,
            name=self.name,
            status=status,
            value=finding.value,
            threshold=threshold,
            message=finding.message,
            metrics=finding.metrics,
            impact=impact,
            recommendation=finding.recommendation,
        )


REGISTRY: dict[str, Check] = {}


def lookup(code: str) -> Check | None:
    """The check of a code (EA301) or a name (gauge-sensitivity), as ``explain`` takes it."""
    wanted = code.strip()
    by_name = {check.name: check for check in REGISTRY.values()}
    return REGISTRY.get(wanted.upper()) or by_name.get(wanted.lower())


def listing() -> str:
    """Every check's code, name and one-line summary, one line each: what ``embaudit explain``
    prints without a code."""
    width = max(len(check.name) for check in REGISTRY.values())
    return "".join(
        f"{check.code}  {check.name:<{width}}  {check.summary}\n"
        for check in sorted(REGISTRY.values(), key=lambda check: check.code)
    )


class Sampled(TypedDict):
    """The two keywords of :func:`register` that a sampled check gives together (its
    ``samples`` and the parts it ``reads``), as one value that checks measured alike share."""

    samples: tuple[str, ...]
    reads: tuple[str, ...]


def threshold_of(options: CheckOptions, code: str) -> float:
    """The threshold check ``code`` judges with: the configured one, else its default."""
    return options.thresholds.get(code, REGISTRY[code].threshold)


def register(
    code: str,
    *,
    measures: str,
    rule: str,
    summary: str,
    what: str,
    why: str,
    fix: str,
    threshold: float,
    threshold_rationale: str,
    reference: str = "",
    needs_baseline: bool = False,
    option: str | None = None,
    samples: tuple[str, ...] = (),
    reads: tuple[str, ...] = (),
    exact: bool = False,
    corpus_queries: bool = False,
) -> Callable[[Callable[[AuditData, float], Finding]], Callable[..., Finding]]:
    """Register ``measure`` as check ``code`` (of :data:`~embaudit.codes.CODES`, which names it);
    codes are public API and never renumbered."""

    def decorate(
        measure: Callable[[AuditData, float], Finding],
    ) -> Callable[[AuditData, float], Finding]:
        if code in REGISTRY or code not in CODES:
            raise ValueError(f"check {code} registered twice, or not in embaudit.codes.CODES")
        if bool(samples) != bool(reads) or not set(reads) <= set(PARTS):
            raise ValueError(f"check {code}: a sampled check reads parts of {PARTS}")
        REGISTRY[code] = Check(
            code=code,
            name=CODES[code],
            summary=summary,
            measures=measures,
            rule=rule,
            what=what,
            why=why,
            fix=fix,
            reference=reference,
            threshold=threshold,
            threshold_rationale=threshold_rationale,
            measure=measure,
            needs_baseline=needs_baseline,
            option=option,
            samples=samples,
            reads=reads,
            exact=exact,
            corpus_queries=corpus_queries,
        )
        return measure

    return decorate
