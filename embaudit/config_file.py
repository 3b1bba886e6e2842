"""The configuration file: ``[tool.embaudit]`` in pyproject.toml, or embaudit.toml, or
``--config PATH``, found and parsed (merged with the flags by :func:`embaudit.options.merge`).

The file is found from the working directory upward (the first directory holding an
``embaudit.toml``, or a ``pyproject.toml`` with a ``[tool.embaudit]`` table, wins). Flags on the
command line override it. Every key is validated: an unknown key here, a bad value when the
options are built from it; either is a configuration error naming the key and the file.

    [tool.embaudit]
    trained-with = "cosine"
    k = 10
    select = ["EA"]            # code prefixes: "EA3" selects EA301 and EA302
    ignore = ["EA501"]
    extend-select = []
    fail-on = "warn"
    queries = 500              # sample sizes: queries, gauge-queries, gauge-draws,
                               # gauge-rows, sample, pairs, graphs

    [tool.embaudit.checks.EA301]
    threshold = 0.7
    severity = "warn"          # a finding of this check is reported as a warning

    [[tool.embaudit.files]]    # settings of the inputs a glob matches, over the ones above
    path = "exports/items*.npz"
    trained-with = "dot"
    key = "item_factors"
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from embaudit.errors import ConfigError, UsageError
from embaudit.model import Status

_CHECK_KEYS = ("threshold", "severity")
#: Keys that are not parameters of one options type: the selection and the per-check table.
_SELECTION_KEYS = ("select", "ignore", "extend-select")


@dataclass(frozen=True)
class CheckConfig:
    threshold: float | None = None
    severity: Status | None = None  # WARN or FAIL


@dataclass(frozen=True)
class ConfigFile:
    """A parsed configuration file. ``values`` holds the parameters as written, by parameter
    name (``trained_with`` for the key ``trained-with``); the options types validate them."""

    path: Path | None = None
    section: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    checks: dict[str, CheckConfig] = field(default_factory=dict)
    #: ``[[files]]`` entries: a glob and the settings of the files it matches.
    files: tuple[tuple[str, ConfigFile], ...] = ()
    #: The section each value comes from, by name, where it is not ``section`` (a ``[[files]]``
    #: entry's, after :meth:`for_path`): an error names the entry that set the value.
    origins: dict[str, str] = field(default_factory=dict)

    def for_path(self, path: str | os.PathLike[str]) -> ConfigFile:
        """The settings of one input: these, with every matching ``[[files]]`` entry over them
        in order. A pattern matches the path as given, relative to the configuration's
        directory, or its file name."""
        merged = self
        for pattern, entry in self.files:
            if _matches(pattern, path, self.path):
                merged = replace(
                    merged,
                    values=merged.values | entry.values,
                    origins=merged.origins | dict.fromkeys(entry.values, entry.section),
                    checks=merged.checks | entry.checks,
                    select=entry.select if entry.select is not None else merged.select,
                    ignore=merged.ignore + entry.ignore,
                    extend_select=merged.extend_select + entry.extend_select,
                )
        return replace(merged, files=())

    def exports(self) -> list[tuple[str, ConfigFile]]:
        """Project mode: every input the ``[[files]]`` globs match (relative to the
        configuration's directory, ``**`` for any depth), in the entries' order and each once,
        as a path from the working directory, with its settings (:meth:`for_path`). A glob that
        matches nothing is an error naming it."""
        listing = (
            "list the exports under [[tool.embaudit.files]] (path = a glob) in pyproject.toml "
            "or embaudit.toml"
        )
        if self.path is None:
            raise UsageError(
                f"no FILE given and no configuration file found: give a FILE, or {listing}"
            )
        if not self.files:
            raise ConfigError(self.path, f"lists no exports: give a FILE, or {listing}")
        root = self.path.parent
        found: dict[str, None] = {}
        for index, (pattern, _) in enumerate(self.files):
            # glob, not Path.glob: a pattern may be absolute
            matched = sorted(glob.glob(pattern, root_dir=root, recursive=True))  # noqa: PTH207
            if not matched:
                where = replace(self, section=f"{self.section} files[{index}]")
                raise where.error("path", f"{pattern!r} matches no file in {root}")
            for name in matched:
                found.setdefault(_from_working_directory(root / name))
        return [(path, self.for_path(path)) for path in found]

    def error(self, key: str, problem: str) -> ConfigError:
        """An error about ``key`` of this file."""
        section = self.origins.get(key.replace("-", "_"), self.section)
        return ConfigError(self.path or "configuration", f"{key!r} in {section}: {problem}")


def find_config(start: Path | None = None) -> Path | None:
    """The nearest embaudit.toml, or pyproject.toml with [tool.embaudit], from ``start`` up."""
    directory = (start or Path.cwd()).resolve()
    for folder in (directory, *directory.parents):
        candidate = folder / "embaudit.toml"
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


def _has_tool_table(pyproject: Path) -> bool:
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # not ours to judge: only a file that configures embaudit is read
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if "tool.embaudit" in text:  # meant for us: a broken configuration is an error
            raise ConfigError(pyproject, f"invalid TOML ({exc})") from None
        return False
    return isinstance(document.get("tool"), dict) and "embaudit" in document["tool"]


def load_config(path: Path, known_codes: set[str], known_keys: Mapping[str, str]) -> ConfigFile:
    """Read a configuration file: ``known_keys`` maps each parameter key to its name."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, f"cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"invalid TOML ({exc})") from None
    if path.name == "pyproject.toml":
        table = document.get("tool", {}).get("embaudit")
        section = "[tool.embaudit]"
        if table is None:
            raise ConfigError(path, "has no [tool.embaudit] table")
    else:
        table, section = document, path.name
    if not isinstance(table, dict):
        raise ConfigError(path, f"{section} must be a table")
    return _parse(table, ConfigFile(path, section), known_codes, known_keys)


def _parse(
    table: dict[str, Any], blank: ConfigFile, known_codes: set[str], known_keys: Mapping[str, str]
) -> ConfigFile:
    keys = (*known_keys, *_SELECTION_KEYS, "checks", "files")
    for key in table:
        if key not in keys:
            raise ConfigError(
                blank.path or "configuration",
                f"unknown key {key!r} in {blank.section}; known keys: {', '.join(keys)}",
            )
    selection = {
        key.replace("-", "_"): tuple(
            parse_selectors(table[key], known_codes, lambda p, k=key: blank.error(k, p))
        )
        for key in _SELECTION_KEYS
        if key in table
    }
    checks = _parse_checks(table["checks"], known_codes, blank.error) if "checks" in table else {}
    values = {known_keys[key]: value for key, value in table.items() if key in known_keys}
    files = _parse_files(table["files"], blank, known_codes, known_keys) if "files" in table else ()
    return replace(
        blank,
        values=values,
        checks=checks,
        select=selection.get("select"),
        ignore=selection.get("ignore", ()),
        extend_select=selection.get("extend_select", ()),
        files=files,
    )


def _parse_files(
    entries: Any, blank: ConfigFile, known_codes: set[str], known_keys: Mapping[str, str]
) -> tuple[tuple[str, ConfigFile], ...]:
    """``[[files]]``: each entry a ``path`` glob with the settings of the files it matches."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise blank.error("files", "must be an array of tables ([[tool.embaudit.files]])")
    parsed = []
    for index, entry in enumerate(entries):
        where = replace(blank, section=f"{blank.section} files[{index}]")
        pattern = entry.get("path")
        if not isinstance(pattern, str) or not pattern:
            raise where.error("path", "must be a glob naming the files these settings apply to")
        rest = {key: value for key, value in entry.items() if key != "path"}
        if "files" in rest:
            raise where.error("files", "entries cannot nest")
        parsed.append((pattern, _parse(rest, where, known_codes, known_keys)))
    return tuple(parsed)


def _from_working_directory(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    absolute = path.absolute()
    relative = os.path.relpath(absolute)
    return str(absolute) if relative.startswith(os.pardir) else relative


def _matches(pattern: str, path: str | os.PathLike[str], config: Path | None) -> bool:
    given = Path(path)
    candidates = [str(path), given.name]
    if config is not None:
        with contextlib.suppress(ValueError):  # outside the configuration's directory
            candidates.append(str(given.resolve().relative_to(config.resolve().parent)))
    return any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates)


def _parse_checks(checks: Any, known_codes: set[str], fail: Any) -> dict[str, CheckConfig]:
    if not isinstance(checks, dict):
        raise fail("checks", "must be a table of check codes")
    parsed = {}
    for code, options in checks.items():
        where = f"checks.{code}"
        if code not in known_codes:
            raise fail(where, "unknown check code")
        if not isinstance(options, dict):
            raise fail(where, "must be a table with threshold and/or severity")
        for key in options:
            if key not in _CHECK_KEYS:
                raise fail(f"{where}.{key}", "unknown key; known keys: threshold, severity")
        threshold = options.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
        ):
            raise fail(f"{where}.threshold", f"must be a number, got {threshold!r}")
        severity = options.get("severity")
        if severity is not None and severity not in ("warn", "fail"):
            raise fail(f"{where}.severity", "must be 'warn' or 'fail'")
        parsed[code] = CheckConfig(
            None if threshold is None else float(threshold),
            None if severity is None else Status(severity),
        )
    return parsed


def parse_selectors(value: Any, known_codes: set[str], fail: Any) -> list[str]:
    """A list of code prefixes ("EA", "EA3", "EA301"), each matching at least one code."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail("must be a list of check codes or prefixes")
    selectors = [v.strip().upper() for v in value]
    for selector in selectors:
        if not any(code.startswith(selector) for code in known_codes):
            raise fail(f"{selector!r} matches no check code")
    return selectors


def enabled_codes(
    known_codes: set[str],
    select: tuple[str, ...] | None,
    extend_select: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
) -> frozenset[str]:
    """Resolve selectors as ruff does: the most specific matching prefix decides.

    A code is enabled when its longest matching prefix among ``select`` + ``extend_select``
    (default: every code) is longer than its longest matching prefix in ``ignore``.
    """

    def longest(code: str, prefixes: tuple[str, ...]) -> int:
        return max((len(p) for p in prefixes if code.startswith(p)), default=-1)

    chosen = (*(select if select is not None else ("",)), *extend_select)
    return frozenset(code for code in known_codes if longest(code, chosen) > longest(code, ignore))
