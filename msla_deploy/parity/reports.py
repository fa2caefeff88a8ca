"""The validation report in the three forms CI wants: JSON (everything), Markdown (a table for
a CI summary page) and JUnit XML (one test case per output and budget criterion, which CI
systems list as tests)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..artifact.files import write_bytes_atomic, write_json_atomic

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
JUNIT_XML = "junit.xml"

# budget criterion -> (metric label, Budget fields it comes from)
CRITERIA = {
    "finite": ("NaN / Inf", ("allow_nonfinite",)),
    "max_abs": ("max abs error", ("max_abs_rel", "max_abs_floor")),
    "cosine": ("cosine similarity", ("min_cosine",)),
    "argmax_agreement": ("argmax agreement", ("min_argmax_agreement",)),
    "miou_drop": ("mIoU drop (prediction vs prediction)", ("max_miou_drop",)),
}
TOP_CLASSES = 8
TOP_PROBES = 10


def _g(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.3f}%"


def _source(report: Dict, criterion: str) -> str:
    sources = report["budget"]["sources"]
    labels = []
    for name in CRITERIA[criterion][1]:
        label = sources.get(name, "")
        label = label.split(" (")[0] if label.startswith("pyproject") else label
        if label not in labels:
            labels.append(label)
    return "; ".join(labels)


def markdown(report: Dict) -> str:
    art, run = report["artifact"], report["backend"]
    verdict = "PASS" if report["passed"] else "FAIL"
    lines = [
        f"## msla-deploy validate: {verdict}",
        "",
        f"- **artifact**: `{art['path']}` ({art.get('model') or 'model unknown'}, {art['precision']})",
        f"- **ran on**: {run['runtime']} {run['version']}, {run['ran_on']} (backend `{run['requested']}` -> `{run['used']}`)"
        + (f" - {run['note']}" if run.get("note") else ""),
        f"- **reference**: {report['reference']['samples']} sample(s), {report['reference']['source']}",
        "",
    ]
    if report.get("warnings"):
        lines += [f"> **warning**: {w}" for w in report["warnings"]] + [""]
    outputs = report["outputs"]
    header = "| metric | " + " | ".join(f"`{o['name']}`" for o in outputs) + " | budget | budget from |"
    lines += [header, "|---" * (len(outputs) + 3) + "|"]

    def row(label: str, cells: List[str], budget: str = "", source: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {budget} | {source} |")

    def check_cell(o: Dict, name: str, text: str) -> str:
        check = next((c for c in o["checks"] if c["name"] == name), None)
        if check is None:
            return text
        return text + ("" if check["passed"] else " **FAIL**")

    def limit(name: str) -> str:
        for o in outputs:
            for c in o["checks"]:
                if c["name"] == name:
                    return c["limit"] if len(outputs) == 1 else "see report.json"
        return "not checked"

    budget = report["budget"]["values"]
    row("NaN / Inf", [check_cell(o, "finite", f"{o['nan_count']} / {o['inf_count']}") for o in outputs], limit("finite"), _source(report, "finite"))
    max_abs_budget = "not checked" if budget["max_abs_rel"] is None else f"{limit('max_abs')} ({budget['max_abs_rel']:g} x peak + {budget['max_abs_floor']:g})"
    row("max abs error", [check_cell(o, "max_abs", _g(o["max_abs"], ".3g")) for o in outputs], max_abs_budget, _source(report, "max_abs"))
    row("max abs error / peak", [_g(o["relative_max_abs"], ".2e") for o in outputs])
    row("mean abs error", [_g(o["mean_abs"], ".3g") for o in outputs])
    row("p99 abs error", [_g(o["p99_abs"], ".3g") for o in outputs])
    row("max rel error (floor 1e-3 x peak)", [_g(o.get("max_rel"), ".3g") for o in outputs])
    row("cosine similarity", [check_cell(o, "cosine", _g(o["cosine"], ".7f")) for o in outputs], limit("cosine"), _source(report, "cosine"))
    row("argmax agreement", [check_cell(o, "argmax_agreement", _pct(o["argmax_agreement"])) for o in outputs],
        limit("argmax_agreement"), _source(report, "argmax_agreement"))
    miou_budget = "not checked" if budget.get("max_miou_drop") is None else limit("miou_drop")
    row("mIoU (prediction vs prediction)", [check_cell(o, "miou_drop", _pct(o.get("miou"))) for o in outputs],
        miou_budget if miou_budget == "not checked" else f"drop {miou_budget}", _source(report, "miou_drop"))
    row("verdict", ["pass" if o["passed"] else "**FAIL**" for o in outputs])
    lines.append("")
    lines += [f"> **note** (`{o['name']}`): {o['vacuous_note']}" for o in outputs if o.get("vacuous_note")]
    lines += [""] if any(o.get("vacuous_note") for o in outputs) else []
    measured = sorted({tool for o in outputs for tool in o.get("measured_by", {}).values()})
    if measured:
        lines += [f"max / mean / p99 abs error and cosine measured by {', '.join(measured)}; the rest by msla-deploy (numpy).", ""]

    failures = [f"`{o['name']}`: {f}" for o in outputs for f in o["failures"]]
    if failures:
        lines += ["**Failed:**", ""] + [f"- {f}" for f in failures] + [""]

    for o in outputs:
        changed = [c for c in o.get("class_iou") or [] if c["change"]]
        if changed:
            changed.sort(key=lambda c: -c["change"])
            lines += [f"### Classes whose IoU changed most (`{o['name']}`)", "",
                      "| class | IoU | change | reference px | artifact px |", "|---|---|---|---|---|"]
            for c in changed[:TOP_CLASSES]:
                name = f"{c['class']} {c['name']}" if c.get("name") else str(c["class"])
                lines.append(f"| {name} | {c['iou']:.4f} | {100 * c['change']:.2f}% | {c['reference_pixels']} | {c['candidate_pixels']} |")
            lines.append("")

    loc = report.get("localization")
    if loc:
        first = f"`{loc['first_offender']}`" if loc["first_offender"] else "none (every probe within the limit)"
        crit = loc["criterion"]
        lines += ["### Where the numbers drift", "", f"First offender: {first} (limit: max |error| <= {crit['max_relative']:g} x peak, cosine >= "
                                                     f"{crit['min_cosine']:g})", ""]
        lines += ["| rank | module | max abs / peak | cosine | NaN/Inf | over |", "|---|---|---|---|---|---|"]
        by_name = {p["module"]: p for p in loc["probes"]}
        for rank, name in enumerate(loc["ranked"][:TOP_PROBES], 1):
            p = by_name[name]
            lines.append(f"| {rank} | `{name}` | {p['relative']:.3g} | {p['cosine']:.6f} | {p['nonfinite']} | {'yes' if p['offender'] else ''} |")
        lines += [""] + [f"> {note}" for note in loc["notes"]] + ([""] if loc["notes"] else [])

    pictures = report.get("pictures") or {}
    if pictures:
        lines += ["### Pictures", ""]
        for name, files in pictures.items():
            lines.append(f"- `{name}`: label disagreement `{files['disagreement']}` (white: label differs), error heatmap `{files['error_heatmap']}` "
                         f"(absolute scale: black 0, yellow = {files['error_scale']:.3g}, red beyond it, magenta NaN/Inf)")
        lines.append("")
    for note in report["budget"].get("notes", []):
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


def junit_suite(suite_name: str, classname: str, cases: List[Tuple[str, bool, str, str]], seconds: float) -> bytes:
    """A JUnit XML suite: cases are (name, passed, detail, failure message); a failed case carries <failure>."""
    failures = sum(1 for _, passed, _, _ in cases if not passed)
    suites = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(cases)), failures=str(failures),
                          errors="0", skipped="0", time=f"{seconds:.3f}")
    for name, passed, detail, message in cases:
        case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if not passed:
            failure = ET.SubElement(case, "failure", message=message, type="BudgetExceeded")
            failure.text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    if hasattr(ET, "indent"):  # Python 3.9+; on 3.8 (JetPack 5) the XML stays on one line
        ET.indent(suites)  # novm
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def junit_xml(report: Dict) -> bytes:
    """One <testcase> per output and budget criterion; a failed criterion carries <failure>."""
    cases = [(f"{o['name']}: {CRITERIA[c['name']][0]}", c["passed"], f"measured {c['value']}, budget {c['limit']}", c["message"])
             for o in report["outputs"] for c in o["checks"]]
    classname = f"msla-deploy.validate.{report['artifact'].get('model') or report['artifact']['name']}"
    return junit_suite("msla-deploy validate", classname, cases, report.get("timings_s", {}).get("total", 0))


def write_reports(report: Dict, folder, extra_junit: Optional[str] = None) -> Dict[str, str]:
    """validate's report.json, report.md and junit.xml in `folder`; junit also at `extra_junit`."""
    return write_report_files(report, folder, markdown(report), junit_xml(report), extra_junit)


def write_report_files(report: Dict, folder, markdown_text: str, junit: bytes, extra_junit=None) -> Dict[str, str]:
    """report.md, junit.xml and report.json in `folder`, each atomically; junit also at
    `extra_junit`. Shared by every stage that reports (validate, evaluate)."""
    folder = Path(folder)
    write_bytes_atomic(folder / REPORT_MD, markdown_text.encode())
    write_bytes_atomic(folder / JUNIT_XML, junit)
    files = {"json": str(folder / REPORT_JSON), "markdown": str(folder / REPORT_MD), "junit": str(folder / JUNIT_XML)}
    if extra_junit:
        write_bytes_atomic(Path(extra_junit), junit)
        files["junit_extra"] = str(extra_junit)
    report["files"] = files
    write_json_atomic(folder / REPORT_JSON, report)  # last: its presence means the others are there
    return files
