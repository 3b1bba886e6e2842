"""Mutation testing of the modules that decide a verdict or an exit code, with mutmut.

Slow (tens of minutes on two cores): not part of ``.ci/run``. From a clone, after the README's
test setup (``pip install -e ".[test]"``)::

    pip install -e ".[mutation]"          # mutmut, pinned in pyproject.toml
    nice -n 10 python benchmarks/mutation.py [--jobs 2] [--only gate,verdict] [--survivors]

Each group of modules below is mutated in its own throwaway copy of the repository's tracked
files (as they are in the working tree), and mutmut runs, for each mutant, the tests of that
group's test files that call the mutated function. The script prints, per group, the mutants
killed, survived, timed out and not reached by any test, and the score: killed (timeouts
included) over all mutants. ``--survivors`` prints the diff of every survivor.

Two things of mutmut's to know when reading the numbers:

* mutmut does not mutate decorated functions (other than static and class methods). The checks
  are registered by a decorator (``@register(...)``), so in its copy this script rewrites each
  ``@register(...) def f`` into ``def f`` followed by ``f = register(...)(f)``: the same
  registration, in the same order, but the check bodies are mutated too. Properties (such as
  ``GaugeReport.worst_overlap_at_k``) stay unmutated.
* Only the knn functions that decide an overlap are counted (``NeighborSearch.overlap``,
  ``_score``, ``_tolerance``): the rest of the knn package (the streamed search) has its own
  float64 and faiss references in tests/test_knn.py and tests/test_engines.py.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), grouped as this report
#: counts them.
KILLED = {1, 3, 37}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {33, 5}
SURVIVED = {0}


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the test files that may kill their mutants."""

    name: str
    modules: tuple[str, ...]  # mutmut's only_mutate globs
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # mutant name globs counted (empty: every mutant)


def _functions(module: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """mutmut's mutant names of module-level functions and methods (``Class.method``)."""
    return tuple(
        f"embaudit.{module}.xǁ{name.replace('.', 'ǁ')}__mutmut_*"
        if "." in name
        else f"embaudit.{module}.x_{name}__mutmut_*"
        for name in names
    )


GROUPS = (
    Group(
        "knn",
        ("embaudit/knn/search.py", "embaudit/knn/select.py"),
        ("tests/test_knn.py", "tests/test_checks.py", "tests/test_neighbor_references.py"),
        _functions("knn.search", ("NeighborSearch.overlap", "NeighborSearch._tolerance"))
        + _functions("knn.select", ("TopKSelection._score",)),
    ),
    Group(
        "gate",
        ("embaudit/reports.py",),
        ("tests/test_gate.py", "tests/test_gate_rule.py"),
        # The rule; the documents are held by the golden reports.
        _functions("reports", ("Gate.check_fails", "Gate.verdict_fails", "Gate.failed")),
    ),
    Group("verdict", ("embaudit/verdict.py",), ("tests/test_checks.py", "tests/test_gate_rule.py")),
    Group(
        "neighbors",
        # The neighbour checks: gauges (EA3xx), metrics (EA4xx), graphs (EA5xx).
        ("embaudit/checks/gauges.py", "embaudit/checks/metrics.py", "embaudit/checks/graphs.py"),
        (
            "tests/test_checks.py",
            "tests/test_diagnostics.py",
            "tests/test_neighbor_references.py",
            "tests/test_check_rules.py",
            "tests/test_graphs.py",
            "tests/test_query_file.py",
        ),
    ),
    Group(
        "gauge",
        ("embaudit/gauge.py",),
        ("tests/test_gauge.py", "tests/test_gauge_references.py", "tests/test_gauge_search.py"),
        # The worst overlap and its search, the prediction change, the balance; not the
        # streamed Gram matrix and the users' metric, which have their closed forms.
        _functions(
            "gauge",
            (
                "audit_side",
                "_Neighbours.__init__",
                "_Neighbours._cosines",
                "_Neighbours._top",
                "_Neighbours.gram",
                "_Neighbours.overlap",
                "_log_uniform",
                "_vertex",
                "_condition_curve",
                "_worst_gauge",
                "prediction_change",
                "balance",
                "_dead_columns",
                "ColumnNorms.fold",
                "ColumnNorms.log_norms",
            ),
        ),
    ),
)


def copy_tracked_files(target: Path, ref: str | None) -> None:
    """The repository's tracked files under ``target``: as they are at commit ``ref``, or
    (None) in the working tree."""
    if ref is not None:
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def undecorate_registrations(path: Path) -> None:
    """Rewrite ``@register(...) def f`` as ``def f`` then ``f = register(...)(f)`` (mutmut
    skips decorated functions; the registration and its order stay the same)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef) or len(node.decorator_list) != 1:
            continue
        decorator = node.decorator_list[0]
        call = decorator.func if isinstance(decorator, ast.Call) else None
        if not (isinstance(call, ast.Name) and call.id == "register"):
            continue
        text = ast.get_source_segment(source, decorator)
        assert text is not None and node.end_lineno is not None
        edits.append((decorator.lineno, node.lineno, node.end_lineno, node.name, text))
    for start, first, end, name, text in reversed(edits):
        body = lines[first - 1 : end]
        lines[start - 1 : end] = [*body, f"\n\n{name} = {text}({name})\n"]
    path.write_text("".join(lines), encoding="utf-8")


def mutmut_config(group: Group, tests: list[str], also_copy: list[str]) -> str:
    def toml_list(values: tuple[str, ...] | list[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["embaudit"]\n'
        f"only_mutate = {toml_list(group.modules)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
        # A mutant that loops (the worst-gauge search) is cut at 10 times its tests' CPU time
        # plus 100 s (mutmut's default: 30 times plus 30 s). Tighter limits cut survivors whose
        # tests merely run long (fixtures are not in the estimate) and count them as killed.
        "timeout_multiplier = 5.0\n"
        "timeout_constant = 10.0\n"
        f"also_copy = {toml_list(also_copy)}\n"
    )


def prepare(group: Group, workdir: Path, ref: str | None, drop: tuple[str, ...] = ()) -> Path:
    copy = workdir / group.name
    if copy.exists():
        shutil.rmtree(copy)
    copy_tracked_files(copy, ref)
    for test in drop:  # measuring the score without some tests
        (copy / test).unlink(missing_ok=True)
    for check_module in sorted((copy / "embaudit" / "checks").glob("*.py")):
        undecorate_registrations(check_module)
    tests = [test for test in group.tests if (copy / test).exists()]
    missing = sorted(set(group.tests) - set(tests))
    if missing:  # a checkout from before these test files existed
        print(f"{group.name}: no test file {', '.join(missing)}", flush=True)
    with (copy / "pyproject.toml").open("a", encoding="utf-8") as stream:
        # Everything but the package goes beside the mutated copy: fixtures, examples, the
        # files the tests read.
        also_copy = sorted(p.name for p in copy.iterdir() if p.name not in ("embaudit", "tests"))
        stream.write(mutmut_config(group, tests, also_copy))
    return copy


def mutmut() -> list[str]:
    executable = Path(sys.executable).parent / "mutmut"
    if not executable.exists():
        raise SystemExit(
            "mutmut is not installed: pip install -e '.[mutation]' (pinned in pyproject.toml)"
        )
    return [str(executable)]


def run_group(
    group: Group,
    workdir: Path,
    jobs: int,
    log: Path,
    ref: str | None,
    earlier: dict[str, int] | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, int]:
    """Exit code per counted mutant of ``group``. With ``earlier`` (the codes of a run on the
    same source with fewer tests), only its survivors and timeouts run again: tests that were
    added cannot bring a killed mutant back."""
    names = list(group.functions)
    if earlier is not None:
        # Timeouts run again too: a survivor whose tests run long can time out.
        names = sorted(n for n, c in earlier.items() if c not in KILLED)
        if not names:
            return dict(earlier)
    copy = prepare(group, workdir, ref, drop)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "CI": "true"}
    env.pop("PYTHONPATH", None)
    with log.open("a", encoding="utf-8") as stream:
        stream.write(f"\n===== {group.name} =====\n")
        stream.flush()
        done = subprocess.run(
            [*mutmut(), "run", "--max-children", str(jobs), *names],
            cwd=copy,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-30:])
        raise SystemExit(f"{group.name}: mutmut failed (exit {done.returncode}):\n{tail}")
    if earlier is None:
        return results(copy, group)
    rerun = results(copy, group)
    return {name: rerun[name] if name in names else code for name, code in earlier.items()}


def results(copy: Path, group: Group) -> dict[str, int]:
    """Exit code per counted mutant, from mutmut's meta files."""
    import fnmatch

    codes: dict[str, int] = {}
    for meta in (copy / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            if not group.functions or any(fnmatch.fnmatch(name, f) for f in group.functions):
                codes[name] = code
    return codes


def summarize(codes: dict[str, int]) -> dict[str, int]:
    counted = {
        "killed": sum(c in KILLED for c in codes.values()),
        "timeout": sum(c in TIMEOUT for c in codes.values()),
        "survived": sum(c in SURVIVED for c in codes.values()),
        "no tests": sum(c in NO_TESTS for c in codes.values()),
    }
    counted["other"] = len(codes) - sum(counted.values())
    counted["total"] = len(codes)
    return counted


def show(copy: Path, name: str) -> str:
    done = subprocess.run(
        [*mutmut(), "show", name], cwd=copy, capture_output=True, text=True, check=False
    )
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", help="comma-separated group names (first word): knn,gate,…")
    parser.add_argument("--workdir", type=Path, help="keep the copies here (default: a temp dir)")
    parser.add_argument("--ref", help="mutate and test this commit instead of the work tree")
    parser.add_argument(
        "--drop-tests", help="comma-separated test files to leave out (a score without them)"
    )
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument(
        "--rerun-survivors-of",
        type=Path,
        metavar="WORKDIR",
        help="the --workdir of an earlier run of the same source: run only its survivors "
        "(after adding tests; a killed mutant stays killed)",
    )
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    groups = [g for g in GROUPS if wanted is None or g.name in wanted]
    if wanted is not None and len(groups) != len(wanted):
        raise SystemExit(f"--only: groups are {', '.join(g.name for g in GROUPS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="embaudit-mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mutmut.log"
    print(f"mutmut {mutmut_version()}, copies and log in {workdir}", flush=True)
    rows = []
    for group in groups:
        started = time.perf_counter()
        earlier = None
        if args.rerun_survivors_of is not None:
            earlier = results(args.rerun_survivors_of / group.name, group)
        drop = tuple(args.drop_tests.split(",")) if args.drop_tests else ()
        codes = run_group(group, workdir, args.jobs, log, args.ref, earlier, drop)
        counted = summarize(codes)
        score = (counted["killed"] + counted["timeout"]) / max(counted["total"], 1)
        minutes = (time.perf_counter() - started) / 60
        rows.append((group.name, counted, score, minutes))
        print(
            f"{group.name:<20} {score:7.1%}  killed {counted['killed']}, timeout "
            f"{counted['timeout']}, survived {counted['survived']}, no tests "
            f"{counted['no tests']}, other {counted['other']} of {counted['total']} "
            f"({minutes:.1f} min)",
            flush=True,
        )
        survivors = sorted(n for n, c in codes.items() if c not in KILLED | TIMEOUT)
        for name in survivors:
            print(f"    survivor: {name}")
            if args.survivors:
                print(show(workdir / group.name, name))
    total = sum(r[1]["total"] for r in rows)
    killed = sum(r[1]["killed"] + r[1]["timeout"] for r in rows)
    print(f"{'all':<20} {killed / max(total, 1):7.1%}  {killed} of {total} mutants killed")
    return 0


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    sys.exit(main())
