"""The typed report: what an audit computes and every format renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Level(StrEnum):
    """Verdict levels, in increasing order of concern."""

    TRUSTWORTHY = "trustworthy"
    CAUTION = "caution"
    UNTRUSTWORTHY = "untrustworthy"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


class TrainedWith(StrEnum):
    """The objective the embeddings were trained with, as the user declares it."""

    COSINE = "cosine"
    DOT = "dot"
    L2 = "l2"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Finding:
    """What a check concludes, before the framework stamps its code, name and threshold.

    ``impact`` is the verdict level this finding raises the verdict to (None: no effect);
    ``recommendation`` is a concrete action for the user.
    """

    status: Status
    value: float | None
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    impact: Level | None = None
    recommendation: str | None = None


@dataclass(frozen=True)
class CheckResult:
    code: str
    name: str
    status: Status
    value: float | None
    threshold: float | None
    message: str
    metrics: dict[str, Any]
    impact: Level | None = None
    recommendation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "status": self.status.value,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Verdict:
    level: Level
    reasons: list[str]
    recommendations: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "reasons": self.reasons,
            "recommendations": self.recommendations,
        }


class _Gate:
    """The gate rule, one place for every report: checks at or above ``fail_on`` fail it, and
    so does a verdict at the matching level (untrustworthy; with ``fail_on=warn`` caution)."""

    checks: list[CheckResult]
    verdict: Verdict | None
    fail_on: Status

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


def _summary(checks: list[CheckResult]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for check in checks:
        counts[check.status.value] += 1
    return counts


@dataclass(frozen=True)
class Report(_Gate):
    """The result of ``embaudit check``: JSON per the output contract via :meth:`to_dict`."""

    tool: dict[str, str]
    input: dict[str, Any]
    params: dict[str, Any]
    verdict: Verdict
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)
    fail_on: Status = Status.FAIL

    kind = "check"

    @property
    def subject(self) -> str:
        return str(self.input.get("path") or "array")

    @property
    def summary(self) -> dict[str, int]:
        return _summary(self.checks)

    def check(self, code: str) -> CheckResult:
        """The result of one check by code (KeyError when it did not run)."""
        for result in self.checks:
            if result.code == code:
                return result
        raise KeyError(code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "input": self.input,
            "params": self.params,
            "verdict": self.verdict.to_dict(),
            "checks": [check.to_dict() for check in self.checks],
            "summary": self.summary,
            "timings": self.timings,
        }


@dataclass(frozen=True)
class CompareReport(_Gate):
    """The result of ``embaudit compare-knn`` (metrics of one file, or two files) and of
    ``embaudit gauge`` (two towers).

    ``results`` holds the mode's own top-level JSON fields (``pairs``; or ``overlap_at_k``,
    ``by_k``, ``n_matched`` ...); ``checks`` the rows the gate and the CI formats use.
    """

    tool: dict[str, str]
    mode: str  # "metrics" or "files" (compare-knn), "towers" (gauge)
    input: dict[str, Any]
    params: dict[str, Any]
    k: int
    results: dict[str, Any]
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)
    fail_on: Status = Status.FAIL
    kind: str = "compare-knn"
    verdict: Verdict | None = None

    @property
    def subject(self) -> str:
        if self.mode == "files":
            return f"{self.input['old'].get('path')} -> {self.input['new'].get('path')}"
        if self.mode == "towers":
            return f"{self.input['items'].get('path')} + {self.input['users'].get('path')}"
        return str(self.input.get("path") or "array")

    @property
    def summary(self) -> dict[str, int]:
        return _summary(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "mode": self.mode,
            "input": self.input,
            "params": self.params,
            "k": self.k,
            **self.results,
            "checks": [check.to_dict() for check in self.checks],
            "summary": self.summary,
            "timings": self.timings,
        }


#: Every report a format renders.
AnyReport = Report | CompareReport
