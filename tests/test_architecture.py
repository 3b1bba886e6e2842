"""The shape of the package: modules a reader holds in mind, data flowing one way.

source → statistics and kNN (measurement) → checks → verdict → reports → formats; the command
line and the API on top. docs/architecture.md draws the picture these tests keep true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "embaudit"
MAX_MODULE_LINES = 600
MAX_BODY_LINES = 60


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules ``name`` imports anywhere in it (in functions and under
    TYPE_CHECKING too): ``from embaudit import geometry`` is an import of the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}"
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_no_module_imports_itself_back_through_others() -> None:
    """No import circle, counting imports inside functions and for type checking alone."""
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done
    circles = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                circles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                walk(imported, [*path, imported])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert circles == []


#: Layers low to high (each a module or a package): a module imports only from its own layer or
#: below. Modules not listed (the package's root modules of shared vocabulary) sit below all.
LAYERS = [
    {"embaudit.sources", "embaudit.stats", "embaudit.geometry", "embaudit.knn", "embaudit.draw"},
    {
        "embaudit.engines",
        "embaudit.map_step",
        "embaudit.index",
        "embaudit.measurement",
        "embaudit.config_file",
    },
    {"embaudit.options", "embaudit.compare", "embaudit.gauge"},
    {"embaudit.checks", "embaudit.verdict"},
    {"embaudit.pipelines", "embaudit.reports"},
    {"embaudit.formats", "embaudit.plots"},
    {"embaudit.audit"},
    {"embaudit.cli", "embaudit.mcp_server", "embaudit._action", "embaudit.__main__", "embaudit"},
]


def _layer(module: str) -> int:
    for number, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(f"{top}.") for top in layer - {"embaudit"}):
            return number
        if module in layer:
            return number
    return -1


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_nothing_above_its_layer(module: str) -> None:
    above = {imported for imported in GRAPH[module] if _layer(imported) > _layer(module)}
    assert above == set(), f"{module} (layer {_layer(module)}) imports upwards"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_fits_in_a_readers_head(module: str) -> None:
    source = MODULES[module].read_text()
    assert source.count("\n") <= MAX_MODULE_LINES
    long = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            docstring = isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0].value, "value", None), str
            )
            first = body[1] if docstring and len(body) > 1 else body[0]
            length = (node.end_lineno or node.lineno) - first.lineno + 1
            if length > MAX_BODY_LINES:
                long[node.name] = length
    assert long == {}, f"function bodies over {MAX_BODY_LINES} lines"


def test_the_layers_name_modules_that_exist() -> None:
    """A renamed module must not leave the layering test checking nothing."""
    for layer in LAYERS:
        for top in layer:
            assert top in MODULES, top


def test_each_check_lives_in_the_module_of_its_family() -> None:
    """One module per family (the hundreds of the code), each check's docs next to it."""
    from embaudit.checks import REGISTRY
    from embaudit.codes import FAMILIES

    modules = {}
    for code, check in REGISTRY.items():
        modules.setdefault(code[:3], set()).add(check.measure.__module__)
    assert set(modules) == set(FAMILIES)
    assert all(len(found) == 1 for found in modules.values()), modules
    assert len({next(iter(found)) for found in modules.values()}) == len(FAMILIES)


def test_the_readers_that_stand_on_pyarrow_load_it_only_for_their_inputs(tmp_path: Path) -> None:
    """pyarrow is a fifth of the command line's start: an .npy audit loads none of it (the
    parquet, text, directory, URI and Lance readers load it when an input of theirs is
    opened), and a parquet file's does."""
    import subprocess
    import sys

    import numpy as np

    np.save(tmp_path / "rows.npy", np.random.default_rng(0).standard_normal((300, 8)))
    probe = (
        "import sys, embaudit, embaudit.cli\n"
        "from embaudit.sources import open_source\n"
        "embaudit.audit(open_source(sys.argv[1]))\n"
        "print('pyarrow' in sys.modules)\n"
    )
    loaded = []
    for name in ("rows.npy", "rows.parquet"):
        if name.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = np.load(tmp_path / "rows.npy").astype(np.float32)
            pq.write_table(pa.table({"v": list(rows)}), tmp_path / name)
        done = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / name)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        loaded.append(done.stdout.split()[-1])
    assert loaded == ["False", "True"]
