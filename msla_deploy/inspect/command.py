"""`msla-deploy inspect`: parse the options, run the analysis, render a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from ..choices import TRT_TARGET_EXAMPLES, InspectPrecision
from ..cli_options import json_option
from ..console import err, out, print_json

if TYPE_CHECKING:
    from .graphs import GraphsReport
    from .report import InspectReport

PRECISION_HELP = (
    "What you will build with. auto (default): fp16 if the graph has float16 tensors or --dla is given, else fp32. "
    "A graph with float16 tensors is read strongly typed (a node is fp16 where its inputs are float16; fp32 islands "
    "are safe), except on TensorRT 8.x, which has no strongly typed mode. fp16 on an fp32 graph means a weak build "
    "(FP16 flag): every node may run in fp16 except those pinned in the metadata msla_deploy.fp32_nodes. "
    "fp32: nothing runs in fp16, so fp16 hazards are not reported. "
    "int8 (auto on a graph with QuantizeLinear/DequantizeLinear, e.g. an int8 export's model.onnx): layers reading a "
    "DequantizeLinear run in int8; strongly typed where the build is (9.0+ on the GPU, 11.x), weakly typed (--int8 "
    "--fp16, "
    "pins held) on 8.x and for DLA before 11."
)


def _complete_target(incomplete: str) -> List[str]:
    return [version for version in TRT_TARGET_EXAMPLES if version.startswith(incomplete)]


def inspect_command(
    model: Path = typer.Argument(
        ...,
        help="The ONNX model to inspect (any exporter's), an export directory, or a SAM artifact (per graph).",
        show_default=False,
    ),
    target_trt: Optional[str] = typer.Option(
        None,
        "--target-trt",
        "-t",
        metavar="X.Y",
        autocompletion=_complete_target,
        help=f"TensorRT version to preflight against, e.g. {', '.join(TRT_TARGET_EXAMPLES)} "
        "(any 8.5 ... 11.x; '11' means 11.0, a patch suffix like 8.6.1 is fine).",
    ),
    dla: bool = typer.Option(
        False,
        "--dla",
        help="Also check DLA: availability in that version, static shapes, layers that fall back to the GPU.",
    ),
    precision: InspectPrecision = typer.Option(InspectPrecision.AUTO, "--precision", "-p", help=PRECISION_HELP),
    json_out: bool = json_option(help='Print {"errors": [...], "warnings": [...], "info": {...}} on stdout.'),
) -> None:
    """fp16 hazards and TensorRT/DLA preflight of an ONNX model, without PyTorch or TensorRT.

    Exit 1 when an error was found (warnings do not fail), 2 for bad input.
    """
    from . import inspect_onnx  # onnx: not for `--help`
    from .graphs import inspect_graphs, multi_graph_manifest

    manifest = multi_graph_manifest(model)
    if manifest is not None:  # a SAM artifact: a section per graph
        graphs = inspect_graphs(model, manifest, target_trt, precision, dla)
        if json_out:
            print_json(graphs.to_dict())
        else:
            _render_graphs(graphs)
        if not graphs.passed:
            raise typer.Exit(1)
        return
    report = inspect_onnx(str(model), target=target_trt, precision=precision, dla=dla)
    if json_out:
        print_json(report.to_dict())
    else:
        _render(report)
    if not report.passed:
        raise typer.Exit(1)


def _render_graphs(graphs: GraphsReport) -> None:
    for section in graphs.sections:
        out.rule(section.title, style="dim")
        _render(section.report)
    failed = [s.role + f" ({s.file})" for s in graphs.sections if not s.report.passed]
    verdict = "[bold red]FAIL[/]" if failed else "[green]ok[/]"
    summary = (
        f"{verdict}: {len(graphs.sections)} graph section(s), {len(graphs.errors)} error(s), "
        f"{len(graphs.warnings)} warning(s) - {graphs.directory}"
    )
    if failed:
        summary += f"; failing: {', '.join(failed)}"
    (err if failed else out).print(summary, highlight=False)


def _render(report: InspectReport) -> None:
    from rich import box
    from rich.table import Table

    from .report import ERROR

    if report.findings:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_lines=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("node", overflow="fold", max_width=32)
        table.add_column("module", overflow="fold", max_width=40)
        table.add_column("detail", overflow="fold")
        for f in report.findings:
            severity = "[bold red]error[/]" if f.severity == ERROR else "[yellow]warning[/]"
            node = f.node + (f" (+{len(f.nodes) - 1})" if len(f.nodes) > 1 else "")
            table.add_row(severity, f.check, node or "-", f.module or "-", f.detail)
        out.print(table)
        fixes = list(dict.fromkeys((f.check, f.fix) for f in report.findings if f.fix))
        for check, fix in fixes:  # each fix once: many nodes share one cause
            out.print(f"[bold]fix[/] {check}: {fix}", highlight=False)
    for note in report.info.get("notes", []):
        out.print(f"[dim]note: {note}[/]", highlight=False)
    info = report.info
    target = info["target_trt"]
    precision = info["precision"]
    where = "no TensorRT target"
    if target:
        where = f"TensorRT {target['version']}" + (f" ({target['jetpack']})" if target["jetpack"] else "")
    verdict = "[bold red]FAIL[/]" if report.errors else "[green]ok[/]"
    summary = (
        f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s) - {info['model']}, opset "
        f"{info['opset']}, "
        f"{where}, precision {precision['assumed']} ({precision['typing']} typing, {precision['fp16_nodes']} fp16 "
        "node(s))"
    )
    if "int8" in info:
        q = info["int8"]
        summary += (
            f", int8: {q['int8_layers']} int8 layer(s), {len(q['quantized_modules'])} module(s) int8 / "
            f"{len(q['fp32_modules'])} fp32"
        )
        if "policy" in q:  # SAM's encoder
            summary += f" (policy {q['policy'].get('name')}: {len(q['policy'].get('kept_float') or [])} block(s) float)"
    if "dla" in info:
        dla = info["dla"]
        summary += f", DLA forecast {dla['dla']} on DLA / {dla['maybe']} maybe / {dla['gpu']} GPU"
        if dla.get("qdq_fused"):
            summary += f" ({dla['qdq_fused']} Q/DQ folded into their layers, not counted)"
    (out if report.passed else err).print(summary, highlight=False)
