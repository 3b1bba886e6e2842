"""The GitHub Action's gate (``action.yml``): ``python -m embaudit._action``.

Reads the action's inputs from the environment, as the composite step passes them
(``INPUT_PATHS``, ``INPUT_COMMAND``, ``INPUT_TRAINED_WITH``, ``INPUT_ARGS``, ``INPUT_REPORT``,
``INPUT_REPORT_FORMAT``), runs ``embaudit <command> <paths> … --format github`` (annotations on
the run, the Markdown report appended to ``$GITHUB_STEP_SUMMARY``), writes the same report as
JSON or JUnit to ``INPUT_REPORT`` when given, appends the outputs ``verdict``, ``exit-code`` and
``report`` to ``$GITHUB_OUTPUT``, and exits with the command's exit code. Runs anywhere: without
the ``GITHUB_*`` variables it prints the annotations and outputs nothing else.

``verdict`` is the check's verdict (``trustworthy``, ``caution``, ``untrustworthy``); for
``compare-knn`` the gate's outcome (``passed``, ``failed``, or ``measured`` without
``--min-overlap``); ``error`` when no report was made (exit code 2 or 3).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from embaudit import cli
from embaudit.errors import UsageError
from embaudit.formats import FORMATS
from embaudit.reports import AnyReport, ProjectReport

COMMANDS = ("check", "compare-knn")
REPORT_FORMATS = ("json", "junit")


@dataclass(frozen=True)
class Inputs:
    """The action's inputs, as the workflow gave them."""

    paths: list[str]
    command: str
    trained_with: str
    args: list[str]
    report: Path | None
    report_format: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Inputs:
        def get(name: str, default: str = "") -> str:
            return environ.get(f"INPUT_{name}", "").strip() or default

        command = get("COMMAND", "check")
        if command not in COMMANDS:
            raise UsageError(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
        report_format = get("REPORT_FORMAT", "json")
        if report_format not in REPORT_FORMATS:
            raise UsageError(
                f"report-format must be one of {', '.join(REPORT_FORMATS)}, got {report_format!r}"
            )
        try:
            paths, args = shlex.split(get("PATHS")), shlex.split(get("ARGS"))
        except ValueError as error:  # an unclosed quote
            raise UsageError(f"paths or args: {error}") from None
        if not paths:
            raise UsageError("paths is required: the embedding file(s) to audit")
        trained_with = get("TRAINED_WITH")
        if trained_with and command != "check":
            raise UsageError(f"trained-with applies to check, not {command}")
        report = get("REPORT")
        return cls(
            paths=paths,
            command=command,
            trained_with=trained_with,
            args=args,
            report=Path(report) if report else None,
            report_format=report_format,
        )

    def argv(self) -> list[str]:
        """The embaudit command line of the gate."""
        objective = ["--trained-with", self.trained_with] if self.trained_with else []
        return [self.command, *self.paths, *objective, *self.args, "--format", "github"]


@contextmanager
def _reports() -> Iterator[list[AnyReport | ProjectReport]]:
    """Collect the report the command computes, so that the JSON or JUnit file is rendered
    from the same report as the annotations instead of a second audit."""
    conclude = cli._conclude
    captured: list[AnyReport | ProjectReport] = []

    def capturing(result: AnyReport | ProjectReport, report: cli.ReportFlags) -> int:
        captured.append(result)
        return conclude(result, report)

    cli._conclude = capturing
    try:
        yield captured
    finally:
        cli._conclude = conclude


def outcome(report: AnyReport | ProjectReport | None) -> str:
    """The ``verdict`` output."""
    return "error" if report is None else report.outcome.removeprefix("gate ")


def _set_outputs(environ: Mapping[str, str], outputs: dict[str, str]) -> None:
    target = environ.get("GITHUB_OUTPUT")
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as stream:
        for name, value in outputs.items():
            stream.write(f"{name}={cli.one_line(value)}\n")


def run(environ: Mapping[str, str]) -> int:
    """The gate: returns the exit code of the embaudit command (2 for bad inputs)."""
    try:
        inputs = Inputs.from_environ(environ)
        if inputs.report is not None:
            inputs.report.parent.mkdir(parents=True, exist_ok=True)
            cli.check_output(inputs.report)
    except (UsageError, OSError) as error:
        sys.stderr.write(f"embaudit: error: {cli.one_line(str(error))}\n")
        _set_outputs(environ, {"verdict": "error", "exit-code": str(cli.EXIT_USAGE)})
        return cli.EXIT_USAGE
    print(f"embaudit {shlex.join(inputs.argv())}", file=sys.stderr)
    with _reports() as captured:
        code = cli.main(inputs.argv())
    report = captured[0] if captured else None
    written = ""
    if report is not None and inputs.report is not None:
        try:
            cli.write_report(inputs.report, FORMATS[inputs.report_format].document(report))
            written = str(inputs.report)
        except UsageError as error:
            sys.stderr.write(f"embaudit: error: {cli.one_line(str(error))}\n")
            code = cli.EXIT_USAGE
    _set_outputs(environ, {"verdict": outcome(report), "exit-code": str(code), "report": written})
    return code


if __name__ == "__main__":
    sys.exit(run(os.environ))
