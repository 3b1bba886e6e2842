"""embaudit for AI agents: an MCP server over stdio (``embaudit mcp``, ``embaudit[mcp]``).

Four tools: ``check``, ``compare_knn`` and ``gauge`` return the JSON report of the command of
the same name (``schema_version`` 1) as structured output; ``explain`` returns what a check
measures and how to fix it, as ``embaudit explain`` prints it, with its fields structured.
Their arguments are the library's parameters (``trained_with``, ``k``, ``seed``, …), typed,
with the defaults and bounds declared in :mod:`embaudit.params`.

File access is the paths the caller names, read and never written: no tool writes a report or
an array, and the server reads no configuration file (every option is an argument). An error
the user can act on comes back as a tool error with the one-line message the command line
prints after ``embaudit: error:``, naming the argument or the file; anything else is a tool
error too, marked internal. The server itself keeps running.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at run time.

import json
from collections.abc import Callable
from typing import Annotated, Any

from embaudit.audit import audit, audit_gauge, compare_knn
from embaudit.checks import REGISTRY
from embaudit.checks.base import listing, lookup
from embaudit.errors import EmbauditError, UsageError
from embaudit.formats import FORMATS
from embaudit.measurement.sampling import Sampling
from embaudit.model import TrainedWith
from embaudit.options import CheckOptions, CompareOptions, GaugeOptions
from embaudit.params import Interval, Param, declared, flagged, with_declared
from embaudit.reports import AnyReport

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
    from pydantic import Field, ValidationError
except ImportError:
    raise UsageError("embaudit mcp needs the MCP SDK: pip install 'embaudit[mcp]'") from None

INSTRUCTIONS = (
    "embaudit audits embedding files (.npy, .npz, parquet) and says whether cosine similarity "
    "can be trusted on them, and whether an index returns the neighbours the model was trained "
    "for. Call check on a file before trusting its cosine neighbours; declare trained_with "
    f"({TrainedWith.declarable(', ')}) when it is known, since it decides the verdict. Read "
    "verdict.level (trustworthy, caution, untrustworthy), verdict.reasons and "
    "verdict.recommendations; explain(code) says what a check such as EA301 means. compare_knn "
    "compares cosine, L2 and inner-product neighbours of one file, or the neighbours of the "
    "same items in two exports; gauge audits the two towers of a dot-product model."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def _about(param: Param, text: str | None = None) -> str:
    """An argument's description from its declaration: its help, bounds and default."""
    parts = [text or param.help]
    if isinstance(param.rule, Interval):
        bounds = param.rule.describe()
        parts.append(f"{bounds[0].upper()}{bounds[1:]}.")
    default = getattr(param.default, "value", param.default)
    if default not in (None, (), {}):
        parts.append(f"Default: {default}.")
    return " ".join(parts)


#: What a tool leaves out of its options types' parameters: the server never writes a file
#: (write_items, rows_out), and reads the paths the caller names in this process, never joining
#: a cluster (engine, ray_address: the tools are closed-world).
LEFT_OUT = frozenset({"write_items", "rows_out", "engine", "ray_address"})


def _arguments(
    *kinds: Any, describe: dict[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A tool's arguments generated from the declarations of its options types, as the command
    line's options are (:func:`embaudit.params.with_declared`), passed as ``given``."""
    texts = describe or {}
    params = {name: p for name, p in flagged(*kinds).items() if name not in LEFT_OUT}
    return with_declared(
        params, lambda name, param: Field(description=_about(param, texts.get(name)))
    )


def _path(what: str) -> Any:
    return Field(
        description=f"{what}: a file or directory embaudit reads (.npy, .npz, parquet, ...), "
        "absolute or relative to the server's working directory."
    )


def _given(**arguments: Any) -> dict[str, Any]:
    """The arguments the caller gave (None: the library's default)."""
    return {name: value for name, value in arguments.items() if value is not None}


def _document(make_report: Callable[[], AnyReport]) -> dict[str, Any]:
    """The JSON report (as ``--format json`` writes it), or a tool error with the message."""
    try:
        report = make_report()
    except EmbauditError as error:
        raise ToolError(_one_line(str(error))) from None
    except Exception as error:  # a bug: say so, in one line, and keep serving
        raise ToolError(
            f"internal error: {type(error).__name__}: {_one_line(str(error))} (please report it)"
        ) from None
    document: dict[str, Any] = json.loads(FORMATS["json"].render(report))
    return document


def _one_line(text: str) -> str:
    """Control characters escaped (a newline in a file name), as the command line does."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# The tools ----------------------------------------------------------------------------------


@_arguments(
    CheckOptions,
    Sampling,
    describe={
        "fail_on": "What fails the gate: failing checks and an untrustworthy verdict (fail), or "
        "also warnings and a caution verdict (warn)."
    },
)
def check(
    path: Annotated[str, _path("The embedding file")],
    baseline: Annotated[
        str | None, Field(description="A previous export: adds the drift checks EA601-EA603.")
    ] = None,
    thresholds: Annotated[
        dict[str, float] | None,
        Field(description='A check\'s own threshold by code, e.g. {"EA301": 0.7}.'),
    ] = None,
    *,
    given: dict[str, Any],
) -> dict[str, Any]:
    """Audit one embedding file: defects, norms, geometry, neighbours, and a verdict on cosine
    (trustworthy, caution or untrustworthy) with its reasons and recommendations. Returns the
    JSON report of `embaudit check`."""
    options = _given(thresholds=thresholds, **given)
    sizes = {name: options.pop(name) for name in declared(Sampling) if name in options}

    def report() -> AnyReport:
        if sizes:
            options["sampling"] = Sampling(**sizes)
        return audit(path, baseline=baseline, **options)

    return _document(report)


@_arguments(
    CompareOptions,
    describe={"min_overlap": "Make it a gate: the report fails when an overlap@k is below this."},
)
def compare_knn_tool(
    path: Annotated[str, _path("The embedding file (OLD, when other is given)")],
    other: Annotated[
        str | None,
        Field(
            description="A second export (NEW): compare the neighbours of the same items, "
            "matched by id column, else by row order. Omit it to compare cosine, L2 and "
            "inner-product neighbours of one file."
        ),
    ] = None,
    *,
    given: dict[str, Any],
) -> dict[str, Any]:
    """Compare nearest neighbours: of cosine, L2 and inner product on one file, or of the same
    items in two exports (a retrain, a new version). Returns the JSON report of
    `embaudit compare-knn`."""
    options = _given(**given)
    return _document(lambda: compare_knn(path, other, **options))


@_arguments(GaugeOptions)
def gauge(
    items: Annotated[str, _path("The item tower (item factors, document embeddings)")],
    users: Annotated[str, _path("The user tower (user factors, query embeddings)")],
    *,
    given: dict[str, Any],
) -> dict[str, Any]:
    """Audit the gauge freedom of a two-tower dot-product model: how far the cosine neighbours
    move under diagonal rescalings (items·D, users·D⁻¹) that change no user-item score, and
    how balanced the towers are. Returns the JSON report of `embaudit gauge`."""
    options = _given(**given)
    return _document(lambda: audit_gauge(items, users, **options))


def explain(
    code: Annotated[
        str | None,
        Field(
            description="A check code such as EA301, or its name (gauge-sensitivity). Omit it "
            "to list every check."
        ),
    ] = None,
) -> Annotated[CallToolResult, dict[str, Any]]:
    """What a check measures, why it matters, how to fix it, its default threshold and source,
    as `embaudit explain CODE` prints it (Markdown); without a code, every check's code, name
    and one-line summary, as `embaudit explain` prints them. The same fields come structured:
    code, name, summary and explain, or checks."""
    if code is None:
        checks = sorted(REGISTRY.values(), key=lambda check: check.code)
        listed = [{"code": c.code, "name": c.name, "summary": c.summary} for c in checks]
        return _printed(listing(), {"checks": listed})
    found = lookup(code)
    if found is None:
        raise ToolError(
            f"unknown check code or name {code!r}; call explain without a code to list them"
        )
    text = found.explain()
    fields = {"code": found.code, "name": found.name, "summary": found.summary, "explain": text}
    return _printed(text, fields)


def _printed(text: str, fields: dict[str, Any]) -> CallToolResult:
    """A tool result whose text is what the command line prints, with ``fields`` structured."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=fields)


class _Server(MCPServer[Any]):
    """The SDK's server, with arguments that do not fit a tool's schema reported in one line
    naming each argument, as the library reports a bad value (the SDK's own message is
    pydantic's, over several lines)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if not isinstance(error.__cause__, ValidationError):
                raise
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}, "
                f"got {problem['input']!r}"
                for problem in error.__cause__.errors()
            )
            raise ToolError(f"Error executing tool {name}: {problems}") from error.__cause__


def build_server() -> MCPServer[Any]:
    """The server and its four tools."""
    from embaudit._version import __version__

    server = _Server(
        name="embaudit", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    tools: dict[str, tuple[Callable[..., Any], str]] = {
        "check": (check, "Audit an embedding file"),
        "compare_knn": (compare_knn_tool, "Compare nearest neighbours"),
        "gauge": (gauge, "Audit the gauge freedom of two towers"),
        "explain": (explain, "Explain a check"),
    }
    for name, (function, title) in tools.items():
        server.add_tool(
            function,
            name=name,
            title=title,
            description=" ".join((function.__doc__ or "").split()),
            annotations=READ_ONLY,
        )
    return server


def serve() -> None:
    """Serve the tools over stdio until the client closes the connection."""
    build_server().run("stdio")
