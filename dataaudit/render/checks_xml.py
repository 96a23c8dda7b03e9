"""checks.xml: the run's checks as JUnit XML, so a CI system shows each check as a test.

One testcase per check: `fail` is a <failure>, `warn` passes with its message in <system-out>
and a `status` property (JUnit has no warning state), `pass` is a plain testcase.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from dataaudit.checks import FAIL, WARN
from dataaudit.files import atomic_write_text

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def checks_xml(report: AuditReport) -> str:
    checks = report.checks
    failures = sum(c.status == FAIL for c in checks)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": "0", "skipped": "0"}
    suites = ET.Element("testsuites", name="dataaudit", **counts)
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="dataaudit checks",
        timestamp=str(report.run.get("started_at") or ""),
        time=str(report.run.get("duration_s") or 0),
        **counts,
    )
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="dataaudit.checks", name=check.name)
        case.set("time", "0")
        properties = ET.SubElement(case, "properties")
        for key, value in (
            ("metric", check.metric),
            ("value", check.value),
            ("warn", check.warn),
            ("fail", check.fail),
            ("status", check.status),
        ):
            if value is not None:
                ET.SubElement(properties, "property", name=key, value=f"{value}")
        if check.status == FAIL:
            ET.SubElement(
                case, "failure", message=check.message, type="check_failed"
            ).text = check.message
        elif check.status == WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {check.message}"
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def write_checks_xml(report: AuditReport, path: str | Path) -> Path:
    atomic_write_text(path, checks_xml(report))
    return Path(path)
