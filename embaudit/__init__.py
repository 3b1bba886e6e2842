"""embaudit: audit embedding files and tell whether cosine similarity can be trusted on them."""

from __future__ import annotations

from embaudit._version import __version__
from embaudit.audit import audit, audit_gauge, compare_knn
from embaudit.errors import EmbauditError, InputError, UsageError
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
    "InputError",
    "Level",
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
