"""Parameters declared once: default, rule (bounds or choices), flag and help.

An options type (:mod:`embaudit.options`, :class:`embaudit.measurement.sampling.Sampling`)
builds each field from a :class:`Param` and validates itself from the declarations, as
scikit-learn's ``_param_validation`` does: the library's errors name the parameter (``k``);
only the command line maps a parameter to its flag (``-k``), and only the configuration file to
its key (``k``).
A default or a bound lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from embaudit.errors import UsageError


class ParameterError(UsageError):
    """A parameter has a value the tool cannot use. ``parameter`` is its name in the library;
    ``flag`` the command-line flag that sets it (None when it has none)."""

    def __init__(self, parameter: str, problem: str, flag: str | None = None) -> None:
        self.parameter, self.problem, self.flag = parameter, problem, flag
        super().__init__(f"{parameter} {problem}")

    def __reduce__(self) -> tuple[type[ParameterError], tuple[str, str, str | None]]:
        return (type(self), (self.parameter, self.problem, self.flag))

    def named(self, name: str) -> str:
        """The message with the parameter called ``name`` (a flag, a configuration key)."""
        return f"{name} {self.problem}"


class Rule:
    """Converts a value into the parameter's type, or raises ValueError saying what it must be."""

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def invalid_values(self) -> list[Any]:
        """Values the rule must refuse, for the tests generated from the declarations (as
        scikit-learn's ``generate_invalid_param_val``). None known: an empty list."""
        return []


@dataclass(frozen=True)
class Interval(Rule):
    """A number in [low, high] (either end open-ended when None); ``kind`` int or float."""

    kind: type
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{noun} >= {self.low:g}"
        if self.high is not None:
            return f"{noun} <= {self.high:g}"
        return noun

    def convert(self, value: Any) -> Any:
        allowed = int if self.kind is int else int | float
        if isinstance(value, bool) or not isinstance(value, allowed) or value != value:
            raise ValueError(f"must be {self.describe()}, got {value!r}")
        if self.kind is float and not math.isfinite(value):
            raise ValueError(f"must be a finite {self.describe()[2:]}, got {value!r}")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise ValueError(f"must be {self.describe()}, got {value!r}")
        return self.kind(value)

    def invalid_values(self) -> list[Any]:
        """Just below ``low`` and just above ``high`` (where they exist); NaN and the
        infinities for a float, a fraction for an integer; a valid number as text; a bool."""
        values: list[Any] = []
        if self.kind is int:
            if self.low is not None:
                values.append(math.ceil(self.low) - 1)
            if self.high is not None:
                values.append(math.floor(self.high) + 1)
        else:
            if self.low is not None:
                values.append(math.nextafter(self.low, -math.inf))
            if self.high is not None:
                values.append(math.nextafter(self.high, math.inf))
        valid = self.kind(next((end for end in (self.low, self.high) if end is not None), 0))
        extra = [valid + 0.5] if self.kind is int else [math.nan, math.inf, -math.inf]
        return [*values, *extra, str(valid), True]


@dataclass(frozen=True)
class Choices(Rule):
    """One of the values of a string enumeration (given as the member or its value)."""

    enum: type[StrEnum]

    def convert(self, value: Any) -> Any:
        try:
            return self.enum(value)
        except ValueError:
            choices = ", ".join(member.value for member in self.enum)
            raise ValueError(f"must be one of {choices}, got {value!r}") from None

    def invalid_values(self) -> list[Any]:
        """A string that is none of the values (longer than every one)."""
        return ["not-" + max((member.value for member in self.enum), key=len)]


@dataclass(frozen=True)
class Custom(Rule):
    """A rule of its own: ``function`` converts or raises ValueError with the problem;
    ``invalid`` holds values it must refuse, where the declaration knows some."""

    function: Callable[[Any], Any]
    invalid: tuple[Any, ...] = dataclasses.field(default=(), compare=False)

    def convert(self, value: Any) -> Any:
        return self.function(value)

    def invalid_values(self) -> list[Any]:
        return list(self.invalid)


@dataclass(frozen=True)
class Param:
    """The declaration of one parameter. ``optional``: None is a valid value (not given)."""

    default: Any
    rule: Rule | None = None
    flag: str | None = None
    help: str = ""
    optional: bool = False
    in_config: bool = False  # a key of the configuration file (the name in kebab-case)
    #: The type a command line or a tool signature takes the value as; default: the rule's
    #: (:func:`given_as`).
    given: Any = None
    metavar: str | None = None  # the value's name in --help (default: the type's)

    def convert(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if self.rule is None:
            return value
        try:
            return self.rule.convert(value)
        except ValueError as error:
            raise ParameterError(name, str(error), self.flag) from None


def declare(param: Param) -> Any:
    """A dataclass field carrying ``param`` (its default, and the declaration for
    :func:`validate`): what ``dataclasses.field`` is to a plain field."""
    default = param.default
    if isinstance(default, dict | list):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"param": param}
        )
    return dataclasses.field(default=default, metadata={"param": param})


def declared(options: Any) -> dict[str, Param]:
    """The declared parameters of an options type or instance, by field name."""
    return {
        f.name: f.metadata["param"] for f in dataclasses.fields(options) if "param" in f.metadata
    }


def validate(options: Any) -> None:
    """Convert and check every declared field of a frozen dataclass in place (from its
    ``__post_init__``); raises :class:`ParameterError` naming the first bad one."""
    for name, param in declared(options).items():
        converted = param.convert(name, getattr(options, name))
        object.__setattr__(options, name, converted)


# Parameters that more than one options type declares ----------------------------------------

#: Largest neighbour count: trust in cosine is about the nearest neighbours, and the lists of
#: every query are held in memory.
MAX_K = 1000


def _levels(value: Any) -> tuple[float, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f"must be a list of positive numbers, got {value!r}")
    levels = tuple(value)
    if not levels or any(
        isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s < math.inf
        for s in levels
    ):
        raise ValueError(f"must be a non-empty list of positive numbers, got {value!r}")
    if len(set(map(float, levels))) < len(levels):
        raise ValueError(f"must not repeat a level, got {value!r}")
    return tuple(float(s) for s in levels)


K = Param(10, Interval(int, 1, MAX_K), "-k", "Neighbours per query.", in_config=True)
SEED = Param(0, Interval(int, 0), "--seed", "Seed of every random choice.", in_config=True)
QUERIES = Param(
    500, Interval(int, 1), "--queries", "Query rows sampled for the kNN.", in_config=True
)
GAUGE_QUERIES = Param(10, Interval(int, 1), in_config=True)
GAUGE_DRAWS = Param(6, Interval(int, 1), in_config=True)
#: Rows the gauge queries search (EA301, EA302): every row (None), as every other neighbour
#: list of the audit does, or, as an opt-in speed knob, a seeded random sample of that many
#: rows, whose value is then that of a smaller corpus
#: (embaudit.measurement.sampling.gauge_corpus says why).
GAUGE_ROWS = Param(None, Interval(int, 1), optional=True, in_config=True)
GAUGE_LEVELS = Param(
    (0.1, 0.25, 0.5, 1.0),
    Custom(_levels, invalid=([], [-0.25], [0.1, math.nan], "0.5", [0.5, 0.5])),
)
SAMPLE = Param(5000, Interval(int, 1), in_config=True)
PAIRS = Param(20000, Interval(int, 1), in_config=True)
GRAPHS = Param(1, Interval(int, 1), in_config=True)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _location(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _text(value)


def _text_param(flag: str, help: str, location: bool = False) -> Param:
    """A text parameter of the input (a key, a column, a file): none by default, a non-empty
    string (or a path, for a ``location``) when given, a key of the configuration too."""
    rule = Custom(_location if location else _text, invalid=("", 0))
    return Param(None, rule, flag, help, optional=True, in_config=True)


IDS_FROM = _text_param(
    "--ids-from",
    "Row ids from this parquet file or directory of parquet files (the metadata beside a "
    "directory of .npy/.fbin/.safetensors shards: file by file, row by row, in path order), "
    "used in findings. The column: --id-column, else 'id', else the only one.",
    location=True,
)
QUERY_FILE = _text_param(
    "--query-file",
    "Take the query rows from this file (real user queries, the other tower of a two-tower "
    "model; any input format, the same d, read with --query-key/--query-column, else with "
    "--key/--column when its format takes them) "
    "instead of sampling the corpus: every kNN check measures what these queries see of the "
    "corpus (EA005 still counts the corpus's own near-duplicates). --queries stays the sample "
    "size.",
    location=True,
)


def _rows_out(value: Any) -> Path:
    path = Path(_location(value))
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"must name a .parquet or .csv file, got {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"names a file in {str(path.parent)!r}, which is not a directory")
    return path


ROWS_OUT = Param(
    None,
    Custom(_rows_out, invalid=("", 0, "rows.txt", "no-such-directory/rows.csv")),
    "--rows-out",
    "Write the rows behind the findings to this file (parquet, or CSV when it ends in .csv), "
    "one line per flagged row; compare-knn OLD NEW: the items whose neighbours changed, with "
    "their overlap. Schema: docs/output.md.",
    optional=True,
    given=str,  # the rule builds the path: "" is refused, not the working directory
    metavar="FILE",
)


KEY = _text_param(
    "--key",
    "The array to read: an .npz member, a .safetensors tensor, an HDF5 dataset (default: "
    "train, else the only 2-D one).",
)
COLUMN = _text_param(
    "--column",
    "Column holding the vectors (parquet, JSON Lines, CSV, Lance: a list of floats, or in CSV "
    "a text cell such as [0.1, 0.2]). Default: the only list column; without one, every "
    "numeric column is a dimension.",
)
ID_COLUMN = _text_param(
    "--id-column",
    "Column of row ids (parquet, JSON Lines, CSV, Lance), used in findings and to match items "
    "between files. Default: a column named 'id'.",
)
TABLE = _text_param(
    "--table",
    "PostgreSQL table (or schema.table) holding the vectors, for a postgresql:// source.",
)
WHERE = _text_param(
    "--where",
    "An SQL predicate on the PostgreSQL table (tenant = 7): audit the rows it selects, and "
    "measure the table's index under that filter (EA705 filtered-recall). Run only inside the "
    "read-only transaction.",
)
QUERY_KEY = _text_param(
    "--query-key",
    "The array to read from --query-file (.npz member, .safetensors tensor, HDF5 dataset). "
    "Default: --key when the query file takes one.",
)
QUERY_COLUMN = _text_param(
    "--query-column",
    "Column holding the vectors in --query-file (parquet, JSON Lines, CSV, Lance). Default: "
    "--column when the query file takes one.",
)


# Entry points derived from the declarations -------------------------------------------------


def given_as(param: Param) -> Any:
    """The type an entry point takes ``param``'s value as: the declared one, else an Interval's
    int or float, a Choices' enumeration, or a string (a Custom rule converts it)."""
    if param.given is not None:
        return param.given
    if isinstance(param.rule, Interval):
        return param.rule.kind
    if isinstance(param.rule, Choices):
        return param.rule.enum
    return str


def flagged(*kinds: Any) -> dict[str, Param]:
    """The declared parameters of ``kinds`` that have a command-line flag, by name, in
    declaration order (the first kind's declaration of a name wins)."""
    found: dict[str, Param] = {}
    for kind in kinds:
        for name, param in declared(kind).items():
            if param.flag is not None:
                found.setdefault(name, param)
    return found


def with_parameters(
    added: list[inspect.Parameter], into: str, collect: Callable[[dict[str, Any]], Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds the keyword parameters ``added`` to a function's signature (before
    its own keyword-only ones; its parameter ``into`` is not shown) and passes their values,
    as ``collect`` gathers them from a dict by name, as the keyword ``into``. As typer and the
    MCP SDK read a signature, this is how one declaration writes their options."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]
        keyword = next(
            (i for i, p in enumerate(own) if p.kind is inspect.Parameter.KEYWORD_ONLY), len(own)
        )
        parameters = [*own[:keyword], *added, *own[keyword:]]
        names = [p.name for p in added]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, None) for name in names}
            return function(*args, **{into: collect(values)}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        annotations = {p.name: p.annotation for p in parameters}
        wrapper.__annotations__ = annotations | {"return": signature.return_annotation}
        return wrapper

    return decorate


def with_declared(
    params: dict[str, Param], annotate: Callable[[str, Param], Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds one keyword parameter per declared parameter of ``params`` to a
    function's signature, each ``Annotated[given_as(param) | None, annotate(name, param)]``
    (``annotate`` makes a typer option, an MCP field, …) defaulting to None, and passes them to
    the function as one dict ``given`` (None where not given) (:func:`with_parameters`)."""
    added = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[given_as(param) | None, annotate(name, param)],
        )
        for name, param in params.items()
    ]
    return with_parameters(added, "given", dict)
