"""embaudit: audit embedding files and tell whether cosine similarity can be trusted on them."""

from __future__ import annotations

from embaudit._version import __version__
from embaudit.audit import audit, audit_gauge, compare_knn
from embaudit.engines import Engine, LocalEngine, RayEngine
from embaudit.errors import EmbauditError, IncompleteError, InputError, UsageError
from embaudit.measure import Sampling
from embaudit.model import (
    CheckResult,
    Level,
    Report,
    Status,
    TrainedWith,
    Verdict,
)

__all__ = [
    "CheckResult",
    "EmbauditError",
    "Engine",
    "IncompleteError",
    "InputError",
    "Level",
    "LocalEngine",
    "RayEngine",
    "Report",
    "Sampling",
    "Status",
    "TrainedWith",
    "UsageError",
    "Verdict",
    "__version__",
    "audit",
    "audit_gauge",
    "compare_knn",
]
