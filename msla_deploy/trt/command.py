"""`msla-deploy build`: parse, call msla_deploy.trt.build, render. Registered in cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ..choices import HardwareCompat, Precision, Typing
from ..cli_options import json_option, next_command
from ..console import err, key_values, out, print_json, print_next, steps_with_progress


def _show_plan_notes(planned) -> None:
    from .dla import format_preflight

    for warning in planned.plan.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if planned.preflight is not None:
        for line in format_preflight(planned.preflight):
            err.print(line, highlight=False, markup=False)


def _summary(planned) -> str:
    plan = planned.plan
    text = (
        f"{plan.precision}, {plan.typing}ly typed from {plan.onnx.name} ({plan.onnx_role} graph), TensorRT "
        f"{plan.trt_version}"
    )
    if plan.layer_precisions:
        text += f", {len(plan.layer_precisions)} nodes pinned to fp32"
    if plan.uses_dla:
        text += f", DLA core {plan.dla_core}" + (" with GPU fallback" if plan.gpu_fallback else "")
    record = planned.model.graph
    if record is not None:  # a multi-graph artifact's graph: its named dimensions' profile
        text = f"{record.role}: {text}"
        if plan.profiles:
            text += ", profile " + ", ".join(
                f"{dim} {p.min}..{p.max} (tuned for {p.opt})" for dim, p in record.profile.items()
            )
        return text
    for p in plan.profiles:
        text += f", {p.name} batch {p.min[0]}..{p.max[0]} (tuned for {p.opt[0]})"
    return text


def build_command(
    source: Path = typer.Argument(
        ..., help="An export directory (reads its manifest.json) or an .onnx file (reads its metadata)."
    ),
    precision: Optional[Precision] = typer.Option(
        None,
        "--precision",
        help="What to build (default: the export's precision). int8: the export's Q/DQ graph, strongly typed from 9.0, "
        "--int8 --fp16 with the attention pinned to fp32 on 8.5/8.6.",
    ),
    typing_mode: Typing = typer.Option(
        Typing.AUTO,
        "--typing",
        help="auto: strongly typed from the mixed-precision fp16 ONNX on TensorRT >= 10.12, "
        "weakly typed (fp32 ONNX + FP16 flag, attention pinned to fp32) before.",
    ),
    trt_version: str = typer.Option(
        "auto", "--trt-version", metavar="X.Y", help="The TensorRT to plan for (auto: the installed one)."
    ),
    workspace: Optional[str] = typer.Option(
        None, "--workspace", help="Workspace memory pool limit, e.g. 1G, 512M, 2048 (MiB) (default: 1G)."
    ),
    timing_cache: Optional[Path] = typer.Option(
        None,
        "--timing-cache",
        help=(
            "Timing cache file, loaded if present and saved after the build (default: timing_trt<X.Y>.cache in the "
            "export directory)."
        ),
    ),
    opt_level: Optional[int] = typer.Option(
        None, "--opt-level", help="Builder optimization level 0-5 (TensorRT default 3; TensorRT >= 8.6)."
    ),
    opt_batch: Optional[int] = typer.Option(
        None,
        "--opt-batch",
        help=(
            "`export --batch dynamic` graphs: the batch TensorRT tunes its kernels for (profile 1..max, default: the "
            "max)."
        ),
    ),
    dla_core: Optional[int] = typer.Option(
        None,
        "--dla-core",
        help=(
            "Build for this DLA core (Jetson Orin; fp16 or an int8 export, static batch; TensorRT <= 10.7 or >= "
            "11.4.1)."
        ),
    ),
    gpu_fallback: Optional[bool] = typer.Option(
        None,
        "--gpu-fallback/--no-gpu-fallback",
        help="Let layers DLA cannot run fall back to the GPU (default: on with --dla-core).",
    ),
    hardware_compat: HardwareCompat = typer.Option(
        HardwareCompat.NONE,
        "--hardware-compat",
        help="Engine portable across GPUs: ampere+ (TensorRT >= 8.6), same-cc (>= 10.9).",
    ),
    version_compatible: bool = typer.Option(
        False, "--version-compatible", help="Engine loadable by newer TensorRT versions (>= 8.6)."
    ),
    tf32: Optional[bool] = typer.Option(
        None,
        "--tf32/--no-tf32",
        help="Allow TF32 for fp32 layers (default: off, fp32 layers stay comparable to PyTorch).",
    ),
    out_path: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Engine file (default: model_<precision>_trt<X.Y>.engine in the export directory)."
    ),
    print_trtexec: bool = typer.Option(
        False,
        "--print-trtexec",
        help="Print the equivalent trtexec command for --trt-version and exit (needs no TensorRT).",
    ),
    json_out: bool = json_option(),
) -> None:
    """Build a TensorRT engine from an export (or print the trtexec command that builds it on a Jetson)."""
    from .build import graph_roles_of, plan_for_trtexec, run_build
    from .options import BuildOptions
    from .runtime import installed_version_text

    options = BuildOptions(
        source=source,
        precision=precision,
        typing=typing_mode,
        trt_version=trt_version,
        workspace=workspace,
        timing_cache=timing_cache,
        opt_level=opt_level,
        opt_batch=opt_batch,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
        tf32=tf32,
        out=out_path,
    )
    if graph_roles_of(source):  # a SAM artifact: an engine per graph
        _build_graphs(options, print_trtexec, json_out)
        return
    if print_trtexec:
        planned = plan_for_trtexec(options, installed_version_text)
        if json_out:
            print_json(_trtexec_json(planned))
            return
        _show_plan_notes(planned)
        err.print(
            f"# {_summary(planned)}; run inside {planned.plan.root} (JetPack: /usr/src/tensorrt/bin/trtexec)",
            highlight=False,
            markup=False,
        )
        out.print(planned.command, highlight=False, markup=False, soft_wrap=True)
        return

    def on_plan(planned) -> None:
        _show_plan_notes(planned)
        err.print(_summary(planned), highlight=False, markup=False)

    result = run_build(options, steps_with_progress(), on_plan=on_plan)
    if json_out:
        print_json({"record_file": str(result.record_path), "record": result.record.to_dict()})
        return
    out.print(key_values(_build_rows(result)))
    print_next(next_after_build(result.plan.engine))


def _trtexec_json(planned) -> dict:
    from .dla import format_preflight

    return {
        "argv": planned.argv,
        "command": planned.command,
        "run_in": str(planned.plan.root),  # the relative paths in argv assume this folder
        "summary": _summary(planned),
        "profiles": [p.to_dict() for p in planned.plan.profiles],
        "warnings": list(planned.plan.warnings),
        "dla_preflight": None if planned.preflight is None else format_preflight(planned.preflight),
    }


def _build_graphs(options, print_trtexec: bool, json_out: bool) -> None:
    """`build` of a multi-graph artifact (SAM): a trtexec line or an engine per graph."""
    from .build import plan_graphs_for_trtexec, run_graph_builds
    from .runtime import installed_version_text

    if print_trtexec:
        plans = plan_graphs_for_trtexec(options, installed_version_text)
        if json_out:
            print_json({"graphs": [{"graph": p.model.graph.role, **_trtexec_json(p)} for p in plans]})
            return
        for planned in plans:
            _show_plan_notes(planned)
        err.print(
            f"# run inside {plans[0].plan.root} (JetPack: /usr/src/tensorrt/bin/trtexec), one line per graph:",
            highlight=False,
            markup=False,
        )
        for planned in plans:
            err.print(f"# {_summary(planned)}", highlight=False, markup=False)
            out.print(planned.command, highlight=False, markup=False, soft_wrap=True)
        return

    def on_plan(planned) -> None:
        _show_plan_notes(planned)
        err.print(_summary(planned), highlight=False, markup=False)

    results = run_graph_builds(options, steps_with_progress(), on_plan=on_plan)
    if json_out:
        print_json(
            {
                "record_file": str(results[-1].record_path),
                "records": [r.record.to_dict() for r in results],
            }
        )
        return
    for result in results:
        out.rule(result.planned.model.graph.role, style="dim")
        out.print(key_values(_build_rows(result)))
    print_next(next_after_build(results[0].plan.root))


def _build_rows(result) -> List[Tuple[str, str]]:
    """The build record (artifact.builds.BuildRecord) as the terminal shows it."""
    record = result.record
    engine, cache, gpu = record.engine, record.timing_cache, record.gpu
    rows = [
        ("engine", f"{engine.file} ({engine.bytes / 1e6:.1f} MB, sha256 {engine.sha256[:16]})"),
        ("built", _summary(result.planned)),
        (
            "TensorRT",
            f"{record.tensorrt['version']} on {gpu['name']} (sm {gpu['compute_capability']}), CUDA driver "
            f"{record.cuda['driver_version']}",
        ),
        ("layer info", record.layer_info.file if record.layer_info else "not available on this TensorRT"),
        ("timing cache", f"{cache.file} ({'loaded and updated' if cache.loaded else 'new'})" if cache else "-"),
        ("build time", f"{record.build_seconds:.1f} s"),
        ("recorded in", str(result.record_path)),
    ]
    pinned, unmatched = record.fp32_layers.pinned, record.fp32_layers.unmatched_nodes
    if pinned or unmatched:
        rows.insert(2, ("fp32 layers", f"{len(pinned)} pinned, {len(unmatched)} recorded nodes without a layer"))
    if record.dla is not None:
        rows.insert(
            2,
            (
                "DLA",
                f"core {record.dla.core}, {len(record.dla.tensorrt_gpu_layers or [])} layers on the GPU (TensorRT's "
                "count)",
            ),
        )
    return rows


def next_after_build(engine: Path) -> List[Tuple[str, str]]:
    return [
        (next_command("validate", engine, "--backend", "trt"), "the engine against the PyTorch reference"),
        (next_command("bench", engine), "latency and throughput of the engine"),
    ]
