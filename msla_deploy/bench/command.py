"""The `bench` command: parse, call msla_deploy.bench.run, render. Registered in cli.py.

TensorRT (--backend trt) is timed on the GPU with CUDA events, not the host clock (the report's
"timer" says which). Exit codes: 0 measured, 1 measured but some outputs held NaN/Inf values, 2
bad input (an existing --plot file without --overwrite, or one onto an artifact or a compared
report, included), 3 missing runtime (TensorRT, a GPU, libcudart, PyTorch for the torch backend,
or an ONNX Runtime GPU provider that fell back to the CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..cli_options import artifact_argument, backend_option, json_option, overwrite_option, threads_option
from ..console import err, error_line, key_values, out, print_json, steps_with_progress
from .report import BenchReport


def bench_command(
    artifact: Path = artifact_argument(),
    backend: str = backend_option(),
    warmup: int = typer.Option(
        3, "--warmup", help="Untimed rounds before timing (the first run, which allocates, is never timed)."
    ),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", help="Timed runs per backend [default: 20]."),
    duration: Optional[float] = typer.Option(
        None, "--duration", help="Time for this many seconds instead of a fixed count."
    ),
    batch: Optional[int] = typer.Option(
        None, "--batch", help="Batch: a static export's own (default), or 1..N for a --batch dynamic one (default N)."
    ),
    threads: Optional[int] = threads_option(),
    transfers: bool = typer.Option(
        True,
        "--transfers/--no-transfers",
        help="TensorRT: include host<->device copies in each run (--no-transfers: like trtexec --noDataTransfers).",
    ),
    cuda_graph: bool = typer.Option(
        False,
        "--cuda-graph",
        help="TensorRT: capture the enqueue once as a CUDA graph and time graph launches (trt backend only).",
    ),
    compare: Optional[List[str]] = typer.Option(
        None,
        "--compare",
        help="Also time this backend, ARTIFACT or ARTIFACT@BACKEND, interleaved round-robin (repeatable).",
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of the latency distribution per backend."),
    overwrite: bool = overwrite_option("Replace an existing --plot file."),
    json_out: bool = json_option("the report"),
) -> None:
    """Measure latency (min/mean/p50/p90/p99), throughput and memory of an artifact; --compare for ratios."""
    from .run import BenchOptions, run_bench

    options = BenchOptions(
        artifact=artifact,
        backend=backend,
        warmup=warmup,
        iterations=iterations,
        duration=duration,
        batch=batch,
        threads=threads,
        transfers=transfers,
        compare=list(compare or []),
        cuda_graph=cuda_graph,
        plot=plot,
        overwrite=overwrite,
    )
    options.check()  # bad flags exit 2 before the progress display starts
    report = run_bench(options, steps_with_progress(), on_round=_round_printer())
    if plot is not None:
        from .plot import write_plot

        report.plot = str(write_plot(plot, report))
    if json_out:
        print_json(report.to_dict())
    else:
        _render(report)
    failed = report.nonfinite_runs()
    if failed:
        error_line(
            "outputs with NaN/Inf values: "
            + ", ".join(f"{r.label} {r.nonfinite}" for r in failed)
            + " (in the first and first timed runs); the timings are of a broken model: validate the artifact"
        )
        raise typer.Exit(1)


def _round_printer():
    """Round counts on stderr, overwritten in place on a terminal, otherwise silent (logs stay short)."""

    def on_round(done: int, total: Optional[int]) -> None:
        if err.is_terminal:
            err.file.write(f"\r  round {done}" + (f"/{total}" if total else "") + " ")
            err.file.flush()
            if total and done == total:
                err.file.write("\r" + " " * 24 + "\r")

    return on_round


def _mib(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _ms(value: float) -> str:
    # three significant figures or so at any scale: 0.0123, 1.23, 123, 1234
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _rate(value: Optional[float]) -> str:
    return "-" if not value else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def results_table(report: BenchReport) -> Table:
    """Fits 80 columns: what ran (provider) is in the key-value block above, not a column."""
    from rich import box

    results = report.results
    # a SAM artifact's rows time different graphs: no ratio between them, a median per prompt instead
    sam = any(r.graph is not None for r in results)
    compared = len(results) > 1 and not sam
    with_device = any(r.device_memory_delta_bytes is not None for r in results)
    table = Table(
        title="Latency in ms (warm-up excluded)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("backend", no_wrap=True, justify="left")
    for column in (
        ("runs", "min", "mean", "p50", "p90", "p99")
        + (("ms/prompt", "items/s") if sam else ("img/s",))
        + ("MiB",)
        + (("GPU MiB",) if with_device else ())
        + (("x p50",) if compared else ())
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for r in results:
        s = r.stats
        row = [escape(r.label), str(s.iterations)]
        row += [_ms(value) for value in (s.min_ms, s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms)]
        if sam:
            row.append("-" if r.per_prompt_ms is None else _ms(r.per_prompt_ms))
        row += [_rate(s.throughput_ips), _mib(r.host_memory.peak_delta_bytes)]
        if with_device:
            row.append(_mib(r.device_memory_delta_bytes))
        if compared:
            row.append("-" if r.p50_ratio is None else f"{r.p50_ratio:.2f}")
        table.add_row(*row)
    return table


def table_notes(report: BenchReport) -> List[str]:
    """Printed under the table, not as its caption: a long caption widens the table past 80 columns."""
    results, measured = report.results, report.measured()
    notes = ["MiB: peak host resident memory added by loading and the first run"]
    sam = any(r.graph is not None for r in results)
    if sam:
        notes.append(
            "SAM: ms/prompt = p50 / prompts per decoder call; items/s: images (encoder, pair) or prompts (decoder); "
            "pair = the encoder and one decoder call; a graph's load is in its first row's MiB"
        )
    if sam:
        notes.append("rows interleaved round-robin, first runner rotating")
    elif len(measured) > 1:
        notes.append(
            f"runs interleaved round-robin, first runner rotating; x p50 = median / {results[0].label}'s (robust on "
            "a noisy machine)"
        )
    elif len(results) > 1:
        notes.append(f"x p50 = median / {results[0].label}'s")
    sources = {r.label: r.weights_source or "not recorded" for r in report.measured()}
    if len(set(sources.values())) == 1:
        notes.append(f"weights: {next(iter(sources.values()))}")
    elif sources:
        notes.append("weights: " + ", ".join(f"{label} {source}" for label, source in sources.items()))
    checked = [r for r in report.measured() if r.nonfinite is not None]
    if checked:
        bad = [f"{r.label} {r.nonfinite}" for r in checked if r.nonfinite]
        notes.append("NaN/Inf output values (first and first timed runs): " + (", ".join(bad) if bad else "none"))
    for source in dict.fromkeys(r.source for r in results if r.source is not None):
        notes.append(
            f"{source}: rows read from an earlier run (not interleaved with this one, maybe another machine): "
            "their x p50 compares across runs"
        )
    return notes


def _render(report: BenchReport) -> None:
    env, settings = report.environment, report.settings
    gpu = env.gpu
    rows = [
        (
            "cpu",
            escape(
                f"{env.cpu or 'unknown'} ({env.cpu_usable} of {env.cpu_count} cores usable, threads: "
                f"{settings.threads or 'runtime default'})"
            ),
        ),
        (
            "gpu",
            escape(f"{gpu.name} (sm {gpu.compute_capability}, CUDA driver {gpu.driver_cuda_version})")
            if gpu
            else "none",
        ),
        ("batch", ", ".join(sorted({str(r.batch) for r in report.results}))),
    ]
    for r in report.results:
        run = r.runtime
        ran_on = str(run.get("ran_on", "")).replace("ExecutionProvider", "")
        extra = "" if run.get("transfers", True) else ", no host<->device transfers"
        extra += ", CUDA graph" if run.get("cuda_graph") else ""
        extra += ", timed with CUDA events" if r.timer == "cuda-events" else ""
        weights = escape(r.weights_source or "not recorded")
        # the warning itself is under the table
        weights = f"[bold yellow]{weights.upper()}[/]" if r.weights_warning else weights
        rows.append(
            (
                escape(r.label),
                escape(f"{r.artifact} on {run['runtime']} {run['version']} ({ran_on}{extra}); ")
                + f"weights: {weights}",
            )
        )
    jetson = env.jetson
    if jetson:
        mode = jetson.nvpmodel_q
        rows.append(("jetson", escape(mode.splitlines()[0] if mode else "power mode unknown (nvpmodel not found)")))
    out.print(key_values(rows))
    out.print(results_table(report))
    for note in table_notes(report):
        out.print(escape(note), style="dim", highlight=False)
    for warning in dict.fromkeys(r.weights_warning for r in report.measured() if r.weights_warning):
        # loud: the timings are of a model that means nothing
        out.print(f"[bold yellow]{escape(warning)}[/]", highlight=False)
    for r in report.results:
        if r.runtime.get("note"):
            err.print(f"[yellow]note:[/] {escape(r.label)}: {escape(r.runtime['note'])}", highlight=False)
    if report.plot:
        out.print(escape(f"plot: {report.plot}"), highlight=False)
