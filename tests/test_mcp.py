"""``embaudit mcp``: a real session with the MCP SDK's own client over stdio.

One server process serves the whole module: the session lists the tools, then makes every call
below in order, so the calls after an error also show that the server kept running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio  # after the skip: anyio comes with the SDK
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent

CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "dot": ("check", {"path": "fixtures/unnormalized.npy", "trained_with": "dot"}),
    "missing": ("check", {"path": "fixtures/missing.npy"}),
    "bad k": ("check", {"path": "fixtures/sphere.npy", "k": 0}),
    "bad objective": ("check", {"path": "fixtures/sphere.npy", "trained_with": "sphere"}),
    "sphere": (
        "check",
        {"path": "fixtures/sphere.npy", "trained_with": "cosine", "queries": 100},
    ),
    "metrics": ("compare_knn", {"path": "fixtures/unnormalized.npy", "queries": 100}),
    "files": (
        "compare_knn",
        {
            "path": "fixtures/sphere.npy",
            "other": "fixtures/unnormalized.npy",
            "queries": 100,
            "min_overlap": 0.9,
        },
    ),
    "same towers": ("gauge", {"items": "fixtures/sphere.npy", "users": "fixtures/sphere.npy"}),
    "explain": ("explain", {"code": "gauge-sensitivity"}),
    "explain all": ("explain", {}),
    "explain unknown": ("explain", {"code": "EA999"}),
}


async def _session() -> tuple[list[Any], dict[str, Any]]:
    server = StdioServerParameters(command=sys.executable, args=["-m", "embaudit", "mcp"], cwd=ROOT)
    with anyio.fail_after(300):
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = {}
            for label, (tool, arguments) in CALLS.items():
                results[label] = await session.call_tool(tool, arguments)
    return tools, results


@pytest.fixture(scope="module")
def session() -> tuple[list[Any], dict[str, Any]]:
    return anyio.run(_session)


def _text(result: Any) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


def _error(result: Any, tool: str) -> str:
    """A tool error's message, after the prefix the SDK gives every tool error."""
    assert result.is_error
    prefix = f"Error executing tool {tool}: "
    message = _text(result)
    assert message.startswith(prefix), message
    assert "\n" not in message
    return message.removeprefix(prefix)


def test_the_server_lists_four_read_only_tools_with_typed_arguments(session):
    tools = {tool.name: tool for tool in session[0]}
    assert set(tools) == {"check", "compare_knn", "gauge", "explain"}
    check = tools["check"]
    properties = check.input_schema["properties"]
    assert check.input_schema["required"] == ["path"]
    assert properties["k"]["anyOf"][0]["type"] == "integer"
    assert "[1, 1000]" in properties["k"]["description"]
    assert "Default: 10." in properties["k"]["description"]
    objective = check.input_schema["$defs"]["TrainedWith"]["enum"]
    assert {"cosine", "dot", "l2", "unknown"} <= set(objective)
    assert check.output_schema["type"] == "object"
    assert all(tool.annotations.read_only_hint for tool in tools.values())
    assert set(tools["gauge"].input_schema["required"]) == {"items", "users"}


def test_check_of_a_dot_trained_export_returns_the_untrustworthy_json_report(session):
    result = session[1]["dot"]
    assert not result.is_error, _text(result)
    report = result.structured_content
    assert report["schema_version"] == 1
    assert report["verdict"]["level"] == "untrustworthy"
    assert report["params"]["trained_with"] == "dot"
    assert {"EA301", "EA402"} <= {c["code"] for c in report["checks"] if c["status"] == "fail"}
    assert report["input"]["path"] == "fixtures/unnormalized.npy"


def test_check_of_a_sphere_trained_export_is_trustworthy(session):
    report = session[1]["sphere"].structured_content
    assert report["verdict"]["level"] == "trustworthy"
    assert report["params"]["queries"] == 100


def test_a_missing_file_is_a_tool_error_with_the_clis_message(session, cli, monkeypatch):
    message = _error(session[1]["missing"], "check")
    assert message.startswith("fixtures/missing.npy: ")
    monkeypatch.chdir(ROOT)
    assert cli("check", "fixtures/missing.npy").stderr == f"embaudit: error: {message}\n"


def test_a_bad_argument_is_a_tool_error_naming_the_argument(session):
    message = _error(session[1]["bad k"], "check")
    assert message == "k must be an integer in [1, 1000], got 0"


def test_a_value_outside_the_schema_is_a_one_line_tool_error_naming_the_argument(session):
    message = _error(session[1]["bad objective"], "check")
    assert message.startswith("trained_with: Input should be 'cosine', 'dot'")
    assert message.endswith(", got 'sphere'")


def test_compare_knn_returns_the_comparison_reports(session):
    metrics = session[1]["metrics"].structured_content
    assert metrics["mode"] == "metrics"
    assert {(p["a"], p["b"]) for p in metrics["pairs"]} >= {("cosine", "l2")}
    files = session[1]["files"].structured_content
    assert files["mode"] == "files"
    assert files["summary"]["fail"] == 0


def test_gauge_refuses_a_tower_compared_with_itself(session):
    message = _error(session[1]["same towers"], "gauge")
    assert message.startswith("the item and user towers are the same array")


def test_explain_returns_a_checks_documentation_and_the_list(session):
    explained = session[1]["explain"].structured_content
    assert explained["code"] == "EA301"
    assert "## How to fix it" in explained["explain"]
    listed = session[1]["explain all"].structured_content["checks"]
    assert {"code": "EA001", "name": "non-finite"}.items() <= listed[0].items()


def test_explain_reads_as_the_command_line_prints_it(cli, session):
    """The text an agent reads is the command's output, not the structured fields as JSON."""
    assert _text(session[1]["explain"]) == cli("explain", "gauge-sensitivity").stdout
    assert _text(session[1]["explain all"]) == cli("explain").stdout
    unknown = _error(session[1]["explain unknown"], "explain")
    assert unknown.startswith("unknown check code or name 'EA999'")


def test_the_other_commands_do_not_import_the_sdk():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, embaudit.cli; print('mcp' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_without_the_sdk_the_command_exits_2_with_the_install_command(cli, monkeypatch):
    monkeypatch.delitem(sys.modules, "embaudit.mcp_server", raising=False)
    for name in [m for m in sys.modules if m == "mcp" or m.startswith("mcp.")] or ["mcp"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = cli("mcp")
    assert result.code == 2
    assert "pip install 'embaudit[mcp]'" in result.stderr
