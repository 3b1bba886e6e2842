"""What a stored index searched live adds to its measurement: the index as the store describes
it, the statements that tune or rebuild it in the store's own language, and, under a filter,
the rows it returns per query and what an iterative scan changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embaudit.array_types import Ints
from embaudit.index.sweep import SweepPoint


@dataclass(frozen=True)
class LiveReport:
    """A stored index searched through the store's own query path (pgvector's SQL)."""

    name: str  # the index's name in the store
    title: str  # the index in a message: kind, name, metric, parameters
    info: dict[str, Any]  # as the report shows it: type, operator class, parameters, settings
    default: SweepPoint  # at the store's own settings
    returned: Ints  # rows returned per query at the store's settings (the query's own left out)
    index_used: int  # queries whose plan searched the index
    queries: int
    #: The statements that set each swept value of the knob (for the session, for every one).
    statements: dict[int, list[str]] = field(default_factory=dict)
    actions: dict[int, str] = field(default_factory=dict)  # the same, as a recommendation
    settings_from: str = "the server's setting"  # whose the default search setting is
    timed: str = "on the server"  # where the time of a search is taken
    build: str = ""  # a stronger index of the same metric
    build_for: dict[str, str] = field(default_factory=dict)  # the same, of another metric
    where: str | None = None  # the filter every search carried (--where)
    partial: str | None = None  # a partial index of the filtered rows
    #: Under a filter: each iterative-scan mode the store offers, at its default setting, and
    #: the statement that turns it on.
    iterative: list[tuple[SweepPoint, str]] = field(default_factory=list)
    #: The knob's ladder with the iterative-scan mode of the best recall (when it misses some).
    iterative_sweep: list[SweepPoint] = field(default_factory=list)

    @property
    def filtered(self) -> str:
        """' under WHERE tenant = 7', or nothing without a filter."""
        return "" if self.where is None else f" under WHERE {self.where}"

    def set_action(self, setting: int) -> str:
        """What to run to search at ``setting`` (a swept one)."""
        return self.actions[setting]
