"""The evaluation report: report.json (everything), report.md (CI summary), junit.xml (one case
per backend gated by --max-miou-drop), written with parity/reports.py's names and JUnit writer."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from ..parity.reports import junit_suite, write_report_files

WORST_CLASSES = 8


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(report: Dict) -> str:
    art, data = report["artifact"], report["dataset"]
    verdict = "PASS" if report["passed"] else "FAIL"
    gate = report["max_miou_drop_points"]
    lines = [
        f"## msla-deploy evaluate: {verdict}",
        "",
        f"- **artifact**: `{art['path']}` ({art.get('model') or 'model unknown'}, {art['precision']}, input {art['resolution'][0]}x{art['resolution'][1]})",
        f"- **dataset**: {data['kind']} `{data['root']}`, {data['evaluated']} picture(s)"
        + (f", {len(report['skipped'])} skipped as bad" if report["skipped"] else ""),
        f"- **reference backend**: `{report['against']}`; gate: " + ("none" if gate is None else f"mIoU drop <= {gate:g} points"),
        f"- **throughput**: {report['images_per_second']:.2f} images/s over {report['seconds']:.1f} s (all backends, decoding and metrics included)"
        if report.get("images_per_second")
        else "",
        "",
    ]
    lines += [f"> {note}" for note in report["notes"]] + ([""] if report["notes"] else [])
    lines += ["| backend | ran on | mIoU % | pixel acc % | drop (points) | verdict |", "|---|---|---|---|---|---|"]
    for b in report["backends"]:
        drop = "reference" if b["backend"] == report["against"] else ("-" if b["miou_drop_points"] is None else f"{b['miou_drop_points']:.3f}")
        verdict = {True: "pass", False: "**FAIL**", None: ""}[b["passed"]]
        lines.append(f"| `{b['backend']}` | {b['ran'].get('ran_on', '')} | {_pct(b['miou'])} | {_pct(b['pixel_accuracy'])} | {drop} | {verdict} |")
    lines.append("")
    reference = next(b for b in report["backends"] if b["backend"] == report["against"])
    header = "| class | " + " | ".join(f"`{b['backend']}` IoU %" for b in report["backends"]) + " | label px |"
    lines += ["### Per-class IoU", "", header, "|---" * (len(report["backends"]) + 2) + "|"]
    for i, row in enumerate(reference["class_iou"]):
        name = f"{row['class']} {row['name']}" if row.get("name") else str(row["class"])
        cells = [_pct(b["class_iou"][i]["iou"]) for b in report["backends"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['label_pixels']} |")
    lines.append("")
    for pair in report["pairs"]:
        lines += [
            f"### `{pair['candidate']}` against `{pair['reference']}` (prediction vs prediction)",
            "",
            f"mIoU {_pct(pair['miou'])} %, pixels agreeing {_pct(pair['agreement'])} %",
            "",
        ]
        worst = [w for w in pair["worst_images"] if w["disagreement"] > 0]
        if worst:
            lines += ["| image | pixels disagreeing % | picture |", "|---|---|---|"]
            lines += [f"| `{w['image']}` | {100 * w['disagreement']:.3f} | {('`' + Path(w['picture']).name + '`') if w['picture'] else ''} |" for w in worst]
            lines += ["", "Pictures: the reference backend's labels in their colours, darkened; white where the other backend's label differs.", ""]
    if report["skipped"]:
        lines += ["### Skipped (bad input)", ""] + [f"- `{s['image']}`: {s['problem']}" for s in report["skipped"]] + [""]
    return "\n".join(line for line in lines).rstrip() + "\n"


def junit_xml(report: Dict) -> bytes:
    gate = report["max_miou_drop_points"]
    cases = []
    reference_miou = next(r["miou"] for r in report["backends"] if r["backend"] == report["against"])
    for b in report["backends"]:
        if b["backend"] == report["against"]:
            continue
        detail = (
            f"mIoU {_pct(b['miou'])} % vs {_pct(reference_miou)} % on `{report['against']}`: drop "
            + ("-" if b["miou_drop_points"] is None else f"{b['miou_drop_points']:.3f}")
            + " points"
            + ("" if gate is None else f", budget {gate:g}")
        )
        passed = b["passed"] is not False
        cases.append(
            (
                f"{b['backend']}: mIoU drop against {report['against']}",
                passed,
                detail,
                "" if passed else f"{b['backend']} loses more than {gate:g} points of mIoU",
            )
        )
    classname = f"msla-deploy.evaluate.{report['artifact'].get('model') or report['artifact']['name']}"
    return junit_suite("msla-deploy evaluate", classname, cases, report.get("seconds", 0))


def write_reports(report: Dict, folder: Path, extra_junit: Optional[Path] = None) -> Dict[str, str]:
    """evaluate's report.json, report.md and junit.xml (validate's writer, evaluate's content)."""
    return write_report_files(report, folder, markdown(report), junit_xml(report), extra_junit)
