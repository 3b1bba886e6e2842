"""What to build: an index plan (a faiss ``index_factory`` string, its metric, the rows it
holds, the deployed index's settings), and the metric an index ranks with against the exact
lists it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from embaudit.model import TrainedWith


class IndexMetric(StrEnum):
    """The metric an index ranks with: cosine is inner product on normalized rows."""

    COSINE = "cosine"
    L2 = "l2"
    IP = "ip"


#: The exact list (a :class:`NeighborSearch` metric) that each index metric approximates.
EXACT_METRIC = {IndexMetric.COSINE: "cosine", IndexMetric.L2: "l2", IndexMetric.IP: "dot"}


def default_metric(trained_with: TrainedWith) -> IndexMetric:
    """The index metric of a declared objective: its own, and cosine when unknown."""
    if trained_with.scores_with_dot:
        return IndexMetric.IP
    return IndexMetric.L2 if trained_with == TrainedWith.L2 else IndexMetric.COSINE


def objective_metric(trained_with: TrainedWith) -> str:
    """The exact list of the neighbours the objective wants (cosine when unknown)."""
    return EXACT_METRIC[default_metric(trained_with)]


@dataclass(frozen=True)
class IndexPlan:
    """What to build: a faiss ``index_factory`` string, its metric, and the rows it holds
    (``sample`` rows drawn with ``seed``; None: every clean row)."""

    spec: str
    metric: IndexMetric
    sample: int | None
    seed: int
    flag: str | None = None  # the command-line flag of the spec, for errors
    #: Settings of the deployed index that faiss's string does not carry: ``efConstruction``
    #: (set before rows are added) and the search knob's default (``efSearch``, ``nprobe``),
    #: with the name of what set them (``defaults_from``). Empty: faiss's defaults.
    build: tuple[tuple[str, int], ...] = ()
    search: tuple[tuple[str, int], ...] = ()
    defaults_from: str = "faiss's default"
