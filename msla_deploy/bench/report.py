"""The bench report: what `msla-deploy bench --json` prints, and what `--compare FILE.json` reads.

One typed record (`BenchReport`) and its parts. The JSON layout is the one bench printed before
records existed (a file without "format" reads as version 1), so saved reports stay comparable.
The measuring modules fill these parts (stats.py the latency figures, memory.py the memory,
environment.py the machine); nothing else builds their dicts.

torch-free and numpy-free: reading a saved report needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import BadInput
from ..records import Record, RecordError


@dataclass
class LatencyStats:
    """One contestant's timed runs in milliseconds; throughput in images per second (batch / mean
    latency: the mean, not the median, is what a steady stream of work sees)."""

    iterations: int
    min_ms: float
    mean_ms: float
    max_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: Optional[float]  # None when the mean latency is 0 (a clock too coarse)


@dataclass
class HostMemory:
    """Peak resident memory of this process over one block (memory.HostPeak)."""

    peak_rss_bytes: Optional[int]
    start_rss_bytes: Optional[int]
    # without a reset the mark may be older than the block: the delta is then a lower bound
    peak_delta_bytes: Optional[int]
    peak_is_per_block: bool


@dataclass
class GpuFacts:
    """CUDA device 0 as the driver reports it (trt.runtime.probe_gpu), and the driver's own line."""

    name: str
    compute_capability: str  # "8.7"
    driver_cuda_version: str  # the CUDA version the driver supports, "12.6"
    index: int = 0
    driver: Optional[str] = None  # /proc/driver/nvidia/version's first line; Jetson has none


@dataclass
class JetsonFacts:
    """A Jetson's release, board, power mode and clocks, as its files and tools print them (raw
    text: doctor reads the L4T, JetPack and power mode out of it)."""

    l4t_release: Optional[str] = None
    board: Optional[str] = None
    nvpmodel_conf: bool = False
    nvpmodel_q: Optional[str] = None
    jetson_clocks_show: Optional[str] = None  # needs root on most images: its error text otherwise


@dataclass
class BenchEnvironment:
    """What a latency figure depends on, recorded beside it."""

    python: str
    platform: str
    machine: str
    packages: Dict[str, Optional[str]]  # distribution -> version (None: not installed)
    cpu: Optional[str]
    cpu_count: Optional[int]
    cpu_usable: Optional[int]
    threads_requested: Optional[int]
    cpu_governor: Optional[str]
    gpu: Optional[GpuFacts] = None
    jetson: Optional[JetsonFacts] = None


@dataclass
class BenchSettings:
    """The run's options as they were applied (iterations is the count used, default included)."""

    warmup: int
    iterations: Optional[int]  # None: timed by --duration
    duration_s: Optional[float]
    batch: Optional[int]  # --batch as given; each run's own batch is BenchRun.batch
    threads: Optional[int]
    transfers: bool
    cuda_graph: bool
    interleaved: bool  # several contestants timed round-robin in this run


@dataclass
class BenchRun:
    """One contestant's measurement: one row of the table."""

    label: str
    artifact: str
    backend: str  # what ran
    requested: str  # what was asked (may be "auto")
    # what ran, in the runtime layer's words (runtime, version, ran_on, providers, transfers, note
    # ...): its keys are the runtime layer's and differ per backend, so they stay a mapping here
    runtime: Dict[str, Any]
    timer: str  # "host" | "cuda-events"
    batch: int
    host_memory: HostMemory  # added by loading and the first run
    device_memory_delta_bytes: Optional[int]
    stats: LatencyStats
    latencies_ms: List[float] = field(default_factory=list)
    p50_ratio: Optional[float] = None  # median / the baseline's median
    # the saved report this row was read from (--compare FILE.json): measured in another run,
    # maybe on another machine, never interleaved with this one; None: measured here
    source: Optional[str] = None
    # NaN/Inf values in the outputs of the runs checked (the first, untimed run and the first
    # timed run): any fails the bench; None: not checked (a row of a report from before the check)
    nonfinite: Optional[int] = None
    # the artifact's Artifact.weights_source / weights_warning (None: no manifest says / not random)
    weights_source: Optional[str] = None
    weights_warning: Optional[str] = None
    # a multi-graph artifact's (SAM) row: what it times (encoder | decoder | pair: the encoder and
    # one decoder call per image), the decoder's prompts per call (its batch), and the median per
    # prompt; None for a single-graph artifact's row
    graph: Optional[str] = None
    prompts: Optional[int] = None
    per_prompt_ms: Optional[float] = None


#: BenchRun keys written only when set, so a report from before them reads and writes back unchanged
OPTIONAL_RUN_KEYS = ("nonfinite", "weights_source", "weights_warning", "graph", "prompts", "per_prompt_ms")


@dataclass
class BenchReport(Record):
    """`msla-deploy bench`'s result: the settings, one row per contestant, the machine."""

    KIND = "msla-deploy/bench"
    VERSION = 1

    settings: BenchSettings
    baseline: str  # label of the first contestant: every ratio is against it
    results: List[BenchRun]
    host_memory_during_timing: HostMemory
    environment: BenchEnvironment
    timings_s: Dict[str, float]
    plot: Optional[str] = None  # the PNG written by --plot

    def to_dict(self) -> Dict[str, Any]:
        data = super().to_dict()
        if self.plot is None:  # the key appears only with --plot, as it always has
            del data["plot"]
        for row in data["results"]:
            for key in OPTIONAL_RUN_KEYS:
                if row.get(key) is None:
                    del row[key]
        return data

    def measured(self) -> List[BenchRun]:
        """The rows timed in this run (not read from an earlier report)."""
        return [r for r in self.results if r.source is None]

    def nonfinite_runs(self) -> List[BenchRun]:
        """The rows timed in this run whose outputs held NaN/Inf values: a failed bench (exit 1)."""
        return [r for r in self.measured() if r.nonfinite]


def read_earlier(path: Path) -> BenchReport:
    """A report saved from `bench --json`, for --compare. Another document, a newer version or a
    broken file is bad input (exit 2) on one line."""
    try:
        return BenchReport.read(path)
    except RecordError as exc:
        newer = "newer msla-deploy" in exc.problem
        raise BadInput(
            f"--compare {exc.problem}",
            exc.fix if newer else "pass a report saved with `msla-deploy bench ... --json > FILE.json`",
        ) from None


def is_saved_report(item: str) -> bool:
    """A --compare item naming a saved report rather than a backend or an artifact."""
    return item.lower().endswith(".json")
