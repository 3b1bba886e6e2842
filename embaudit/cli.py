"""The command line: parse, call the library, render with a format, choose the exit code."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from embaudit._version import __version__
from embaudit.audit import audit
from embaudit.checks import REGISTRY
from embaudit.errors import EmbauditError, UsageError
from embaudit.formats import FORMATS
from embaudit.model import Report, TrainedWith

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

OutputFormat = StrEnum("OutputFormat", {name.upper(): name for name in FORMATS})  # type: ignore[misc]

DEFAULT_FORMAT = OutputFormat("table")

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


@app.command()
def check(
    file: Annotated[
        Path,
        typer.Argument(
            help="Embeddings: .npy, .npz, .parquet, or a directory of parquet files.",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format", "-f", help="table for people; json for machines (schema_version 1)."
        ),
    ] = DEFAULT_FORMAT,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the report to this file (atomically) instead of stdout."
        ),
    ] = None,
    trained_with: Annotated[
        TrainedWith,
        typer.Option(
            "--trained-with",
            help="The objective the model was trained with; it decides how norm and gauge "
            "findings weigh in the verdict, never the measured values.",
        ),
    ] = TrainedWith.UNKNOWN,
    k: Annotated[
        int, typer.Option("-k", min=1, help="Neighbours per query in the kNN checks.")
    ] = 10,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of every random choice (samples, draws).")
    ] = 0,
    key: Annotated[
        str | None, typer.Option("--key", help="The array to read from an .npz archive.")
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="Parquet column holding the vectors (list or fixed_size_list of floats). "
            "Default: the only list column; without one, every float column is a dimension.",
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="Parquet column of row ids, used in findings. Default: a column named 'id'.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Table format: print only the verdict line. No progress."
        ),
    ] = False,
) -> int:
    """Audit one embedding file: defects, norms, geometry, and a verdict on cosine.

    Examples:

      embaudit check vectors.npy

      embaudit check items.npz --key item_factors --trained-with dot

      embaudit check parts/ --column embedding --id-column doc_id -f json -o report.json

    Exit codes: 0 nothing at the failing level; 1 a failing check or an untrustworthy verdict; 2 usage, configuration or input error; 3 internal error.
    """  # noqa: E501
    report = audit(
        file,
        k=k,
        seed=seed,
        trained_with=trained_with,
        key=key,
        column=column,
        id_column=id_column,
    )
    _emit(report, output_format.value, output, quiet)
    return EXIT_FINDINGS if report.failed() else EXIT_OK


@app.command()
def explain(
    code: Annotated[
        str | None,
        typer.Argument(help="A check code such as EA301. Omit it to list every check."),
    ] = None,
) -> int:
    """Explain a check: what it measures, why it matters, how to fix it, and its source.

    Examples:

      embaudit explain            # every code with a one-line summary

      embaudit explain EA301      # gauge sensitivity in full
    """
    if code is None:
        width = max(len(check.name) for check in REGISTRY.values())
        lines = [
            f"{check.code}  {check.name:<{width}}  {check.summary}"
            for check in sorted(REGISTRY.values(), key=lambda c: c.code)
        ]
        _write_stdout("\n".join(lines) + "\n")
        return EXIT_OK
    check_ = REGISTRY.get(code.strip().upper())
    if check_ is None:
        raise UsageError(f"unknown check code {code!r}; run 'embaudit explain' to list the codes")
    _write_stdout(check_.explain())
    return EXIT_OK


def _emit(report: Report, format_name: str, output: Path | None, quiet: bool) -> None:
    """Render the report to stdout or to ``output``."""
    renderer = FORMATS[format_name]
    if output is not None:
        write_report(output, renderer.render(report, color=False, width=100))
        return
    if quiet and renderer.human:
        summary = report.summary
        counts = ", ".join(f"{summary[s]} {s}" for s in ("fail", "warn") if summary[s])
        where = report.input.get("path") or "array"
        level = report.verdict.level.value
        _write_stdout(f"{where}: {level}{f' ({counts})' if counts else ''}\n")
        return
    color = renderer.human and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    _write_stdout(renderer.render(report, color=color, width=width))


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error of ours
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - silences the final flush
    except OSError as exc:
        raise UsageError(f"cannot write to stdout ({exc.strerror or exc})") from None


def write_report(path: Path, text: str) -> None:
    """Write the report so that readers never see half of it.

    A regular file (or a symlink to one) is replaced atomically through a temporary file in its
    directory, keeping its permissions; a device or FIFO is written in place.
    """
    target = path.resolve() if path.is_symlink() else path
    if target.is_dir():
        raise UsageError(f"--output {path}: is a directory")
    try:
        if target.exists() and not target.is_file():
            with target.open("w", encoding="utf-8") as stream:
                stream.write(text)
            return
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_mode()
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as handle:
            temporary = Path(handle.name)
            try:
                handle.write(text)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        try:
            temporary.chmod(mode)
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write ({exc.strerror or exc})") from None


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
