"""The ``--junit`` report: JUnit XML, for CI systems that show test results.

One ``testsuite`` per area, one ``testcase`` per test. FAIL is a
``failure``, ERROR an ``error``, SKIP and XFAIL are ``skipped`` (with the
reason); LENIENT passes, with its variants in ``system-out``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from itertools import groupby
from pathlib import Path

from ._outcome import Outcome, Result, RunReport

__all__ = ["write_junit"]


def _details(r: Result) -> str:
    parts = [r.reason]
    if r.expected is not None:
        parts.append(f"expected: {r.expected}")
    if r.got is not None:
        parts.append(f"got: {r.got}")
    if r.transcript:
        parts.append("transcript:\n" + "\n".join(r.transcript))
    if r.server_output:
        parts.append("server stderr:\n" + "\n".join(r.server_output))
    return "\n".join(parts)


def write_junit(report: RunReport, path: str | Path) -> None:
    """Write ``report`` as JUnit XML."""
    root = ET.Element("testsuites", name=f"chatproto-conformance {report.implementation}")
    for area, group in groupby(report.results, key=lambda r: r.area):
        results = list(group)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{report.implementation}.{area}",
            tests=str(len(results)),
            failures=str(sum(r.outcome is Outcome.FAIL for r in results)),
            errors=str(sum(r.outcome is Outcome.ERROR for r in results)),
            skipped=str(sum(r.outcome in (Outcome.SKIP, Outcome.XFAIL) for r in results)),
            time=f"{sum(r.duration for r in results):.3f}",
        )
        for r in results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{report.implementation}.{area}",
                name=r.label,
                time=f"{r.duration:.3f}",
            )
            if r.outcome is Outcome.FAIL:
                ET.SubElement(case, "failure", message=r.reason[:500]).text = _details(r)
            elif r.outcome is Outcome.ERROR:
                ET.SubElement(case, "error", message=r.reason[:500]).text = _details(r)
            elif r.outcome in (Outcome.SKIP, Outcome.XFAIL):
                ET.SubElement(case, "skipped", message=f"{r.outcome.value}: {r.reason}"[:500])
            elif r.outcome is Outcome.LENIENT:
                ET.SubElement(case, "system-out").text = f"LENIENT: {', '.join(r.variants)}"
    ET.ElementTree(root).write(str(path), encoding="utf-8", xml_declaration=True)
