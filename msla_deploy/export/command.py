"""The `export` command: parse, call msla_deploy.export.pipeline (torch, imported on use), render.
Registered in cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import typer
from rich.markup import escape

from ..artifact.names import MANIFEST_NAME, PARITY_NAME
from ..artifact.options import (
    DEFAULT_CALIB_METHOD,
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_PROMPTS,
    DEFAULT_MODEL,
    DEFAULT_OPSET,
)
from ..choices import CalibMethod, Exporter, FloatPrecision, Head, Int8Policy, Precision, TaskName, Upsample
from ..cli_options import json_option, models_dir_option, next_command, overwrite_option
from ..console import checks_table, err, error_line, key_values, out, print_json, print_next, steps_with_progress
from ..torch_side import torch_side
from .sam_int8 import DEFAULT_POLICY as SAM_DEFAULT_POLICY

if TYPE_CHECKING:  # annotations only: the pipeline imports torch
    from ..artifact.manifest import PrecisionRecord
    from .pipeline import ExportResult


def export_command(
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        help="Zoo name (see `msla-deploy models`) or FILE.py:FACTORY returning an nn.Module.",
    ),
    weights: Optional[Path] = typer.Option(
        None,
        "--weights",
        "-w",
        help=(
            "State-dict checkpoint (.pt, loaded with weights_only=True). Zoo default: models/<upstream file> if "
            "present, else random."
        ),
    ),
    res: Optional[str] = typer.Option(
        None,
        "--res",
        "-r",
        help="Input HxW; sides must be multiples of 32 [default: the model's own: 1024x2048 for the default model, "
        "224x224 for efficientvit-b1-r224].",
    ),
    batch: str = typer.Option(
        "1",
        "--batch",
        "-b",
        help="Static batch size, or 'dynamic': the batch is the graph's one dynamic dimension, 1..--max-batch "
        "(TensorRT optimisation profiles, Triton's dynamic batcher); everything else stays static.",
    ),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", help="--batch dynamic: the largest batch (parity is checked at 1 and at this)."
    ),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset (17 parses on TensorRT 8.5/8.6 and later)."),
    exporter: Exporter = typer.Option(
        Exporter.AUTO, "--exporter", help="The PyTorch exporter (auto: dynamo, torchscript if it fails)."
    ),
    precision: Precision = typer.Option(
        Precision.FP32,
        "--precision",
        "-p",
        help="fp16: model.onnx is mixed precision (fp16, fp32 attention island) for strongly typed "
        "TensorRT 10.12+/11; model_fp32.onnx beside it is for weakly typed builds (JetPack 5/6). int8: model.onnx is "
        "an explicit Q/DQ graph calibrated on --calib-images (LiteMLA cores in fp32).",
        rich_help_panel="Precision",
    ),
    attention_precision: FloatPrecision = typer.Option(
        FloatPrecision.FP32,
        "--attention-precision",
        help="fp16 exports: LiteMLA's matmuls, normaliser and division in fp32, or in fp16 with token-mean "
        "scaling (small parity cost).",
        rich_help_panel="Precision",
    ),
    io_dtype: FloatPrecision = typer.Option(
        FloatPrecision.FP32,
        "--io-dtype",
        help="fp16 exports: dtype of the graph input and output.",
        rich_help_panel="Precision",
    ),
    upsample: Upsample = typer.Option(
        Upsample.CUBIC,
        "--upsample",
        help="Head resize: cubic (upstream parity) or bilinear (for TensorRT 8.5 / JetPack 5).",
        rich_help_panel="Precision",
    ),
    stress_weights: bool = typer.Option(
        False,
        "--stress-weights",
        help="Rescale LiteMLA q/k/v to trained-model magnitudes and zero some queries: tests the fp16 guards.",
        rich_help_panel="Precision",
    ),
    fp16_guards: bool = typer.Option(
        True,
        "--fp16-guards/--no-fp16-guards",
        help="--no-fp16-guards exports naive fp16 (eps lost, sums in fp16), to see what the guards prevent.",
        rich_help_panel="Precision",
    ),
    head: Head = typer.Option(
        Head.LOGITS,
        "--head",
        help="Graph outputs: logits (upstream's). Segmentation: labels (in-graph bicubic resize to the input size + "
        "argmax, int32 [N,H,W] train ids for TensorRT/DeepStream/Triton/C++), or both. Classification: probs "
        "(softmax) or topk (topk_indices int32 [N,5] and topk_scores [N,5]).",
    ),
    task: Optional[TaskName] = typer.Option(
        None,
        "--task",
        help="What a FILE.py:FACTORY model's output is [default: segmentation]; a zoo model's task is its name's.",
    ),
    calib_images: Optional[Path] = typer.Option(
        None,
        "--calib-images",
        help="int8: folder of .png/.jpg/.npy pictures, or a dataset root (Cityscapes, ADE20K).",
        rich_help_panel="int8",
    ),
    calib_count: int = typer.Option(
        64,
        "--calib-count",
        help="int8: pictures to calibrate on (evenly spread over the folder).",
        rich_help_panel="int8",
    ),
    calib_method: CalibMethod = typer.Option(
        CalibMethod(DEFAULT_CALIB_METHOD),
        "--calib-method",
        rich_help_panel="int8",
        help="int8: the calibrator (ONNX Runtime's MinMax/Entropy/Percentile 99.999%; percentile kept the most labels "
        "on the trained stand-in, benchmarks/README.md).",
    ),
    int8_attention: bool = typer.Option(
        False,
        "--int8-attention",
        help="int8: quantize the LiteMLA cores too (what generic quantizers do; to measure the cost).",
        rich_help_panel="int8",
    ),
    sensitivity: bool = typer.Option(
        False,
        "--sensitivity",
        help="int8: quantize one module at a time (and all but one); rank by label cost; int8_sensitivity.json/.png.",
        rich_help_panel="int8",
    ),
    min_argmax_agreement: Optional[float] = typer.Option(
        None,
        "--min-argmax-agreement",
        help="int8: keep the costliest modules in fp32 until the labels agree this much "
        "with fp32 on the calibration pictures (e.g. 0.99); also the parity budget.",
        rich_help_panel="int8",
    ),
    int8_policy: Optional[Int8Policy] = typer.Option(
        None,
        "--int8-policy",
        help=f"SAM int8: the encoder blocks kept out of Q/DQ besides the LiteMLA cores and the LayerNorm2d [default: "
        f"{SAM_DEFAULT_POLICY}; benchmarks/README.md measures each]: all (every block "
        "int8), ends-float (stem and neck output conv), mbconv-float (MBConv blocks), neck-float (the neck). Float "
        "blocks are fp32 in the graph (fp16 where a weakly typed --int8 --fp16 build picks it).",
        rich_help_panel="SAM",
    ),
    max_prompts: int = typer.Option(
        DEFAULT_MAX_PROMPTS,
        "--max-prompts",
        help="SAM: the most prompts one decoder call takes (the dynamic B of its TensorRT profile).",
        rich_help_panel="SAM",
    ),
    max_points: int = typer.Option(
        DEFAULT_MAX_POINTS,
        "--max-points",
        help="SAM: the most points per prompt (a box counts 2, a prompt without a box gets 1 pad point).",
        rich_help_panel="SAM",
    ),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output directory [default: artifacts/<model>-<H>x<W>-<precision>]."
    ),
    models_dir: Path = models_dir_option(),
    overwrite: bool = overwrite_option(
        "Replace an earlier export at --out: its own files are replaced, every other file (engines, reports, yours) "
        "is kept."
    ),
    json_out: bool = json_option(),
) -> None:
    """Export a model to a static (or dynamic-batch), checked ONNX with a reference bundle and an ONNX Runtime
    parity report."""
    from ..artifact.options import ExportOptions, parse_batch, parse_resolution

    run_export = torch_side("msla_deploy.export.pipeline", "run_export")

    batch_size, dynamic_batch = parse_batch(batch, max_batch)
    options = ExportOptions(
        model=model,
        weights=weights,
        resolution=parse_resolution(res) if res else None,
        batch=batch_size,
        dynamic_batch=dynamic_batch,
        opset=opset,
        exporter=exporter,
        out=out_dir,
        models_dir=models_dir,
        precision=precision,
        attention_precision=attention_precision,
        io_dtype=io_dtype,
        upsample=upsample,
        fp16_guards=fp16_guards,
        stress_weights=stress_weights,
        head=head,
        task=task,
        overwrite=overwrite,
        calib_images=calib_images,
        calib_count=calib_count,
        calib_method=calib_method,
        int8_attention=int8_attention,
        sensitivity=sensitivity,
        min_argmax_agreement=min_argmax_agreement,
        int8_policy=int8_policy,
        max_prompts=max_prompts,
        max_points=max_points,
    )
    result = run_export(options, steps_with_progress())
    if json_out:
        print_json(result.to_dict())
    else:
        render(result)
    if not result.passed:
        _fail(result)
    if not json_out:
        print_next(next_after_export(result.directory))


def next_after_export(directory: Path) -> List[Tuple[str, str]]:
    return [
        (
            next_command("build", directory),
            "a TensorRT engine for this GPU (--print-trtexec: the command for a Jetson)",
        ),
        (next_command("bench", directory), "latency and throughput on ONNX Runtime"),
    ]


def render(result: ExportResult) -> None:
    """The export for a person: what was exported, the parity table, notes, hazard findings."""
    manifest, parity = result.manifest, result.parity
    int8_info = manifest.precision.extra.get("int8")
    out.print(
        key_values(
            [
                ("model", manifest.model.name),
                ("weights", _weights_text(manifest.weights)),
                ("precision", _precision_text(manifest.precision)),
                ("exporter", f"{manifest.exporter['used']} (opset {manifest.exporter['opset']})"),
                *_graph_rows(manifest),
                ("swapped", _swapped_text(manifest.swapped_modules)),
                ("written", str(result.directory)),
            ]
        )
    )
    out.print(checks_table(parity.checks, "Parity against PyTorch fp32"))
    notes = {o.vacuous_note for c in parity.checks for o in c.outputs if o.vacuous_note}
    for note in sorted(notes):
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if int8_info and int8_info.get("sensitivity", {}).get("file"):
        _print_sensitivity(result.directory / int8_info["sensitivity"]["file"])
    for file, scan in manifest.hazards.items():
        for finding in scan["errors"] + scan["warnings"]:
            where = finding.get("module") or finding["node"]
            colour = "red" if finding["severity"] == "error" else "yellow"
            err.print(
                f"[{colour}]{finding['severity']}:[/] {file}: {finding['check']} at {where}: {finding['detail']}",
                highlight=False,
            )


def _weights_text(weights) -> str:
    sources = {
        "random": "[bold yellow]RANDOM (no checkpoint given or found in models/)[/]",
        "factory": "as returned by the factory",
    }
    text = sources.get(weights["source"], weights.get("path", ""))
    if "stress" in weights:
        text += " [bold yellow]+ STRESS (LiteMLA q/k/v rescaled, head 0 queries zeroed)[/]"
    return text


def _precision_text(p: PrecisionRecord) -> str:
    """fp32, or what the fp16/int8 graph holds and where its fp32 graph is."""
    int8 = p.extra.get("int8")
    if p.precision == "fp32":
        text = p.precision
    elif int8:
        calibration = int8["calibration"]
        fp32_modules = ", ".join(int8["fp32_modules"]) or "none"
        policy = int8.get("policy")
        if policy:  # SAM's encoder: the policy and what it keeps float, the cores counted
            cores = len(int8["fp32_modules"]) - len(policy["kept_float"])
            fp32_modules = f"policy {policy['name']} ({len(policy['kept_float'])} block(s) float"
            fp32_modules += "".join(f", {m}" for m in policy["kept_float"]) + f"; {cores} LiteMLA core(s))"
        text = (
            f"int8 Q/DQ ({len(int8['quantized_modules'])} modules int8, fp32: {fp32_modules}; "
            f"calibrated on {calibration['count']} pictures, {calibration['method']}); "
            f"fp32 graph: {p.onnx_files['fp32']}"
        )
    else:
        guards = "" if p.fp16_guards else ", [bold red]guards OFF[/]"
        attention = p.attention_precision if p.fp16_guards else "naive fp16"
        text = f"fp16 (attention {attention}, I/O {p.io_dtype}{guards}); weak-typing graph: {p.onnx_files['fp32']}"
    return text + ("" if p.upsample == "cubic" else ", [yellow]bilinear upsampling[/]")


def _graph_rows(manifest) -> List[Tuple[str, str]]:
    """One row per graph: a SAM export's encoder and decoder, anyone else's model.onnx."""
    if not manifest.graphs:
        return [("graph", _graph_text(manifest.onnx))]
    rows = []
    for record in manifest.graphs:
        shapes = lambda tensors: ", ".join(f"{t.name} {list(t.shape)}" for t in tensors)  # noqa: E731
        profile = "".join(f", {dim} {p.min}..{p.max}" for dim, p in record.profile.items())
        rows.append((record.role, f"{record.file} ({record.precision}{profile}): {shapes(record.inputs)} -> "
                     f"{shapes(record.outputs)}"))  # fmt: skip
    return rows


def _graph_text(graph) -> str:
    outputs = ", ".join(f"output {o['name']} {o['shape']}" for o in graph["outputs"])
    return f"{graph['node_count']} nodes, input {graph['inputs'][0]['shape']}, {outputs}"


def _swapped_text(swapped_modules) -> str:
    swapped = [r for r in swapped_modules if r["swapped"]]
    texts = [f"{r['path'] or '<root>'} ({r['source'].rsplit('.', 1)[-1]}, eps {r['eps']:g})" for r in swapped]
    return ", ".join(texts) or "none needed"


def _fail(result: ExportResult) -> None:
    """One error line naming every failed parity budget and the count of hazard errors; exit 1."""
    manifest, parity = result.manifest, result.parity
    failures = "; ".join(parity.failures())
    hazard_errors = sum(len(scan["errors"]) for scan in manifest.hazards.values())
    if hazard_errors:
        hazards = f"{hazard_errors} fp16 hazard error(s) (msla-deploy inspect {result.directory}/<file>)"
        failures = "; ".join(filter(None, [failures, hazards]))
    failures = "; ".join(filter(None, [failures, result.int8_target_failure]))
    details = f"{result.directory / PARITY_NAME} and {MANIFEST_NAME}"
    error_line(f"export checks failed: {failures} (details in {details})")
    raise typer.Exit(1)


def _print_sensitivity(path: Path) -> None:
    import json

    from .sam_int8_sensitivity import SamSensitivityTable

    if str(json.loads(path.read_text()).get("format", "")).startswith(SamSensitivityTable.KIND + "/"):
        _print_sam_sensitivity(path)
        return
    _print_label_sensitivity(path)


def _print_sam_sensitivity(path: Path) -> None:
    from .sam_int8_sensitivity import SamSensitivityTable, table_rows

    data = SamSensitivityTable.read(path)
    columns = ("#", "module", "family", "mask IoU lost alone (points)", "1 - cosine alone", "mask IoU all but it")
    _print_cost_table(
        f"int8 mask cost per encoder module ({path.name}, plot beside it)", (*columns, "policy"), table_rows(data)
    )
    out.print(
        f"all modules int8: mask IoU {100 * data.all_int8_mask_iou:.2f}% of the fp32 pair's; policy {data.policy}: "
        f"{100 * data.policy_mask_iou:.2f}% ({data.calibration.pictures} pictures x {data.prompts_per_picture} "
        "prompts)",
        highlight=False,
    )


def _print_cost_table(title: str, columns, rows) -> None:
    """A sensitivity ranking: rank and numbers right-aligned, names left."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        words = i in (1, 2, len(columns) - 1)  # module, its kind or family, the last (kept / policy)
        table.add_column(column, justify="left" if words else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_label_sensitivity(path: Path) -> None:
    from .int8_sensitivity import SensitivityTable, table_rows

    data = SensitivityTable.read(path)
    columns = ("#", "module", "kind", "labels changed alone", "1 - cosine alone", "agreement all but it", "kept")
    _print_cost_table(f"int8 label cost per module ({path.name}, plot beside it)", columns, table_rows(data))
    target = data.min_argmax_agreement
    kept_text = f"; kept in fp32 for {100 * target:g}%: {', '.join(data.keep_fp32) or 'none'}" if target else ""
    out.print(f"all modules int8: {100 * data.all_int8_agreement:.3f}% of labels as fp32{kept_text}", highlight=False)
