"""Checks by stable code. Importing this package registers all of them."""

from __future__ import annotations

from embaudit.checks import (
    defects,
    drift,
    hygiene,
    index,
    neighbors,
    norms,
    shape,
    truncation,
)
from embaudit.checks.base import REGISTRY, AuditData, Baseline, Check
from embaudit.codes import CODES
from embaudit.model import CheckResult

__all__ = ["REGISTRY", "AuditData", "Baseline", "Check", "run_checks"]

# Imported for registration only.
del defects, drift, hygiene, index, neighbors, norms, shape, truncation
if set(REGISTRY) != set(CODES):  # a code without its check, or the reverse, is a release bug
    raise ImportError(f"checks registered for {sorted(set(REGISTRY) ^ set(CODES))} disagree")


def run_checks(data: AuditData, *, drift: bool = False) -> list[CheckResult]:
    """Run the enabled checks in code order: the audit checks, or (``drift``) the checks
    against a baseline, which run after the verdict of the others is known. A check that an
    option asks for (``--index``, ``--truncate``) runs only with it."""
    enabled = data.params.enabled
    return [
        REGISTRY[code].run(data)
        for code in sorted(REGISTRY)
        if (enabled is None or code in enabled)
        and REGISTRY[code].needs_baseline == drift
        and REGISTRY[code].requested(data.params)
    ]
