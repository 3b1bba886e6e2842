"""The check registry. A check is a pure function from prepared data to a :class:`Finding`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from embaudit.measure import Geometry, Neighbors, Sampling
from embaudit.model import CheckResult, Finding, TrainedWith
from embaudit.stats import ScanStats


@dataclass(frozen=True)
class AuditParams:
    """Options that shape the measurements and how they are judged."""

    k: int = 10
    seed: int = 0
    trained_with: TrainedWith = TrainedWith.UNKNOWN
    thresholds: Mapping[str, float] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class AuditData:
    """Everything the checks read: computed once, upstream of every check."""

    params: AuditParams
    stats: ScanStats
    geometry: Geometry | None = None
    neighbors: Neighbors | None = None


@dataclass(frozen=True)
class Check:
    """A registered check and its documentation (``embaudit explain CODE``)."""

    code: str
    name: str
    summary: str
    what: str
    why: str
    fix: str
    reference: str
    threshold: float | None
    threshold_rationale: str
    measure: Callable[[AuditData, float | None], Finding]

    def explain(self) -> str:
        """The documentation ``embaudit explain CODE`` prints (Markdown, like ``ruff rule``)."""
        threshold = "none" if self.threshold is None else f"`{self.threshold:g}`"
        sections = [
            f"# {self.code} ({self.name})",
            self.summary,
            f"## What it measures\n\n{self.what}",
            f"## Why it matters\n\n{self.why}",
            f"## How to fix it\n\n{self.fix}",
            f"## Default threshold\n\n{threshold}\n\n{self.threshold_rationale}".rstrip(),
        ]
        if self.reference:
            sections.append(f"## Reference\n\n{self.reference}")
        return "\n\n".join(sections) + "\n"

    def run(self, data: AuditData) -> CheckResult:
        threshold = data.params.thresholds.get(self.code, self.threshold)
        finding = self.measure(data, threshold)
        return CheckResult(
            code=self.code,
            name=self.name,
            status=finding.status,
            value=finding.value,
            threshold=threshold,
            message=finding.message,
            metrics=finding.metrics,
            impact=finding.impact,
            recommendation=finding.recommendation,
        )


REGISTRY: dict[str, Check] = {}


def register(
    code: str,
    name: str,
    *,
    summary: str,
    what: str,
    why: str,
    fix: str,
    reference: str = "",
    threshold: float | None = None,
    threshold_rationale: str = "",
) -> Callable[[Callable[[AuditData, float | None], Finding]], Callable[..., Finding]]:
    """Register ``measure`` as check ``code``; codes are public API and never renumbered."""

    def decorate(
        measure: Callable[[AuditData, float | None], Finding],
    ) -> Callable[[AuditData, float | None], Finding]:
        if code in REGISTRY:
            raise ValueError(f"check {code} registered twice")
        REGISTRY[code] = Check(
            code=code,
            name=name,
            summary=summary,
            what=what,
            why=why,
            fix=fix,
            reference=reference,
            threshold=threshold,
            threshold_rationale=threshold_rationale,
            measure=measure,
        )
        return measure

    return decorate
