"""The command line: parse, call the library, render with a format, choose the exit code."""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from embaudit._streams import stdout_to_stderr
from embaudit._version import __version__
from embaudit.audit import audit, audit_gauge, audit_project, compare_knn
from embaudit.checks.base import listing, lookup
from embaudit.errors import EmbauditError, UsageError
from embaudit.formats import FORMATS
from embaudit.measurement.sampling import Sampling
from embaudit.options import (
    CheckOptions,
    CompareOptions,
    GaugeOptions,
    Options,
    blamed_on,
    merge,
    read_config,
)
from embaudit.output_files import write_text
from embaudit.params import Param, ParameterError, flagged, with_declared, with_parameters
from embaudit.progress import pass_progress
from embaudit.reports import AnyReport, CheckReport, ProjectReport

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
#: Where CI users look (stderr of the human formats): what an undeclared objective means.
UNDECLARED_NOTICE = (
    "embaudit: note: the training objective is not declared (--trained-with unknown): gauge "
    "and norm findings raise the verdict to caution at most, which --fail-on fail lets pass; "
    "declare it, or set require-objective = true in the configuration\n"
)

#: The formats a person reads, whose stderr carries UNDECLARED_NOTICE (not under --quiet, whose
#: one line is all it prints).
HUMAN_NOTICE = ("table", "github")

OutputFormat = StrEnum("OutputFormat", {name.upper(): name for name in FORMATS})  # type: ignore[misc]

DEFAULT_FORMAT = OutputFormat("table")


def _flag(name: str, param: Param, help: str | None = None) -> Any:
    """The typer option of a declared parameter: its flag, help, default and metavar. The value
    is validated where it is declared (:mod:`embaudit.params`), and an error names the flag."""
    default = param.default
    empty = default is None or (isinstance(default, tuple | list | dict) and not default)
    shown = False if empty else str(getattr(default, "value", default))
    assert param.flag is not None
    return typer.Option(
        param.flag, help=help or param.help, show_default=shown, metavar=param.metavar
    )


def declared_flags(
    *kinds: Any, help: dict[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command's options generated from the declarations of its options types (``kinds``):
    one typer option per declared parameter with a flag, passed to the command as ``given``
    (None where not given). ``help`` replaces a parameter's help for this command."""
    own = help or {}
    declared = with_declared(flagged(*kinds), lambda name, param: _flag(name, param, own.get(name)))

    defaults = ReportFlags()
    report_flags = with_parameters(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=getattr(defaults, name),
                annotation=annotation,
            )
            for name, annotation in REPORT_FLAGS.items()
        ],
        "report",
        lambda values: ReportFlags(**values),
    )
    return lambda command: report_flags(declared(command))


app = typer.Typer(
    name="embaudit",
    help=(
        "Audit embedding files and tell whether cosine similarity can be trusted on them.\n\n"
        "Examples:\n\n"
        "  embaudit check vectors.npy\n\n"
        "  embaudit check emb.parquet --column embedding --trained-with cosine "
        "--format json --output report.json\n\n"
        "Exit codes: 0 nothing at the failing level, 1 a failing check or an untrustworthy "
        "verdict, 2 usage, configuration or input error, 3 internal error."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    pass


FileArgument = Annotated[
    str | None,
    typer.Argument(
        help="Embeddings: .npy, .npz, .parquet, a directory of files of one kind (.npy, .fbin, "
        ".safetensors or parquet shards…), a parquet, .npy, big-ann or .safetensors file or "
        "prefix as a URI (s3://bucket/prefix, gs://…, file://…), .jsonl / .ndjson, .csv, "
        ".fvecs / .bvecs, .fbin / .f16bin / .u8bin / .i8bin, .safetensors, .h5 / .hdf5, a .lance "
        "dataset, or a PostgreSQL table as postgresql://USER@HOST/DB with --table. Omitted: "
        "every export the configuration lists under \\[\\[tool.embaudit.files]].",
        show_default=False,
    ),
]
FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-f",
        help="table for people; json for machines (schema_version 1); markdown for a PR "
        "comment; junit for CI test reports; github for workflow annotations; html for a "
        "self-contained page with plots (needs embaudit\\[report]).",
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the report to this file (atomically) instead of stdout; written also "
        "when the gate fails.",
    ),
]
#: compare-knn's and gauge's gate.
GATE_FAIL_ON = "Exit 1 on failing comparisons (fail) or also on warnings (warn)."
ExitZeroOption = Annotated[
    bool, typer.Option("--exit-zero", help="Exit 0 even when the gate fails (report only).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Configuration file. Default: the nearest embaudit.toml, or pyproject.toml with "
        "\\[tool.embaudit], from the working directory up.",
    ),
]


QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Table format: print only a one-line summary."),
]


@dataclass(frozen=True)
class ReportFlags:
    """The command line's own options of every command that reports (not the library's): how
    the report is written and how the exit code is chosen."""

    output_format: OutputFormat = DEFAULT_FORMAT
    output: Path | None = None
    exit_zero: bool = False
    config: Path | None = None
    quiet: bool = False


#: Each report flag's typer annotation, in the order ``--help`` lists them.
REPORT_FLAGS = {
    "output_format": FormatOption,
    "output": OutputOption,
    "exit_zero": ExitZeroOption,
    "config": ConfigOption,
    "quiet": QuietOption,
}


@app.command()
@declared_flags(CheckOptions, Sampling)
def check(
    file: FileArgument = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            help="A previous export (same format and options): adds the drift checks EA601 "
            "neighbour stability, EA602 norm shift, EA603 verdict change.",
        ),
    ] = None,
    *,
    report: ReportFlags,
    given: dict[str, Any],
) -> int:
    """Audit one embedding file: defects, norms, geometry, neighbours, and a verdict on cosine.

    With no FILE, audit every export the configuration lists (\\[\\[tool.embaudit.files]] globs, each with its settings): one line per export and a summary, or one document holding every report (json, markdown, junit, github); the exit code is the worst.

    Examples:

      embaudit check vectors.npy --trained-with cosine

      embaudit check --format junit --output embaudit.xml

      embaudit check items.npz --key item_factors --trained-with dot

      embaudit check parts/ --column embedding --id-column doc_id -f json -o report.json

      embaudit check new.parquet --baseline old.parquet --fail-on warn -f github

      embaudit check s3://bucket/export/ --engine ray --ray-address auto

      embaudit check vectors.npy --trained-with cosine --index HNSW32 --index-metric ip

      embaudit check matryoshka.npy --truncate 256 --truncate 512

    Exit codes: 0 nothing at the failing level; 1 a failing check or an untrustworthy verdict (with --fail-on warn also a warning or a caution verdict); 2 usage, configuration or input error; 3 internal error.
    """  # noqa: E501
    if file is None:
        return _check_project(baseline, report, given)
    options, blame = _prepared(CheckOptions, file, report, given)
    with blame, stdout_to_stderr(), pass_progress(not report.quiet) as progress:
        result = audit(file, options, baseline=baseline, progress=progress)
    _note_undeclared([result], report)
    return _conclude(result, report)


def _check_project(baseline: str | None, report: ReportFlags, given: dict[str, Any]) -> int:
    """``check`` with no FILE: every export of the configuration, in one report."""
    if baseline is not None:
        raise UsageError("--baseline applies to one FILE, not to the exports of a configuration")
    renderer = FORMATS[report.output_format.value]
    if not renderer.projects:
        able = ", ".join(name for name, fmt in FORMATS.items() if fmt.projects)
        raise UsageError(
            f"--format {renderer.name} renders one export: give a FILE, or use one of {able}"
        )
    check_output(report.output)
    renderer.require()
    with stdout_to_stderr(), pass_progress(not report.quiet) as progress:
        result = audit_project(report.config, progress=progress, **_given(given))
    _note_undeclared(result.reports, report)
    return _conclude(result, report)


def _note_undeclared(results: list[CheckReport], report: ReportFlags) -> None:
    """UNDECLARED_NOTICE on stderr of the human formats, when an audit's objective is unknown."""
    human = report.output_format.value in HUMAN_NOTICE
    if human and not report.quiet and not all(r.verdict.objective_declared for r in results):
        sys.stderr.write(UNDECLARED_NOTICE)


@app.command("compare-knn")
@declared_flags(CompareOptions, help={"fail_on": GATE_FAIL_ON})
def compare_knn_command(
    files: Annotated[
        list[str],
        typer.Argument(
            help="One file (compare its cosine, L2 and inner-product neighbours) or two exports "
            "OLD NEW (compare the neighbours of the same items).",
            show_default=False,
        ),
    ],
    *,
    report: ReportFlags,
    given: dict[str, Any],
) -> int:
    """Compare nearest neighbours: of three metrics on one file, or of two exports.

    One file: overlap@k between cosine, L2 and inner-product neighbours for k = 1, 5, 10, 50, 100 (where the file allows), and the share of queries whose top-1 differs.

    Two files: how many neighbours of the same items survive from OLD to NEW (a retrain, a new version). Items are matched by the id column when both files have one, else by row order when the row counts agree.

    Examples:

      embaudit compare-knn vectors.npy

      embaudit compare-knn old.parquet new.parquet --id-column doc_id --min-overlap 0.8

    Exit codes: 0 no overlap below --min-overlap; 1 one is; 2 usage, configuration or input error; 3 internal error.
    """  # noqa: E501
    if not 1 <= len(files) <= 2:
        raise UsageError(f"compare-knn takes one or two files, got {len(files)}")
    options, blame = _prepared(CompareOptions, files[0], report, given)
    with blame, stdout_to_stderr(), pass_progress(not report.quiet) as progress:
        second = files[1] if len(files) == 2 else None
        result = compare_knn(files[0], second, options, progress=progress)
    return _conclude(result, report)


@app.command("gauge")
@declared_flags(GaugeOptions, help={"fail_on": GATE_FAIL_ON})
def gauge_command(
    items: Annotated[
        Path,
        typer.Argument(
            help="The item tower (item factors, document embeddings).", show_default=False
        ),
    ],
    users: Annotated[
        Path,
        typer.Argument(help="The user tower (user factors, query embeddings).", show_default=False),
    ],
    *,
    report: ReportFlags,
    given: dict[str, Any],
) -> int:
    """Audit the gauge freedom of a two-tower dot-product model.

    For any diagonal D, the towers (ITEMS·D, USERS·D⁻¹) give exactly the same scores, yet cosine between items (or users) depends on D. This command finds how far cosine neighbours move under such gauges with condition number up to --max-condition: random draws for a curve of overlap against condition number, and a search for the worst gauge (greedy flips between the bounds of the allowed box, where cosine rankings take their extremes). It also checks that the worst gauge changes no prediction, and reports the balance of the towers: the gauge that makes every user column as long as its item column (over all rows), and its condition number. Weight decay on both towers (Steck et al. 2024, Eq. 2) selects the balanced split, so a condition near 1 is what such training leaves; far from 1, the split is arbitrary.

    Examples:

      embaudit gauge item_factors.npy user_factors.npy

      embaudit gauge items.parquet users.parquet --side both --max-condition 100 -f json

    Exit codes: 0 the worst overlap stays at or above --min-overlap; 1 it is below (cosine neighbours are not identified by the model), or, with --fail-on warn, the towers are not balanced; 2 usage, configuration or input error; 3 internal error.
    """  # noqa: E501
    options, blame = _prepared(GaugeOptions, items, report, given)
    with blame, stdout_to_stderr():
        result = audit_gauge(items, users, options)
    return _conclude(result, report)


def _prepared(
    kind: type[Options], path: str | Path, report: ReportFlags, given: dict[str, Any]
) -> tuple[Options, AbstractContextManager[None]]:
    """The command's options (flags over the configuration found for ``path`` over the
    defaults), checked before any work with the report's output and format, and the context
    that blames a bad configured value on its key."""
    configuration = read_config(report.config).for_path(path)
    flags = _given(given)
    options = merge(kind, configuration, flags)
    check_output(report.output)
    FORMATS[report.output_format.value].require()
    return options, blamed_on(configuration, flags)


def _given(given: dict[str, Any]) -> dict[str, Any]:
    """The declared flags as :func:`~embaudit.options.merge` takes them: None where not given
    (a repeatable flag given no time is not given)."""
    return {name: None if value == [] else value for name, value in given.items()}


@app.command()
def explain(
    code: Annotated[
        str | None,
        typer.Argument(
            help="A check code such as EA301, or its name (gauge-sensitivity). Omit it to "
            "list every check."
        ),
    ] = None,
) -> int:
    """Explain a check: what it measures, why it matters, how to fix it, and its source.

    Examples:

      embaudit explain            # every code with a one-line summary

      embaudit explain EA301      # gauge sensitivity in full

      embaudit explain gauge-sensitivity
    """
    if code is None:
        _write_stdout(listing())
        return EXIT_OK
    check_ = lookup(code)
    if check_ is None:
        raise UsageError(
            f"unknown check code or name {code!r}; run 'embaudit explain' to list them"
        )
    _write_stdout(check_.explain())
    return EXIT_OK


@app.command("mcp")
def mcp_command() -> int:
    """Serve the audit to AI agents over the Model Context Protocol (stdio).

    Tools: check, compare_knn, gauge (each returns the JSON report) and explain. The server reads the files the agent names and writes none; it reads no configuration file. Needs the MCP SDK: pip install 'embaudit\\[mcp]'.

    Example client configuration:

      {"mcpServers": {"embaudit": {"command": "embaudit", "args": ["mcp"]}}}
    """  # noqa: E501
    from embaudit import mcp_server  # the SDK loads only for this command

    mcp_server.serve()
    return EXIT_OK


def _conclude(result: AnyReport | ProjectReport, report: ReportFlags) -> int:
    """Write the report and choose the exit code: 1 when the gate fails (unless --exit-zero)."""
    _emit(result, report)
    return EXIT_FINDINGS if result.failed() and not report.exit_zero else EXIT_OK


def _emit(report: AnyReport | ProjectReport, flags: ReportFlags) -> None:
    """Render the report to stdout or to ``--output``, and write the format's attachments."""
    renderer = FORMATS[flags.output_format.value]
    output = flags.output
    if output is not None:
        write_report(output, renderer.document(report, color=False, width=100))
    elif flags.quiet and renderer.human:
        each = report.reports if isinstance(report, ProjectReport) else [report]
        summaries = (one_line_summary(one, exit_zero=flags.exit_zero) for one in each)
        _write_stdout("".join(line + "\n" for line in summaries))
    else:
        color = renderer.human and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        width = max(80, shutil.get_terminal_size((100, 24)).columns)
        _write_stdout(renderer.document(report, color=color, width=width))
    for attachment in renderer.attachments(report, os.environ):
        try:
            with attachment.path.open("a", encoding="utf-8") as stream:
                stream.write(attachment.text)
        except OSError as exc:
            raise UsageError(f"{attachment.path}: cannot append ({exc.strerror or exc})") from None


def one_line_summary(report: AnyReport, *, exit_zero: bool = False) -> str:
    """``--quiet``: the outcome, the counts, and what failed the gate (the checks by code or
    name, and the verdict when its level fails it); with ``exit_zero``, that the gate would
    fail and the exit code is 0 all the same."""
    summary = report.summary
    counts = ", ".join(f"{summary[s]} {s}" for s in ("fail", "warn") if summary[s])
    outcome = "passed"
    if report.verdict is not None:
        outcome = report.verdict.level.value
    elif report.failed():
        outcome = "would fail" if exit_zero else "failed"
    line = f"{report.subject}: {outcome}{f' ({counts})' if counts else ''}"
    if not report.failed():
        return line
    failing = [
        f"{c.code or c.name} {c.status.value}" for c in report.checks if report.check_fails(c)
    ]
    if report.verdict is not None and report.verdict_fails():
        failing.append(f"verdict {report.verdict.level.value}")
    gate = f"{', '.join(failing)} (--fail-on {report.fail_on.value})"
    if exit_zero:
        return f"{line}; gate would fail on {gate}; exit 0 (--exit-zero)"
    return f"{line}; gate failed on {gate}"


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error of ours
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - silences the final flush
    except OSError as exc:
        raise UsageError(f"cannot write to stdout ({exc.strerror or exc})") from None


def check_output(path: Path | None) -> None:
    """Refuse an ``--output`` that cannot be written before any work starts."""
    if path is None:
        return
    target = path.resolve() if path.is_symlink() else path
    if target.is_dir():
        raise UsageError(f"--output {path}: is a directory")
    if not target.parent.is_dir():
        raise UsageError(f"--output {path}: no such directory {target.parent}")


def write_report(path: Path, text: str) -> None:
    """Write the report so that readers never see half of it
    (:func:`~embaudit.output_files.write_atomically`)."""
    write_text(path, text, "--output")


def one_line(text: str) -> str:
    """Escape control characters (a newline in a file name, say) so a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _usage_line(error: typer.TyperException) -> str:
    message = error.format_message().strip().replace("\n", " ").replace("Value error, ", "")
    return one_line(message[:1].upper() + message[1:])


def main(argv: list[str] | None = None) -> int:
    """Console entry point: returns (and, as a script, exits with) the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="embaudit", standalone_mode=False)
    except ParameterError as error:  # the library names the parameter, the CLI its flag
        named = error.named(error.flag) if error.flag else str(error)
        sys.stderr.write(f"embaudit: error: {one_line(named)}\n")
        return EXIT_USAGE
    except EmbauditError as error:
        sys.stderr.write(f"embaudit: error: {one_line(str(error))}\n")
        return EXIT_USAGE
    except typer.TyperException as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(error.format_message() + "\n")
        else:
            sys.stderr.write(f"embaudit: error: {_usage_line(error)}\n")
        return EXIT_USAGE
    except typer.Abort:
        sys.stderr.write("embaudit: aborted\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: say so, keep the details behind EMBAUDIT_DEBUG
        if os.environ.get("EMBAUDIT_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(
            f"embaudit: internal error: {type(error).__name__}: {one_line(str(error))} "
            "(set EMBAUDIT_DEBUG=1 for the traceback; please report it)\n"
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else EXIT_OK


def run() -> None:
    sys.exit(main())
