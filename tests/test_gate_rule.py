"""The gate rule and the verdict, each in both directions, on reports built by hand.

The verdict and the check statuses are constructed, so one can never mask the other: a
trustworthy verdict with a single warning must fail a ``warn`` gate and pass a ``fail`` gate; a
caution verdict with only passing checks must do the same; and so on for every status, every
level, both ``--fail-on`` values and every declared objective. End-to-end tests then hold the
same facts through the command line: the exit code, ``--exit-zero``, the internal-error path
and ``--output`` keeping an earlier report when a write fails.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embaudit import audit
from embaudit.checks import REGISTRY
from embaudit.cli import (
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    OutputFormat,
    ReportFlags,
    _conclude,
)
from embaudit.model import Action, Advice, CheckResult, Level, Status, TrainedWith, Verdict
from embaudit.reports import Gate
from embaudit.verdict import decide

#: The action of each recommendation the tests give as words.
ACTIONS = {
    "Normalize": Action.NORMALIZE,
    "Deduplicate": Action.DEDUPLICATE,
    "Drop dimensions": Action.DEAD_DIMENSIONS,
    "Use the dot": Action.METRIC,
    "Skipped advice": Action.NEAR_DUPLICATES,
}

#: Whether a check of each status fails the gate, per --fail-on.
CHECK_FAILS = {
    Status.FAIL: {Status.PASS: False, Status.SKIP: False, Status.WARN: False, Status.FAIL: True},
    Status.WARN: {Status.PASS: False, Status.SKIP: False, Status.WARN: True, Status.FAIL: True},
}
#: Whether a verdict of each level fails the gate, per --fail-on.
VERDICT_FAILS = {
    Status.FAIL: {Level.TRUSTWORTHY: False, Level.CAUTION: False, Level.UNTRUSTWORTHY: True},
    Status.WARN: {Level.TRUSTWORTHY: False, Level.CAUTION: True, Level.UNTRUSTWORTHY: True},
}


def result(
    code: str,
    status: Status,
    impact: Level | None = None,
    recommendation: str | Advice | None = None,
    name: str = "",
) -> CheckResult:
    """A check result; a recommendation given as words is its own action."""
    if isinstance(recommendation, str):
        recommendation = Advice(recommendation, (ACTIONS[recommendation],))
    return CheckResult(
        code=code,
        name=name or f"check-{code.lower()}",
        status=status,
        value=0.5,
        threshold=0.8,
        message=f"{code} says {status.value}",
        metrics={},
        impact=impact,
        recommendation=recommendation,
    )


def verdict(level: Level, declared: bool = True) -> Verdict:
    return Verdict(level, [f"{level.value} by construction"], [], declared)


def gate(checks: list[CheckResult], level: Level | None, fail_on: Status = Status.FAIL) -> Gate:
    return Gate(
        tool={"name": "embaudit"},
        params={},
        checks=checks,
        fail_on=fail_on,
        verdict=None if level is None else verdict(level),
    )


# The gate rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_on", [Status.FAIL, Status.WARN])
@pytest.mark.parametrize("status", list(Status))
def test_one_check_decides_the_gate_under_a_trustworthy_verdict(fail_on, status):
    checks = [result("EA201", Status.PASS), result("EA301", status), result("EA401", Status.PASS)]
    report = gate(checks, Level.TRUSTWORTHY, fail_on)
    assert report.failed() is CHECK_FAILS[fail_on][status]
    assert report.check_fails(checks[1]) is CHECK_FAILS[fail_on][status]
    assert report.verdict_fails() is False


@pytest.mark.parametrize("fail_on", [Status.FAIL, Status.WARN])
@pytest.mark.parametrize("level", list(Level))
def test_the_verdict_decides_the_gate_when_every_check_passes(fail_on, level):
    report = gate([result("EA201", Status.PASS), result("EA302", Status.SKIP)], level, fail_on)
    assert report.failed() is VERDICT_FAILS[fail_on][level]
    assert report.verdict_fails() is VERDICT_FAILS[fail_on][level]


@pytest.mark.parametrize("fail_on", [Status.FAIL, Status.WARN])
@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("level", list(Level))
def test_the_gate_fails_when_either_the_checks_or_the_verdict_fail_it(fail_on, status, level):
    report = gate([result("EA101", status)], level, fail_on)
    expected = CHECK_FAILS[fail_on][status] or VERDICT_FAILS[fail_on][level]
    assert report.failed() is expected


@pytest.mark.parametrize("status", list(Status))
def test_a_report_without_a_verdict_is_gated_by_its_checks_alone(status):
    for fail_on in (Status.FAIL, Status.WARN):
        report = gate([result("EA301", status)], None, fail_on)
        assert report.verdict_fails() is False
        assert report.failed() is CHECK_FAILS[fail_on][status]
    assert gate([], None).failed() is False


def test_an_explicit_fail_on_overrides_the_reports_own():
    warned = gate([result("EA003", Status.WARN)], Level.TRUSTWORTHY, Status.FAIL)
    assert warned.failed() is False
    assert warned.failed(Status.WARN) is True
    assert warned.check_fails(warned.checks[0], Status.WARN) is True
    strict = gate([result("EA003", Status.WARN)], Level.CAUTION, Status.WARN)
    assert strict.failed() is True
    assert strict.failed(Status.FAIL) is False
    assert strict.verdict_fails(Status.FAIL) is False
    assert strict.check_fails(strict.checks[0], Status.FAIL) is False


def test_every_check_is_looked_at_not_only_the_first_or_last():
    checks = [result(f"EA{100 + i}", Status.PASS) for i in range(5)]
    for position in range(5):
        mixed = list(checks)
        mixed[position] = result("EA999", Status.FAIL)
        assert gate(mixed, Level.TRUSTWORTHY).failed() is True


def test_summary_counts_every_status():
    statuses = [Status.PASS, Status.PASS, Status.WARN, Status.FAIL, Status.SKIP, Status.SKIP]
    report = gate([result(f"EA{i}", s) for i, s in enumerate(statuses)], Level.CAUTION)
    assert report.summary == {"pass": 2, "warn": 1, "fail": 1, "skip": 2}
    document = report._document({"head": 1}, {"body": 2})
    assert document["summary"] == report.summary
    assert document["schema_version"] == 1 and document["head"] == 1 and document["body"] == 2
    assert [c["code"] for c in document["checks"]] == [f"EA{i}" for i in range(6)]
    assert document["tool"] == {"name": "embaudit"} and document["timings"] == {}


# The exit code: every objective, both gates, --exit-zero ------------------------------------


@pytest.fixture(scope="module")
def real_report():
    """A real check report (its verdict and checks are replaced below)."""
    x = np.random.default_rng(0).standard_normal((60, 6))
    return audit(x, select="EA1,EA2")


@pytest.mark.parametrize("trained_with", list(TrainedWith))
@pytest.mark.parametrize("fail_on", [Status.FAIL, Status.WARN])
def test_exit_code_follows_the_gate_for_every_objective(real_report, trained_with, fail_on):
    options = dataclasses.replace(real_report.options, trained_with=trained_with)
    cases = [
        (Level.TRUSTWORTHY, Status.PASS),
        (Level.TRUSTWORTHY, Status.WARN),
        (Level.TRUSTWORTHY, Status.FAIL),
        (Level.CAUTION, Status.PASS),
        (Level.UNTRUSTWORTHY, Status.PASS),
    ]
    for level, status in cases:
        report = dataclasses.replace(
            real_report,
            options=options,
            checks=[result("EA201", Status.PASS), result("EA003", status)],
            verdict=verdict(level, declared=trained_with != TrainedWith.UNKNOWN),
            fail_on=fail_on,
        )
        fails = CHECK_FAILS[fail_on][status] or VERDICT_FAILS[fail_on][level]
        assert _conclude(report, ReportFlags(OutputFormat("json"), quiet=True)) == (
            EXIT_FINDINGS if fails else EXIT_OK
        ), (level, status)
        exit_zero = ReportFlags(OutputFormat("json"), quiet=True, exit_zero=True)
        assert _conclude(report, exit_zero) == EXIT_OK  # --exit-zero


def _duplicated_sphere(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[10] = x[0]  # one exact duplicate: EA003 warns, cosine is not wrong for it
    path = tmp_path / "duplicated.npy"
    np.save(path, x)
    return path


def test_a_trustworthy_verdict_with_one_warning_fails_only_the_warn_gate(cli, tmp_path):
    path = _duplicated_sphere(tmp_path)
    report = cli("check", path, "--trained-with", "cosine", "-f", "json", "--exit-zero").json()
    assert report["verdict"]["level"] == "trustworthy"
    warned = [c["code"] for c in report["checks"] if c["status"] == "warn"]
    assert "EA003" in warned
    assert all(c["status"] in ("pass", "warn") for c in report["checks"])
    assert cli("check", path, "--trained-with", "cosine", "-q").code == EXIT_OK
    failing = cli("check", path, "--trained-with", "cosine", "-q", "--fail-on", "warn")
    assert failing.code == EXIT_FINDINGS
    assert "EA003 warn" in failing.stdout and "verdict" not in failing.stdout.split(";")[1]
    exempt = cli("check", path, "--trained-with", "cosine", "--fail-on", "warn", "--exit-zero")
    assert exempt.code == EXIT_OK


# The verdict --------------------------------------------------------------------------------


GEOMETRY = result("EA201", Status.PASS)  # a geometry check that ran and found nothing


@pytest.mark.parametrize("trained_with", list(TrainedWith))
def test_no_finding_is_trustworthy_and_says_the_objective(trained_with):
    decided = decide([result("EA001", Status.PASS), GEOMETRY], trained_with)
    assert decided.level == Level.TRUSTWORTHY
    assert len(decided.reasons) == 1
    assert decided.reasons[0].startswith("no check found a problem")
    if trained_with == TrainedWith.UNKNOWN:
        assert decided.reasons[0].endswith("on this data")
        assert decided.objective_declared is False
    else:
        assert decided.reasons[0].endswith(f"on this data ({trained_with}-trained)")
        assert decided.objective_declared is True
    assert decided.recommendations == []


@pytest.mark.parametrize("impacts", [(Level.CAUTION,), (Level.CAUTION, Level.UNTRUSTWORTHY)])
def test_the_verdict_is_the_highest_impact(impacts):
    checks = [GEOMETRY]
    checks += [result(f"EA30{i}", Status.WARN, impact) for i, impact in enumerate(impacts)]
    checks.append(result("EA003", Status.WARN))  # a warning without impact
    assert decide(checks, TrainedWith.DOT).level == max(impacts, key=lambda level: level.rank)


def test_a_trustworthy_impact_is_a_driver_that_lowers_nothing():
    checks = [GEOMETRY, result("EA101", Status.WARN, Level.TRUSTWORTHY, "Normalize")]
    decided = decide(checks, TrainedWith.COSINE)
    assert decided.level == Level.TRUSTWORTHY
    assert decided.reasons == ["EA101 check-ea101: EA101 says warn"]
    assert decided.recommendations == ["Normalize"]


def test_reasons_name_the_drivers_most_severe_first_then_by_code():
    checks = [
        GEOMETRY,
        result("EA402", Status.WARN, Level.CAUTION),
        result("EA002", Status.FAIL, Level.UNTRUSTWORTHY),
        result("EA301", Status.WARN, Level.CAUTION),
        result("EA001", Status.FAIL, Level.UNTRUSTWORTHY),
        result("EA003", Status.WARN),
    ]
    decided = decide(checks, TrainedWith.DOT)
    assert decided.level == Level.UNTRUSTWORTHY
    assert [reason.split()[0] for reason in decided.reasons] == ["EA001", "EA002", "EA301", "EA402"]
    assert decided.reasons[0] == "EA001 check-ea001: EA001 says fail"


def test_an_undeclared_objective_with_a_caution_says_which_declaration_settles_it():
    checks = [GEOMETRY, result("EA301", Status.WARN, Level.CAUTION)]
    undeclared = decide(checks, TrainedWith.UNKNOWN)
    assert undeclared.level == Level.CAUTION
    assert undeclared.reasons[-1] == (
        "declaring the training objective (--trained-with cosine|dot|dot-regularized|l2) would "
        "settle whether "
        "these findings matter"
    )
    assert len(undeclared.reasons) == 2
    for trained_with in (TrainedWith.COSINE, TrainedWith.DOT, TrainedWith.L2):
        declared = decide(checks, trained_with)
        assert not any("declaring" in reason for reason in declared.reasons)
    untrustworthy = [*checks, result("EA002", Status.FAIL, Level.UNTRUSTWORTHY)]
    assert not any("declaring" in r for r in decide(untrustworthy, TrainedWith.UNKNOWN).reasons)


def test_recommendations_gather_every_non_passing_action_once_drivers_first():
    checks = [
        result("EA003", Status.WARN, None, "Deduplicate"),
        result("EA004", Status.PASS, None, "Drop dimensions"),  # passing: not recommended
        GEOMETRY,
        result("EA402", Status.FAIL, Level.UNTRUSTWORTHY, "Use the dot"),
        result("EA301", Status.WARN, Level.CAUTION, "Use the dot"),  # said once
        result("EA005", Status.SKIP, None, "Skipped advice"),
        result("EA204", Status.WARN, None, None),
    ]
    decided = decide(checks, TrainedWith.DOT)
    assert decided.recommendations == ["Use the dot", "Deduplicate", "Skipped advice"]


SEARCH_8 = Advice("Search IVF64,Flat with nprobe = 8", (Action.SEARCH,), specificity=1)
SEARCH_8_RECALL = Advice(
    "Search IVF64,Flat with nprobe = 8 (recall 0.9 or more)", (Action.SEARCH,), specificity=1
)
NORMALIZE_FOR_INDEX = Advice(
    "Normalize the vectors before indexing with ip (or build HNSW16 with --index-metric cosine)",
    (Action.NORMALIZE,),
    specificity=2,
)
NORMALIZE_THEN_SEARCH = Advice(
    "Normalize the vectors before indexing with ip, then search with efSearch = 32",
    (Action.NORMALIZE, Action.SEARCH),
    specificity=2,
)


def test_one_recommendation_per_action_the_first_given_at_equal_specificity():
    checks = [
        GEOMETRY,
        result("EA702", Status.FAIL, Level.UNTRUSTWORTHY, SEARCH_8),
        result("EA701", Status.WARN, None, SEARCH_8_RECALL),
    ]
    assert decide(checks, TrainedWith.COSINE).recommendations == [SEARCH_8.text]


def test_the_most_specific_recommendation_of_an_action_is_kept_in_the_place_of_the_first():
    checks = [
        GEOMETRY,
        result("EA301", Status.WARN, Level.CAUTION, "Normalize"),
        result("EA401", Status.WARN, Level.CAUTION, "Deduplicate"),
        result("EA702", Status.WARN, None, NORMALIZE_FOR_INDEX),
    ]
    decided = decide(checks, TrainedWith.UNKNOWN)
    assert decided.recommendations == [NORMALIZE_FOR_INDEX.text, "Deduplicate"]


def test_advice_covering_two_actions_replaces_the_advice_for_each():
    checks = [
        GEOMETRY,
        result("EA401", Status.WARN, Level.CAUTION, "Normalize"),
        result("EA702", Status.FAIL, Level.UNTRUSTWORTHY, NORMALIZE_THEN_SEARCH),
        result("EA701", Status.WARN, None, SEARCH_8_RECALL),
        result("EA003", Status.WARN, None, "Deduplicate"),
    ]
    decided = decide(checks, TrainedWith.COSINE)
    assert decided.recommendations == [NORMALIZE_THEN_SEARCH.text, "Deduplicate"]


def test_a_passing_driver_recommends_nothing():
    checks = [GEOMETRY, result("EA101", Status.PASS, Level.CAUTION, "Normalize")]
    decided = decide(checks, TrainedWith.UNKNOWN)
    assert decided.level == Level.CAUTION
    assert decided.recommendations == []


def test_geometry_checks_that_all_skipped_do_not_make_a_trustworthy_verdict():
    skipped = [
        result("EA001", Status.PASS),
        result("EA201", Status.SKIP),
        result("EA301", Status.SKIP),
        result("EA401", Status.SKIP),
    ]
    decided = decide(skipped, TrainedWith.COSINE)
    assert decided.level == Level.CAUTION
    assert decided.reasons == [
        "too few finite, non-zero rows to measure the geometry: every cosine check skipped"
    ]
    # One geometry check that ran is enough to judge the rest.
    ran = [*skipped[:3], result("EA401", Status.PASS)]
    assert decide(ran, TrainedWith.COSINE).level == Level.TRUSTWORTHY
    # And a finding above caution is not lowered by it.
    failed = [*skipped, result("EA002", Status.FAIL, Level.UNTRUSTWORTHY)]
    assert decide(failed, TrainedWith.COSINE).level == Level.UNTRUSTWORTHY


NOTHING_ASSESSED = (
    "nothing about cosine was assessed: the selection runs no geometry or neighbour check "
    "(EA2xx-EA5xx)"
)


@pytest.mark.parametrize("trained_with", list(TrainedWith))
def test_a_selection_without_geometry_checks_is_never_trustworthy(trained_with):
    clean = [result("EA001", Status.PASS), result("EA101", Status.PASS)]
    decided = decide(clean, trained_with)
    assert decided.level == Level.CAUTION
    assert decided.reasons[0] == NOTHING_ASSESSED
    # A finding above caution stays above it, with the same reason after its own.
    failed = [*clean, result("EA002", Status.FAIL, Level.UNTRUSTWORTHY)]
    decided = decide(failed, trained_with)
    assert decided.level == Level.UNTRUSTWORTHY
    assert decided.reasons == ["EA002 check-ea002: EA002 says fail", NOTHING_ASSESSED]
    # One geometry check, even passing, lifts it.
    assert decide([*clean, GEOMETRY], trained_with).level == Level.TRUSTWORTHY


# Internal errors and --output ----------------------------------------------------------------


def test_a_bug_inside_a_check_exits_3_with_one_line_naming_it(cli, fixtures, monkeypatch):
    """A check that raises (a bug, not bad input) runs through the real pipeline: exit 3, one
    line naming the exception, no traceback unless EMBAUDIT_DEBUG is set."""

    def broken(data, threshold):
        return 1 / 0

    monkeypatch.setitem(REGISTRY, "EA201", dataclasses.replace(REGISTRY["EA201"], measure=broken))
    monkeypatch.delenv("EMBAUDIT_DEBUG", raising=False)
    result_ = cli("check", fixtures / "sphere.npy", "-f", "json")
    assert result_.code == EXIT_INTERNAL
    assert result_.stdout == ""
    assert result_.stderr == (
        "embaudit: internal error: ZeroDivisionError: division by zero (set EMBAUDIT_DEBUG=1 "
        "for the traceback; please report it)\n"
    )
    monkeypatch.setenv("EMBAUDIT_DEBUG", "1")
    debug = cli("check", fixtures / "sphere.npy", "-f", "json")
    assert debug.code == EXIT_INTERNAL
    assert "Traceback" in debug.stderr and "1 / 0" in debug.stderr


def test_an_internal_error_message_stays_on_one_line(cli, fixtures, monkeypatch):
    def broken(data, threshold):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setitem(REGISTRY, "EA201", dataclasses.replace(REGISTRY["EA201"], measure=broken))
    monkeypatch.delenv("EMBAUDIT_DEBUG", raising=False)
    result_ = cli("check", fixtures / "sphere.npy")
    assert result_.code == EXIT_INTERNAL
    assert result_.stderr.count("\n") == 1
    assert "RuntimeError: first line\\nsecond line" in result_.stderr


def _with_file_size_limit(limit: int) -> list[str]:
    """``python -m embaudit`` whose process first limits the size of the files it writes: a
    write past the limit fails with EFBIG (the signal that would kill it is ignored), as on a
    full disk or a quota. Set in the child itself, not by a preexec_fn: that would fork this
    process, and lance (imported by other tests) warns on a fork."""
    prelude = (
        "import resource, runpy, signal, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv[0] = 'embaudit'; "
        "runpy.run_module('embaudit', run_name='__main__')"
    )
    return [sys.executable, "-c", prelude]


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_output_keeps_the_earlier_report_when_the_write_fails(fixtures, tmp_path, fmt):
    """A real failed write (a file size limit in a child process): exit 2 naming --output, the
    earlier report untouched, no temporary file left behind."""
    target = tmp_path / f"report.{fmt}"
    earlier = "an earlier report\n"
    target.write_text(earlier)
    arguments = ["check", str(fixtures / "sphere.npy"), "-f", fmt, "-o", str(target)]
    done = subprocess.run(
        [*_with_file_size_limit(200), *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"embaudit: error: --output {target}: cannot write (")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert target.read_text() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    # Without the limit the same command replaces it.
    command = [sys.executable, "-m", "embaudit", *arguments]
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode in (0, 1), again.stderr
    assert target.read_text() != earlier and "EA001" in target.read_text()
