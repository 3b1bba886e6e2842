"""One frozen options type per command, and the merge that builds it.

:class:`CheckOptions` (``embaudit check``), :class:`CompareOptions` (``compare-knn``) and
:class:`GaugeOptions` (``gauge``) declare every parameter once (:mod:`embaudit.params`) and
validate themselves from the declarations. The command line and the configuration file both
produce these objects through :func:`merge`: flags over the file over the defaults; an error is
reported under the flag or the key that gave the bad value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from embaudit.codes import CODES
from embaudit.config_file import (
    ConfigFile,
    enabled_codes,
    find_config,
    load_config,
    parse_selectors,
)
from embaudit.engines import ENGINES, Engine
from embaudit.errors import ConfigError, UsageError
from embaudit.index import IndexMetric
from embaudit.measurement.sampling import Sampling
from embaudit.model import Status, TrainedWith
from embaudit.params import (
    COLUMN,
    ID_COLUMN,
    IDS_FROM,
    KEY,
    QUERIES,
    QUERY_COLUMN,
    QUERY_FILE,
    QUERY_KEY,
    ROWS_OUT,
    SEED,
    TABLE,
    WHERE,
    Choices,
    Custom,
    Interval,
    K,
    Param,
    ParameterError,
    _location,
    _text,
    declare,
    declared,
    validate,
)


class FailOn(StrEnum):
    WARN = "warn"
    FAIL = "fail"


class Metric(StrEnum):
    COSINE = "cosine"
    L2 = "l2"
    DOT = "dot"


class Side(StrEnum):
    ITEMS = "items"
    USERS = "users"
    BOTH = "both"


def _engine(value: Any) -> str | Engine:
    if isinstance(value, Engine):
        return value
    if value in ENGINES:
        return str(value)  # an EngineName member (the command line's) as its value
    raise ValueError(f"must be one of {', '.join(ENGINES)} or an Engine, got {value!r}")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _chunk_rows(value: Any) -> int:
    return int(Interval(int, 1).convert(value))


def _codes() -> set[str]:
    return set(CODES)


def _selectors(value: Any) -> tuple[str, ...]:
    def fail(problem: str) -> ValueError:
        return ValueError(problem)

    if not isinstance(value, str) and isinstance(value, Iterable):
        value = list(value)
    return tuple(parse_selectors(value, _codes(), fail))


def _by_code(value: Any, each: str, all_of: str, valid: Callable[[Any], bool]) -> Mapping[Any, Any]:
    """``value`` checked as a map of check codes to values ``valid`` accepts (``each`` names one,
    ``all_of`` several, in the errors)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"must map check codes to {all_of}, got {value!r}")
    for code, item in value.items():
        if code not in _codes():
            raise ValueError(f"name an unknown check code {code!r}")
        if not valid(item):
            raise ValueError(f"of {code} must be {each}, got {item!r}")
    return value


def _is_number(value: Any) -> bool:
    """An int or a float, not NaN (nor a bool, which Python counts as an int)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value


def _thresholds(value: Any) -> dict[str, float]:
    thresholds = _by_code(value, "a number", "numbers", _is_number)
    return {code: float(threshold) for code, threshold in thresholds.items()}


#: What ``severities`` may set a check's finding to.
_SEVERITIES = ("warn", "fail")


def _severities(value: Any) -> dict[str, Status]:
    either = "'warn' or 'fail'"
    levels = _by_code(value, either, either, lambda level: level in _SEVERITIES)
    return {code: Status(level) for code, level in levels.items()}


def _dimensions(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"must be a list of positive integers, got {value!r}")
    dimensions = list(value)
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in dimensions):
        raise ValueError(f"must be a list of positive integers, got {value!r}")
    return tuple(sorted(set(dimensions)))


def _sampling(value: Any) -> Sampling:
    if not isinstance(value, Sampling):
        raise ValueError(f"must be a Sampling, got {value!r}")
    return value


FAIL_ON = Param(
    FailOn.FAIL,
    Choices(FailOn),
    "--fail-on",
    "Exit 1 on failures (fail) or also on warnings and a caution verdict (warn).",
    in_config=True,
)
#: The engines by the name ``--engine`` takes.
EngineName = StrEnum("EngineName", {name.upper(): name for name in ENGINES})  # type: ignore[misc]

ENGINE = Param(
    "local",
    Custom(_engine, invalid=("spark",)),
    "--engine",
    "Where the pass over the data runs: local (this process) or ray (a Ray cluster, parquet "
    "input; needs embaudit\\[ray]). Both give the same report.",
    given=EngineName,
)
RAY_ADDRESS = Param(
    None,
    None,
    "--ray-address",
    "The Ray cluster to join (auto, host:6379, ray://host:10001). Default: the one in "
    "RAY_ADDRESS, else a local cluster started for the run.",
    optional=True,
)
CHUNK_ROWS = Param(None, Custom(_chunk_rows, invalid=(0, 1.5, "1000", True)), optional=True)
INDEX = Param(
    None,
    Custom(_text, invalid=("", 0)),
    "--index",
    "A faiss index_factory string (HNSW32, IVF4096,Flat, IVF1024,PQ64, SQ8, HNSW32,SQ8...): "
    "build that index on the file and check what it returns (EA701 ann-recall, EA702 "
    "index-vs-objective). live: search the index stored with the data through its own query "
    "path (a pgvector table's, by SQL: the default when there is one); rebuild: build that "
    "stored index in faiss with its parameters; none: no index. Local engine only.",
    optional=True,
    in_config=True,
)
INDEX_METRIC = Param(
    None,
    Choices(IndexMetric),
    "--index-metric",
    "The index's metric (cosine: normalize, then inner product). Default: the declared "
    "objective's (dot: ip; unknown: cosine).",
    optional=True,
    in_config=True,
)
INDEX_SAMPLE = Param(
    None,
    Interval(int, 2),
    "--index-sample",
    "Build the index on this many rows drawn at random instead of every row (faster; the "
    "report says so).",
    optional=True,
    in_config=True,
)
NEAR_DUPLICATE_COSINE = Param(
    0.99,
    Interval(float, 0.0, 1.0),
    "--near-duplicate-cosine",
    "EA005 counts a row as a near-duplicate when its nearest other row has at least this cosine.",
    in_config=True,
)
TRUNCATE = Param(
    (),
    Custom(_dimensions, invalid=(0, [256, 0], "256")),
    "--truncate",
    "Check the cosine neighbours on the first M dimensions against all of them (EA303, "
    "Matryoshka exports); repeat for several M.",
    in_config=True,
    given=list[int],
    metavar="M",
)


@dataclass(frozen=True, kw_only=True)
class _Common:
    """What every command takes: the neighbour count, the seed, the gate, the input columns."""

    k: int = declare(K)
    seed: int = declare(SEED)
    fail_on: Status = declare(FAIL_ON)
    key: str | None = declare(KEY)
    column: str | None = declare(COLUMN)
    id_column: str | None = declare(ID_COLUMN)
    table: str | None = declare(TABLE)
    where: str | None = declare(WHERE)

    def __post_init__(self) -> None:
        validate(self)
        # The gate is a check status: warn or fail (FailOn only spells the flag's choices).
        object.__setattr__(self, "fail_on", Status(self.fail_on))


@dataclass(frozen=True, kw_only=True)
class _Passes:
    """How the passes over the data run."""

    engine: str | Engine = declare(ENGINE)
    ray_address: str | None = declare(RAY_ADDRESS)
    chunk_rows: int | None = declare(CHUNK_ROWS)


@dataclass(frozen=True, kw_only=True)
class CheckOptions(_Common, _Passes):
    """Options of ``embaudit check`` / :func:`embaudit.audit`."""

    trained_with: TrainedWith = declare(
        Param(
            TrainedWith.UNKNOWN,
            Choices(TrainedWith),
            "--trained-with",
            "The objective the model was trained with; it decides how norm and gauge findings "
            "weigh in the verdict, never the measured values. dot-regularized: a dot-product "
            "model with an L2 penalty on each factor (regularized ALS, weight decay on both "
            "towers), whose split is fixed up to a rotation (check it with embaudit gauge).",
            in_config=True,
        )
    )
    require_objective: bool = declare(
        Param(
            False,
            Custom(_boolean, invalid=("true", 1)),
            "--require-objective",
            "Refuse to audit (exit 2) unless the training objective is declared: with "
            "--trained-with unknown, gauge and norm findings can raise caution at most, which "
            "--fail-on fail lets pass.",
            in_config=True,
            given=bool,
        )
    )
    sampling: Sampling = field(
        default_factory=Sampling,
        metadata={"param": Param(None, Custom(_sampling, invalid=({"queries": 100},)))},
    )
    thresholds: Mapping[str, float] = declare(
        Param(
            {},
            Custom(
                _thresholds,
                invalid=({"EA999": 0.5}, {"EA301": "0.5"}, {"EA301": float("nan")}, [0.5]),
            ),
        )
    )
    severities: Mapping[str, Status] = declare(
        Param({}, Custom(_severities, invalid=({"EA999": "warn"}, {"EA301": "error"}, "warn")))
    )
    select: tuple[str, ...] | None = declare(
        Param(
            None,
            Custom(_selectors, invalid=("EA999", ["EA999"], [1])),
            "--select",
            "Run only these codes or prefixes, comma-separated (EA3 = EA3xx).",
            optional=True,
        )
    )
    extend_select: tuple[str, ...] = declare(
        Param(
            (),
            Custom(_selectors, invalid=("EA999", ["EA999"], [1])),
            "--extend-select",
            "Add codes or prefixes to the selection.",
        )
    )
    ignore: tuple[str, ...] = declare(
        Param(
            (),
            Custom(_selectors, invalid=("EA999", ["EA999"], [1])),
            "--ignore",
            "Skip these codes or prefixes.",
        )
    )
    index: str | None = declare(INDEX)
    index_metric: IndexMetric | None = declare(INDEX_METRIC)
    index_sample: int | None = declare(INDEX_SAMPLE)
    truncate: tuple[int, ...] = declare(TRUNCATE)
    near_duplicate_cosine: float = declare(NEAR_DUPLICATE_COSINE)
    query_file: str | None = declare(QUERY_FILE)
    query_key: str | None = declare(QUERY_KEY)
    query_column: str | None = declare(QUERY_COLUMN)
    rows_out: Path | None = declare(ROWS_OUT)
    ids_from: str | None = declare(IDS_FROM)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.index is not None and getattr(self.engine, "name", self.engine) != "local":
            raise ParameterError(
                "index",
                "needs the local engine: the index is built and searched in this process, "
                "not on the cluster",
                INDEX.flag,
            )
        if self.index_sample is not None and self.index_sample <= self.k + 1:
            raise ParameterError(
                "index_sample",
                f"must be larger than k + 1 = {self.k + 1}, got {self.index_sample}",
                INDEX_SAMPLE.flag,
            )
        if self.sampling.gauge_rows is not None and self.sampling.gauge_rows <= self.k + 1:
            raise ParameterError(
                "gauge_rows",
                f"must be larger than k + 1 = {self.k + 1}, got {self.sampling.gauge_rows}: every "
                "gauge row would be every query's neighbour",
            )
        if self.require_objective and self.trained_with == TrainedWith.UNKNOWN:
            raise UsageError(
                "the training objective must be declared (--trained-with "
                f"{TrainedWith.declarable()}, or trained-with in the configuration): "
                "require-objective is set"
            )
        if self.enabled is not None and not self.enabled:
            raise UsageError(
                "the selection (select, extend_select, ignore) runs no check: every code it "
                "enables is ignored"
            )

    @cached_property
    def enabled(self) -> frozenset[str] | None:
        """The codes the selection runs (None: every code)."""
        if self.select is None and not self.extend_select and not self.ignore:
            return None
        return enabled_codes(_codes(), self.select, self.extend_select, self.ignore)


@dataclass(frozen=True, kw_only=True)
class CompareOptions(_Common, _Passes):
    """Options of ``embaudit compare-knn`` / :func:`embaudit.compare_knn`."""

    queries: int = declare(QUERIES)
    metric: Metric = declare(
        Param(
            Metric.COSINE, Choices(Metric), "--metric", "Two files: the metric of the neighbours."
        )
    )
    min_overlap: float | None = declare(
        Param(
            None,
            Interval(float, 0.0, 1.0),
            "--min-overlap",
            "Make it a gate: exit 1 when an overlap@k is below this value.",
            optional=True,
        )
    )
    query_file: str | None = declare(QUERY_FILE)
    query_key: str | None = declare(QUERY_KEY)
    query_column: str | None = declare(QUERY_COLUMN)
    rows_out: Path | None = declare(ROWS_OUT)


@dataclass(frozen=True, kw_only=True)
class GaugeOptions(_Common):
    """Options of ``embaudit gauge`` / :func:`embaudit.audit_gauge`."""

    side: Side = declare(
        Param(Side.ITEMS, Choices(Side), "--side", "Whose cosine neighbours to audit.")
    )
    max_condition: float = declare(
        Param(
            10.0,
            Interval(float, 1.0),
            "--max-condition",
            "Largest condition number max(D)/min(D) of the gauges tried.",
        )
    )
    min_overlap: float = declare(
        Param(
            0.5,
            Interval(float, 0.0, 1.0),
            "--min-overlap",
            "Fail when the worst overlap@k found is below this: the model does not determine the "
            "cosine neighbours.",
        )
    )
    sample: int = declare(Param(2000, Interval(int, 2), "--sample", "Rows of each tower compared."))

    items_key: str | None = declare(
        Param(
            None,
            KEY.rule,
            "--items-key",
            "The item tower's array in an .npz (default: --key).",
            optional=True,
        )
    )
    users_key: str | None = declare(
        Param(
            None,
            KEY.rule,
            "--users-key",
            "The user tower's array in an .npz (default: --key); one archive often holds both.",
            optional=True,
        )
    )
    write_items: Path | None = declare(
        Param(
            None,
            Custom(lambda value: Path(_location(value)), invalid=("", 0)),
            "--write-items",
            "Write the item embeddings in the users' metric, B·(AᵀA)^½, to this .npy file: "
            "their cosine (and inner product) is the item similarity every split of the model "
            "agrees on.",
            optional=True,
            given=str,  # the rule builds the path: "" is refused, not the working directory
        )
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k >= self.sample - 1:
            raise ParameterError(
                "sample",
                f"must be larger than k + 1 = {self.k + 1}, got {self.sample}",
                declared(self)["sample"].flag,
            )


Options = TypeVar("Options", CheckOptions, CompareOptions, GaugeOptions)


def build(kind: type[Options], given: Options | None = None, **parameters: Any) -> Options:
    """``given`` (default: the defaults) with ``parameters`` replaced, validated. An unknown
    parameter name is a usage error naming it."""
    known = {f.name for f in dataclasses.fields(kind)}
    for name in parameters:
        if name not in known:
            raise UsageError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(given or kind(), **parameters)


# The merge of flags, the configuration file and the defaults --------------------------------


def read_config(path: Path | None) -> ConfigFile:
    """The configuration named by ``--config``, else the nearest one found, else none."""
    if path is not None:
        if not path.exists():
            raise ConfigError(path, "no such configuration file")
        if not path.is_file():
            raise ConfigError(path, "not a regular file")
        return load_config(path, set(CODES), config_keys())
    found = find_config()
    return load_config(found, set(CODES), config_keys()) if found is not None else ConfigFile()


def config_keys() -> dict[str, str]:
    """Configuration keys (kebab-case) of every configurable parameter, to their names."""
    names: dict[str, str] = {}
    for kind in (CheckOptions, CompareOptions, GaugeOptions, Sampling):
        for name, param in declared(kind).items():
            if param.in_config:
                names[name.replace("_", "-")] = name
    return names


def merge(kind: type[Options], config: ConfigFile, flags: Mapping[str, Any]) -> Options:
    """The options of one command: ``flags`` (None: not given) over the configuration file over
    the defaults. ``--select`` replaces the configured selection; ``--extend-select`` and
    ``--ignore`` add to it. A bad value is reported under the flag or key that gave it."""
    given = {name: value for name, value in flags.items() if value is not None}
    configured = {
        name: value
        for name, value in config.values.items()
        if name in declared(kind) and declared(kind)[name].in_config
    }
    values: dict[str, Any] = configured | given
    if kind is CheckOptions:
        values |= _check_values(config, given)
    with blamed_on(config, given):
        if kind is CheckOptions:
            sampling_names = declared(Sampling)
            sampling = {
                name: values.pop(name)
                for name in list(values)
                if name in sampling_names and name not in declared(CheckOptions)
            }
            sampling |= {n: v for n, v in config.values.items() if n in sampling_names}
            sampling |= {n: v for n, v in given.items() if n in sampling_names}
            values["sampling"] = Sampling(**sampling)
        return kind(**values)


@contextmanager
def blamed_on(config: ConfigFile, flags: Mapping[str, Any]) -> Iterator[None]:
    """Within it, a :class:`ParameterError` about a value that ``config`` set, and no flag or
    keyword replaced (``flags``: None where not given), is the configuration's error, named by
    its file and key: an option checked against the input (``column`` on an .npy, ``index`` on
    too few rows) is reported where the user wrote it. Any other is raised as it is, for the
    command line to name by its flag."""
    try:
        yield
    except ParameterError as error:
        name = error.parameter
        if config.path is None or flags.get(name) is not None or name not in config.values:
            raise
        raise config.error(name.replace("_", "-"), error.problem) from None


def _check_values(config: ConfigFile, given: Mapping[str, Any]) -> dict[str, Any]:
    """The selection and the per-check settings of ``check``, merged as ruff merges them."""
    values: dict[str, Any] = {
        "thresholds": {
            code: c.threshold for code, c in config.checks.items() if c.threshold is not None
        },
        "severities": {
            code: c.severity for code, c in config.checks.items() if c.severity is not None
        },
        "extend_select": config.extend_select + _split(given.get("extend_select")),
        "ignore": config.ignore + _split(given.get("ignore")),
    }
    select = given.get("select")
    values["select"] = _split(select) if select is not None else config.select
    return values


def _split(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)


__all__ = [
    "CheckOptions",
    "CompareOptions",
    "ConfigError",
    "FailOn",
    "GaugeOptions",
    "Metric",
    "Side",
    "blamed_on",
    "build",
    "config_keys",
    "merge",
    "read_config",
]
