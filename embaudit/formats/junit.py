"""``--format junit``: one testcase per check, a failure element per failing check.

JUnit XML as GitLab, Jenkins and most CI systems read it: ``testsuites > testsuite > testcase``
with ``failure`` (checks at the failing level), ``skipped`` (checks that could not run), and the
verdict as one more testcase. Warnings below the failing level pass, with the message in
``system-out``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from embaudit.formats.base import Format, label
from embaudit.model import Status
from embaudit.reports import AnyReport


class JunitFormat(Format):
    name = "junit"

    def render(self, report: AnyReport, *, color: bool = False, width: int = 100) -> str:
        suite_name = f"embaudit {report.kind} {report.subject}"
        cases = []
        failures = skipped = 0
        for check in report.checks:
            case = ET.Element(
                "testcase", classname=f"embaudit.{report.kind}", name=label(check), time="0"
            )
            if report.check_fails(check):
                failures += 1
                failure = ET.SubElement(
                    case, "failure", message=check.message, type=check.status.value
                )
                failure.text = f"{label(check)}: {check.status.value}: {check.message}"
            elif check.status == Status.SKIP or not report.gated:
                # Without a gate a comparison only measures: no passed test case.
                skipped += 1
                reason = check.message if report.gated else f"measured, no gate: {check.message}"
                ET.SubElement(case, "skipped", message=reason)
            else:
                ET.SubElement(case, "system-out").text = f"{check.status.value}: {check.message}"
            cases.append(case)
        if report.verdict is not None:
            verdict = report.verdict
            case = ET.Element(
                "testcase", classname=f"embaudit.{report.kind}", name="verdict", time="0"
            )
            text = "\n".join([*verdict.reasons, *(f"-> {r}" for r in verdict.recommendations)])
            if report.verdict_fails():
                failures += 1
                failure = ET.SubElement(
                    case, "failure", message=verdict.level.value, type="verdict"
                )
                failure.text = text
            else:
                ET.SubElement(case, "system-out").text = f"{verdict.level.value}\n{text}"
            cases.append(case)
        seconds = f"{report.timings.get('total_seconds', 0.0):.3f}"
        counts = {
            "tests": str(len(cases)),
            "failures": str(failures),
            "errors": "0",
            "skipped": str(skipped),
            "time": seconds,
        }
        root = ET.Element("testsuites", {"name": "embaudit", **counts})
        suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts})
        suite.extend(cases)
        ET.indent(root)
        body = ET.tostring(root, encoding="unicode")
        return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
