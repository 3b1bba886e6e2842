"""embaudit: audit embedding files and tell whether cosine similarity can be trusted on them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("embaudit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

from embaudit.audit import audit
from embaudit.errors import EmbauditError, InputError, UsageError
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
    "Status",
    "TrainedWith",
    "UsageError",
    "Verdict",
    "__version__",
    "audit",
]
