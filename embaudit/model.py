"""The typed report: what an audit computes and every format renders."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


def field_values(record: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass's fields by name, in their order, with their values as they are: the JSON of
    a record whose keys are its field names (``leave_out``: fields it does not show)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in leave_out}


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
    #: A dot-product model with an L2 penalty on each factor (regularized ALS, weight decay on
    #: both towers; Steck et al. 2024, Eq. 2): the penalty selects the balanced split, unique up
    #: to a rotation, so the diagonal gauge is fixed; it still scores with the dot product.
    DOT_REGULARIZED = "dot-regularized"
    L2 = "l2"
    UNKNOWN = "unknown"

    @classmethod
    def declarable(cls, separator: str = "|") -> str:
        """The objectives a user can declare, as a prompt writes them: 'cosine|dot|…' (every
        member but unknown, so that a new objective appears in every prompt)."""
        return separator.join(objective.value for objective in cls if objective != cls.UNKNOWN)

    @property
    def scores_with_dot(self) -> bool:
        """The model's scores are inner products: cosine discards the norms it used."""
        return self in (TrainedWith.DOT, TrainedWith.DOT_REGULARIZED)

    @property
    def fixes_gauge(self) -> bool:
        """The objective leaves no diagonal gauge free: gauge sensitivity is not a finding."""
        return self in (TrainedWith.COSINE, TrainedWith.L2, TrainedWith.DOT_REGULARIZED)


class Action(StrEnum):
    """What a recommendation asks the user to do. The verdict gives one recommendation per
    action: two checks that ask for the same thing say it once."""

    REPAIR = "repair-rows"  # non-finite rows
    DROP_ZERO = "drop-zero-rows"
    DEDUPLICATE = "deduplicate"  # exact copies
    NEAR_DUPLICATES = "near-duplicates"
    DEAD_DIMENSIONS = "dead-dimensions"
    DOMINANT_DIMENSIONS = "dominant-dimensions"
    CENTRE = "centre"
    HUBNESS = "hubness-reduction"
    NORMALIZE = "normalize"
    METRIC = "metric"  # rank (or index) with the metric the model was trained for
    DECLARE = "declare"
    TRUNCATION = "truncation"
    SEARCH = "search-setting"  # the index's search knob
    FILTERED_SEARCH = "filtered-search"  # the index's search under a filter (EA705)
    EXACT_INDEX = "exact-index"  # an index that loses fewer neighbours
    ISLANDS = "islands"  # small groups a graph index reaches badly
    ISOLATED = "isolated-rows"
    NEIGHBOUR_DRIFT = "neighbour-drift"
    NORM_DRIFT = "norm-drift"
    VERDICT_DRIFT = "verdict-drift"


@dataclass(frozen=True)
class Advice:
    """A recommendation: its words, the actions it asks for and how specific it is. Of the
    advice a report gathers, the verdict keeps the most specific for each action (at equal
    specificity, the first given), and drops advice whose every action a kept one asks for."""

    text: str
    actions: tuple[Action, ...]
    #: 0: the action in general; 1: names what to act on (the index, the dimensions, the
    #: setting); 2: also says what it reaches (the objective's neighbours).
    specificity: int = 0


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
    recommendation: Advice | None = None


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
    recommendation: Advice | None = None

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
    """``objective_declared`` false: the training objective is unknown, so gauge and norm
    findings raise the verdict to caution at most (a ``--fail-on fail`` gate lets it pass)."""

    level: Level
    reasons: list[str]
    recommendations: list[str]
    objective_declared: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "reasons": self.reasons,
            "recommendations": self.recommendations,
            "objective_declared": self.objective_declared,
        }
