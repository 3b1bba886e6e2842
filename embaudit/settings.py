"""Options from three places, one precedence: command-line flags, then the configuration file,
then the defaults."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from embaudit.checks import REGISTRY
from embaudit.config import Config, find_config, load_config
from embaudit.errors import ConfigError
from embaudit.measure import Sampling


def load(config_path: Path | None) -> Config:
    """The configuration named by ``--config``, else the nearest one found, else none."""
    if config_path is not None:
        if not config_path.exists():
            raise ConfigError(config_path, "no such configuration file")
        if not config_path.is_file():
            raise ConfigError(config_path, "not a regular file")
        return load_config(config_path, set(REGISTRY))
    found = find_config()
    return load_config(found, set(REGISTRY)) if found is not None else Config()


def _pick(flag: Any, configured: Any, default: Any) -> Any:
    return flag if flag is not None else configured if configured is not None else default


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def audit_options(
    config: Config,
    *,
    k: int | None,
    seed: int | None,
    trained_with: str | None,
    select: str | None,
    extend_select: str | None,
    ignore: str | None,
    fail_on: str | None,
    queries: int | None = None,
    sample: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`embaudit.audit` from flags (None: not given) and a config.

    ``--select`` replaces the configured selection; ``--extend-select`` and ``--ignore`` add to
    the configured ones.
    """
    sampling = dict(config.sampling)
    if queries is not None:
        sampling["queries"] = queries
    if sample is not None:
        sampling["sample"] = sample
    known = {f.name for f in fields(Sampling)}
    overrides: dict[str, Any] = {key: v for key, v in sampling.items() if key in known}
    selection_given = any(v is not None for v in (select, extend_select, ignore)) or any(
        (config.select is not None, config.extend_select, config.ignore)
    )
    options: dict[str, Any] = {
        "k": _pick(k, config.k, 10),
        "seed": _pick(seed, config.seed, 0),
        "trained_with": _pick(trained_with, config.trained_with, "unknown"),
        "fail_on": _pick(fail_on, config.fail_on, "fail"),
        "sampling": replace(Sampling(), **overrides),
        "thresholds": {
            code: c.threshold for code, c in config.checks.items() if c.threshold is not None
        },
        "severities": {
            code: c.severity for code, c in config.checks.items() if c.severity is not None
        },
    }
    if selection_given:
        options["select"] = _split(select) if select is not None else config.select
        options["extend_select"] = config.extend_select + _split(extend_select)
        options["ignore"] = config.ignore + _split(ignore)
    return options


def run_options(
    config: Config, *, k: int | None, seed: int | None, fail_on: str | None
) -> dict[str, Any]:
    """``k``, ``seed`` and ``fail_on`` for compare-knn and gauge: flag, then file, then default;
    ``queries`` as configured (``--queries`` is applied by the caller)."""
    return {
        "k": _pick(k, config.k, 10),
        "seed": _pick(seed, config.seed, 0),
        "fail_on": _pick(fail_on, config.fail_on, "fail"),
        "queries": config.sampling.get("queries", Sampling().queries),
    }
