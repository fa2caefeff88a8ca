"""A report in the three forms CI wants, for every stage that judges something (validate, evaluate):
report.json (the stage's record, everything), report.md (a summary page) and junit.xml (one test
case per criterion, which CI systems list as tests). The stage owns its record and what its
Markdown and test cases say; this module owns the file names, the JUnit layout, the Markdown
table cells and the order in which the files are written.

torch-free, Python 3.8.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

from .artifact.files import write_bytes_atomic, write_json_atomic
from .records import Record

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
JUNIT_XML = "junit.xml"


# --- Markdown -----------------------------------------------------------------------------------


def cell(value: Optional[float], spec: str) -> str:
    """A number for a table cell; "-" where there is none (not measured, not measurable)."""
    return "-" if value is None else format(value, spec)


def percent(value: Optional[float], digits: int = 3) -> str:
    """A fraction as a percentage for a table cell; "-" where there is none."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """The lines of a Markdown table (no blank line around it: the caller places it)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# --- JUnit --------------------------------------------------------------------------------------


class JUnitCase(NamedTuple):
    """One test case: a failed one carries <failure message=...>detail</failure>."""

    name: str
    passed: bool
    detail: str
    message: str  # what went wrong (only used when not passed)


def junit_suite(suite_name: str, classname: str, cases: Iterable[Sequence[Any]], seconds: float) -> bytes:
    """A JUnit XML suite of `cases` (JUnitCase, or tuples in its order: name, passed, detail, message)."""
    cases = [JUnitCase(*c) for c in cases]
    failures = sum(1 for c in cases if not c.passed)
    suites = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=c.name, time="0")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.message, type="BudgetExceeded")
            failure.text = c.detail
        else:
            ET.SubElement(case, "system-out").text = c.detail
    if hasattr(ET, "indent"):  # Python 3.9+; on 3.8 (JetPack 5) the XML stays on one line
        ET.indent(suites)  # novm
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


# --- the three files ----------------------------------------------------------------------------


def write_report_files(
    report: Union[Record, Dict[str, Any]], folder, markdown_text: str, junit: bytes, extra_junit=None
) -> Dict[str, str]:
    """report.md, junit.xml and report.json in `folder`, each atomically; junit also at
    `extra_junit`. The record's `files` field (a dict's "files" key) says where they went.

    report.json is written last: its presence means the others are there. A plain dict is taken
    for a stage whose report is not a record yet (evaluate's, until it becomes one)."""
    folder = Path(folder)
    write_bytes_atomic(folder / REPORT_MD, markdown_text.encode())
    write_bytes_atomic(folder / JUNIT_XML, junit)
    files = {"json": str(folder / REPORT_JSON), "markdown": str(folder / REPORT_MD), "junit": str(folder / JUNIT_XML)}
    if extra_junit:
        write_bytes_atomic(Path(extra_junit), junit)
        files["junit_extra"] = str(extra_junit)
    if isinstance(report, Record):
        if not hasattr(report, "files"):
            raise TypeError(f"{type(report).__name__} has no 'files' field to say where its reports went")
        report.files = files  # type: ignore[attr-defined]
        report.write(folder / REPORT_JSON)
    else:
        report["files"] = files
        write_json_atomic(folder / REPORT_JSON, report)
    return files
