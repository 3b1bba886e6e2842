"""Checks by stable code. Importing this package registers all of them."""

from __future__ import annotations

from embaudit.checks import defects, neighbors, norms, shape
from embaudit.checks.base import REGISTRY, AuditData, AuditParams, Check
from embaudit.model import CheckResult

__all__ = ["REGISTRY", "AuditData", "AuditParams", "Check", "run_checks"]

del defects, neighbors, norms, shape  # imported for registration only


def run_checks(data: AuditData) -> list[CheckResult]:
    """Run every registered check, in code order."""
    return [REGISTRY[code].run(data) for code in sorted(REGISTRY)]
