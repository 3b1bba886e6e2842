"""embaudit: audit embedding files and tell whether cosine similarity can be trusted on them."""

from __future__ import annotations

import embaudit.formats  # noqa: F401 - registers the output formats of Report.render
from embaudit._version import __version__
from embaudit.audit import audit, audit_gauge, audit_project, compare_knn
from embaudit.engines import Engine, LocalEngine, RayEngine
from embaudit.errors import ConfigError, EmbauditError, IncompleteError, InputError, UsageError
from embaudit.measurement.sampling import Sampling
from embaudit.model import CheckResult, Level, Status, TrainedWith, Verdict
from embaudit.options import CheckOptions, CompareOptions, GaugeOptions
from embaudit.params import ParameterError
from embaudit.reports import (
    CheckReport,
    FilesReport,
    GaugeReport,
    MetricsReport,
    ProjectReport,
)

#: The report of :func:`audit` (the name of earlier releases).
Report = CheckReport

__all__ = [
    "CheckOptions",
    "CheckReport",
    "CheckResult",
    "CompareOptions",
    "ConfigError",
    "EmbauditError",
    "Engine",
    "FilesReport",
    "GaugeOptions",
    "GaugeReport",
    "IncompleteError",
    "InputError",
    "Level",
    "LocalEngine",
    "MetricsReport",
    "ParameterError",
    "ProjectReport",
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
    "audit_project",
    "compare_knn",
]
