"""``--format junit``: one testcase per check, a failure element per failing check.

JUnit XML as GitLab, Jenkins and most CI systems read it: ``testsuites > testsuite > testcase``
with ``failure`` (checks at the failing level), ``skipped`` (checks that could not run), and the
verdict as one more testcase. Warnings below the failing level pass, with the message in
``system-out``. A project (``check`` with no path) is one testsuite per export.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from embaudit.formats.base import Format, label
from embaudit.model import Status
from embaudit.reports import AnyReport, ProjectReport

#: The counts a testsuite (and the testsuites around them) carries.
_COUNTS = ("tests", "failures", "errors", "skipped")


def _check_case(report: AnyReport, check_index: int) -> tuple[ET.Element, str | None]:
    """The testcase of one check, and what it counts as (failures, skipped or None)."""
    check = report.checks[check_index]
    case = ET.Element("testcase", classname=f"embaudit.{report.kind}", name=label(check), time="0")
    if report.check_fails(check):
        failure = ET.SubElement(case, "failure", message=check.message, type=check.status.value)
        failure.text = f"{label(check)}: {check.status.value}: {check.message}"
        return case, "failures"
    if check.status == Status.SKIP or not report.gated:
        # Without a gate a comparison only measures: no passed test case.
        reason = check.message if report.gated else f"measured, no gate: {check.message}"
        ET.SubElement(case, "skipped", message=reason)
        return case, "skipped"
    ET.SubElement(case, "system-out").text = f"{check.status.value}: {check.message}"
    return case, None


def _suite(report: AnyReport) -> ET.Element:
    """The testsuite of one report: a testcase per check, and the verdict's."""
    counts = dict.fromkeys(_COUNTS, 0)
    cases = []
    for index in range(len(report.checks)):
        case, counted = _check_case(report, index)
        cases.append(case)
        if counted is not None:
            counts[counted] += 1
    if report.verdict is not None:
        verdict = report.verdict
        case = ET.Element("testcase", classname=f"embaudit.{report.kind}", name="verdict", time="0")
        text = "\n".join([*verdict.reasons, *(f"-> {r}" for r in verdict.recommendations)])
        if report.verdict_fails():
            counts["failures"] += 1
            failure = ET.SubElement(case, "failure", message=verdict.level.value, type="verdict")
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = f"{verdict.level.value}\n{text}"
        cases.append(case)
    counts["tests"] = len(cases)
    seconds = f"{report.timings.get('total_seconds', 0.0):.3f}"
    attributes = {key: str(value) for key, value in counts.items()} | {"time": seconds}
    suite = ET.Element("testsuite", {"name": f"embaudit {report.kind} {report.subject}"})
    suite.attrib.update(attributes)
    suite.extend(cases)
    return suite


def _document(suites: list[ET.Element]) -> str:
    """The ``testsuites`` document around ``suites``, with their counts added up."""
    totals = {key: sum(int(suite.get(key, "0")) for suite in suites) for key in _COUNTS}
    seconds = sum(float(suite.get("time", "0")) for suite in suites)
    attributes = {key: str(value) for key, value in totals.items()} | {"time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "embaudit", **attributes})
    root.extend(suites)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


class JunitFormat(Format):
    name = "junit"
    projects = True

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        return _document([_suite(report)])

    def render_project(
        self, project: ProjectReport, *, color: bool = False, width: int = 100
    ) -> str:
        return _document([_suite(report) for report in project.reports])
