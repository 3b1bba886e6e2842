"""Checks by stable code, one module per family (the hundreds of the code):

- :mod:`.defects` EA0xx data defects; :mod:`.norms` EA1xx norms; :mod:`.shape` EA2xx geometry;
- :mod:`.gauges` EA3xx gauges; :mod:`.metrics` EA4xx metrics; :mod:`.graphs` EA5xx neighbour
  graphs; :mod:`.drift` EA6xx drift against a baseline; :mod:`.index` EA7xx indexes.

Each check is registered with its documentation next to it (:func:`.base.register`); importing
this package registers all of them, exactly one per code of :data:`embaudit.codes.CODES`."""

from __future__ import annotations

from embaudit.checks import defects, drift, gauges, graphs, index, metrics, norms, shape
from embaudit.checks.base import REGISTRY, AuditData, Baseline, Check
from embaudit.codes import CODES
from embaudit.model import CheckResult

__all__ = ["REGISTRY", "AuditData", "Baseline", "Check", "run_checks"]

# Imported for registration only.
del defects, drift, gauges, graphs, index, metrics, norms, shape
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
