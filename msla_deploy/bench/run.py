"""The bench library call: resolve what to run, load each contestant, time them (interleaved
when there are several), and return one BenchReport record (report.py). The CLI only parses and
renders.

Each row counts the NaN/Inf values its outputs held (the first, untimed run and the first timed
run: any fails the bench) and carries its artifact's weights source. A --plot file passes the
output guard (artifact/outputs.py: never onto an artifact or a saved report being compared)
and, existing, is replaced only with `overwrite`, all before anything loads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..artifact.names import ONNX_NAME
from ..artifact.outputs import guard_for
from ..artifact.resolve import Artifact, resolve
from ..errors import BadInput
from ..progress import Steps
from ..runtime.tensorrt import engine_hint
from ..runtime.triton import is_triton_target
from ..tasks import SAM
from . import backends
from .environment import capture
from .memory import HostPeak, device_memory_used
from .report import BenchReport, BenchRun, BenchSettings, HostMemory, is_saved_report, read_earlier
from .stats import interleaved_order, median_ratios, rotation, summarize

DEFAULT_ITERATIONS = 20
DEFAULT_WARMUP = 3


@dataclass
class BenchOptions:
    artifact: Path
    backend: str = "auto"
    warmup: int = DEFAULT_WARMUP
    iterations: Optional[int] = None
    duration: Optional[float] = None  # seconds; the loop stops after the round that crosses it
    batch: Optional[int] = None
    threads: Optional[int] = None
    transfers: bool = True  # TensorRT: copy inputs/outputs every run (False = --noDataTransfers)
    compare: List[str] = field(default_factory=list)  # backends, artifacts, ARTIFACT@BACKEND, or saved FILE.json
    cuda_graph: bool = False  # TensorRT: launch a CUDA graph of the enqueue, captured once at load
    # --plot: where the command writes the latency picture (checked here, before anything runs)
    plot: Optional[Path] = None
    overwrite: bool = False  # replace an existing --plot file

    def check(self) -> None:
        if self.iterations is not None and self.duration is not None:
            raise BadInput("--iterations and --duration both given", "pass one: a count of runs, or seconds to run for")
        if self.iterations is not None and self.iterations < 1:
            raise BadInput(f"--iterations {self.iterations}: must be at least 1", "pass --iterations 20, for example")
        if self.duration is not None and not self.duration > 0:
            raise BadInput(
                f"--duration {self.duration}: must be more than 0 seconds", "pass --duration 10, for example"
            )
        if self.warmup < 0:
            raise BadInput(f"--warmup {self.warmup}: must be 0 or more", "pass --warmup 3, for example")
        if self.batch is not None and self.batch < 1:
            raise BadInput(f"--batch {self.batch}: must be at least 1", "drop --batch to use the model's own")
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"--threads {self.threads}: must be at least 1", "drop --threads to let the runtime choose")


def _contestant_specs(options: BenchOptions, main: Artifact) -> List[Tuple[Artifact, str]]:
    """(artifact, requested backend) for the main run and each --compare: a backend name means
    the main artifact on that backend; anything else is an artifact (ARTIFACT@BACKEND picks one)."""
    specs = [(main, options.backend)]
    for item in options.compare:
        if is_saved_report(item):
            continue  # an earlier run's rows, not something to time (_earlier_rows)
        if item in backends.BACKENDS or is_triton_target(item):  # triton://...: the main artifact, served
            specs.append((main, item))
            continue
        path, backend = item, "auto"
        if "@" in item and not Path(item).exists():  # a path may hold "@" itself
            path, backend = item.rsplit("@", 1)
            if backend not in backends.BACKENDS and not is_triton_target(backend):
                raise BadInput(
                    f"--compare {item}: unknown backend {backend!r}", f"choose one of {', '.join(backends.BACKENDS)}"
                )
        elif not Path(item).exists() and not Path(item).suffix and "/" not in item:  # a mistyped backend name
            raise BadInput(
                f"--compare {item}: neither a backend nor a file",
                f"backends: {', '.join(backends.BACKENDS)}; or pass ARTIFACT[@BACKEND]",
            )
        specs.append((resolve(Path(path)), backend))
    return specs


def check_plot(options: BenchOptions, artifacts: List[Artifact]) -> None:
    """--plot may not land on (or in) any artifact being timed or a saved report being compared,
    and replaces an existing file only with --overwrite."""
    if options.plot is None:
        return
    plot = Path(options.plot)
    saved = [Path(item) for item in options.compare if is_saved_report(item)]
    for artifact in {str(a.path): a for a in artifacts}.values():
        guard_for(artifact, inputs=saved).check(plot, "--plot")
    if plot.is_dir():
        raise BadInput(f"--plot {plot} is a folder", "name the PNG file to write, e.g. --plot latency.png")
    if (plot.exists() or plot.is_symlink()) and not options.overwrite:
        raise BadInput(f"--plot {plot} exists", "pass --overwrite to replace it, or name another file")


def _onnx_beside(artifact: Artifact) -> Optional[Path]:
    """The export's model.onnx next to an engine given by itself, for a hint."""
    beside = artifact.path.parent / ONNX_NAME
    return beside if artifact.path.is_file() and beside.is_file() else None


def _labels(chosen: List[Tuple[Artifact, str]]) -> List[str]:
    one_artifact = len({str(a.path) for a, _ in chosen}) == 1
    labels = [name if one_artifact else f"{a.name}:{name}" for a, name in chosen]
    seen: Dict[str, int] = {}
    for i, label in enumerate(labels):  # the same contestant twice (an A/A run) stays tellable
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}#{seen[label]}"
    return labels


def measure(
    runs: List[Callable[[], object]],
    warmup: int,
    iterations: Optional[int],
    duration: Optional[float],
    on_round: Callable[[int], None] = lambda r: None,
    timed: Optional[List[Optional[Callable[[], float]]]] = None,
    on_first: Callable[[int, object], None] = lambda i, result: None,
) -> List[List[float]]:
    """Seconds per run for each callable, one round at a time in rotating order; warm-up rounds
    are run the same way and not recorded. Where `timed[i]` is given it runs instead and returns
    its own seconds (CUDA events); otherwise the host clock times runs[i]. `on_first(i, result)`
    after the first timed run of each (outside its time): what it returned (its seconds for a
    self-timed run), for the check of its outputs."""
    timed = timed or [None] * len(runs)
    count = len(runs)
    for order in interleaved_order(count, warmup):
        for i in order:
            runs[i]()
    latencies: List[List[float]] = [[] for _ in runs]
    clock = time.perf_counter
    started, rounds = clock(), 0
    while True:
        if iterations is not None and rounds >= iterations:
            break
        if duration is not None and rounds and clock() - started >= duration:
            break
        for i in rotation(count, rounds):
            if timed[i] is not None:
                result = timed[i]()
                latencies[i].append(result)
            else:
                t0 = clock()
                result = runs[i]()
                latencies[i].append(clock() - t0)
            if not rounds:
                on_first(i, result)
        rounds += 1
        on_round(rounds)
    return latencies


def _earlier_rows(options: BenchOptions) -> List[BenchRun]:
    """The rows each saved report (--compare FILE.json) measured itself, labelled with its file.
    Read before anything loads, so a wrong file is exit 2 at once."""
    rows: List[BenchRun] = []
    for item in options.compare:
        if is_saved_report(item):
            earlier = read_earlier(Path(item))
            rows += [
                replace(r, label=f"{Path(item).name}:{r.label}", source=item, p50_ratio=None)
                for r in earlier.measured()
            ]
    return rows


@dataclass
class _Contestant:
    """A loaded contestant and what its loading cost, until its timing makes it a BenchRun."""

    label: str
    artifact: Artifact
    requested: str
    item: backends.Loaded
    host_memory: HostMemory
    device_memory_delta_bytes: Optional[int]
    nonfinite: int = 0  # NaN/Inf output values of the runs checked so far

    def check(self, result: object) -> None:
        """Count the NaN/Inf values of the run that returned `result`."""
        self.nonfinite += backends.count_nonfinite(self.item.outputs(result))

    def row(self, seconds: List[float]) -> BenchRun:
        item = self.item
        return BenchRun(
            label=self.label,
            artifact=str(self.artifact.path),
            backend=item.backend,
            requested=self.requested,
            runtime=item.runtime,
            timer=item.timer,
            batch=item.batch,
            host_memory=self.host_memory,
            device_memory_delta_bytes=self.device_memory_delta_bytes,
            stats=summarize(seconds, item.batch),
            latencies_ms=[s * 1e3 for s in seconds],
            nonfinite=self.nonfinite,
            weights_source=self.artifact.weights_source,
            weights_warning=self.artifact.weights_warning,
        )


def run_bench(
    options: BenchOptions,
    steps: Optional[Steps] = None,
    on_round: Callable[[int, Optional[int]], None] = lambda r, t: None,
) -> BenchReport:
    steps = steps or Steps()
    options.check()
    main = resolve(options.artifact)
    if main.task.name == SAM:  # two graphs: the encoder, the decoder at two batches, the pair (sam.py)
        from .sam import run_sam_bench

        return run_sam_bench(options, main, steps, on_round)
    specs = _contestant_specs(options, main)
    check_plot(options, [artifact for artifact, _ in specs])
    earlier = _earlier_rows(options)
    chosen = [(artifact, backends.choose(requested, artifact)) for artifact, requested in specs]
    if options.cuda_graph and not any(backend.name == "trt" for _, backend in chosen):
        raise BadInput(
            f"--cuda-graph applies to TensorRT only, and {chosen[0][1].name} runs here",
            "pass --backend trt (or an .engine), or drop --cuda-graph",
        )
    for artifact, backend in chosen:
        # an engine alone: --backend ort-cpu is refused
        with engine_hint(artifact.is_engine or artifact.onnx_path is None, "bench", _onnx_beside(artifact)):
            backends.preflight(backend)  # a missing runtime exits 3 before anything loads
    labels = _labels([(a, b.name) for a, b in chosen])
    iterations = (
        options.iterations if options.iterations is not None or options.duration is not None else DEFAULT_ITERATIONS
    )
    environment = capture(options.threads)
    on_gpu = environment.gpu is not None

    contestants: List[_Contestant] = []
    loaded: List[backends.Loaded] = []
    try:
        for (artifact, backend), label in zip(chosen, labels):
            with steps.step(f"load:{label}", f"loading {artifact.name} on {label}"):
                device_before = device_memory_used() if on_gpu else None
                with HostPeak() as peak:
                    with engine_hint(artifact.is_engine or artifact.onnx_path is None, "bench", _onnx_beside(artifact)):
                        item = backends.load(
                            artifact,
                            backend,
                            batch=options.batch,
                            threads=options.threads,
                            transfers=options.transfers,
                            cuda_graph=options.cuda_graph,
                        )
                    loaded.append(item)  # closed below even if its first run fails
                    first = item.run()  # the first run allocates; it is never timed (warm-up comes on top)
                device_after = device_memory_used() if on_gpu else None
            device_delta = None if device_after is None or device_before is None else device_after - device_before
            contestant = _Contestant(label, artifact, backend.requested, item, peak.result(), device_delta)
            contestant.check(first)
            del first
            contestants.append(contestant)
        title = f"timing {len(loaded)} backend(s), interleaved" if len(loaded) > 1 else f"timing {labels[0]}"
        with steps.step("measure", title):
            with HostPeak() as run_peak:
                latencies = measure(
                    [item.run for item in loaded],
                    options.warmup,
                    iterations,
                    options.duration,
                    lambda r: on_round(r, iterations),
                    timed=[item.timed for item in loaded],
                    on_first=lambda i, result: contestants[i].check(result),
                )
    finally:
        for item in loaded:
            item.close()

    results = [c.row(seconds) for c, seconds in zip(contestants, latencies)] + earlier
    for result, ratio in zip(results, median_ratios([r.stats.p50_ms for r in results])):
        result.p50_ratio = ratio
    if len({r.batch for r in results}) > 1:
        steps.warn(
            "the runs feed different batches ("
            + ", ".join(f"{r.label}: {r.batch}" for r in results)
            + "): x p50 compares "
            "the latency of one run; compare img/s for throughput, or pass --batch"
        )
    return BenchReport(
        settings=BenchSettings(
            warmup=options.warmup,
            iterations=iterations,
            duration_s=options.duration,
            batch=options.batch,
            threads=options.threads,
            transfers=options.transfers,
            cuda_graph=options.cuda_graph,
            interleaved=len(loaded) > 1,
        ),
        baseline=results[0].label,
        results=results,
        host_memory_during_timing=run_peak.result(),
        environment=environment,
        timings_s=steps.timings,
    )
