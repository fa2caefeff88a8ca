"""`bench` of a SAM artifact: the encoder, the decoder at B = 1 and B = 16 prompts, and the pair.

    encoder        one image -> image_embeddings
    decoder B=1    one prompt of P = 3 points (a box's two corners and a padding point)
    decoder B=16   sixteen such prompts in one call (a multi-box image; the profile's opt point)
    pair           what one image with one prompt costs: the encoder, then one decoder call of B = 1

Each row is a BenchRun of the segmentation bench (report.py), measured by the same loop
(run.measure: warm-up, rounds interleaved with the first runner rotating, the first run never
timed, NaN/Inf counted in the first and the first timed run), with `graph`, `prompts` and the
median per prompt added. The decoder runs on the encoder's embeddings of a reference picture
(the export's reference/ when present, else seeded noise). A row's memory is what loading its
session (the first row of each graph) and its first run added.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, List, Optional

import numpy as np

from .. import runtime
from ..artifact.graphs import DECODER, ENCODER
from ..artifact.names import REFERENCE_DIR
from ..artifact.resolve import Artifact
from ..artifact.sam_io import (
    BOX_LABELS,
    DECODER_INPUTS,
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    LOW_RES_SIDE,
    MASK_INPUT,
    PAD_LABEL,
    POINT_COORDS,
    POINT_LABELS,
    POINTS_DIM,
    PROMPT_FRAME,
    PROMPTS_DIM,
)
from ..errors import BadInput
from ..progress import Steps
from ..runtime.session import Backend
from . import backends
from .environment import capture
from .memory import HostPeak, device_memory_used
from .report import BenchReport, BenchSettings

#: the decoder's rows: prompts per call (bench's B); points per prompt (a box and a pad point)
PROMPT_COUNTS = (1, 16)
POINTS = 3
SEED = 0


def refuse_options(options, artifact: Artifact) -> None:
    """Options of the single-graph bench that mean nothing here: one line, exit 2."""
    refusals = (
        (options.batch is not None, "--batch", "the encoder takes one image and the decoder is timed at B=1 and B=16"),
        (bool(options.compare), "--compare", "bench one SAM artifact at a time (save --json reports to compare them)"),
        (options.cuda_graph, "--cuda-graph", "drop it (SAM engines are timed on the host clock)"),
        (not options.transfers, "--no-transfers", "drop it (SAM engines are timed with their transfers)"),
    )
    for refused, flag, fix in refusals:
        if refused:
            raise BadInput(f"{flag} does not apply to SAM artifacts ({artifact.path})", fix)


def choose_backend(requested: str, artifact: Artifact) -> Backend:
    if requested == "trt":  # an engine per graph (runtime.choose would ask for the one engine)
        return Backend(requested, "trt", strict=True)
    if requested == "torch" or runtime.is_triton_target(requested):
        raise BadInput(
            f"bench --backend {requested} does not support SAM artifacts yet", "bench with --backend ort-cpu or trt"
        )
    return backends.choose(requested, artifact)


def box_prompts(count: int, points: int, seed: int = SEED) -> Dict[str, np.ndarray]:
    """`count` prompts of a box (labels 2, 3) and a padding point (-1), in the prompt frame, cut to
    `points` points where the decoder's profile takes fewer; no mask input."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, PROMPT_FRAME / 2, size=(count, 2))
    size = rng.uniform(64, PROMPT_FRAME / 2, size=(count, 2))
    coords = np.zeros((count, POINTS, 2), dtype=np.float32)
    coords[:, 0], coords[:, 1] = corner, corner + size
    labels = np.tile(np.asarray([*BOX_LABELS, PAD_LABEL], dtype=np.float32), (count, 1))
    return {
        POINT_COORDS: np.ascontiguousarray(coords[:, :points]),
        POINT_LABELS: np.ascontiguousarray(labels[:, :points]),
        MASK_INPUT: np.zeros((count, 1, LOW_RES_SIDE, LOW_RES_SIDE), dtype=np.float32),
        HAS_MASK_INPUT: np.zeros((count,), dtype=np.float32),
    }


def _image(artifact: Artifact, shape) -> np.ndarray:
    """A reference picture of the export (SAM's input), else seeded noise of the encoder's shape."""
    folder = artifact.directory / REFERENCE_DIR
    if folder.is_dir():
        from ..artifact.reference import read_reference

        images = read_reference(folder).inputs.get(IMAGE)
        if images is not None and tuple(images.shape[1:]) == tuple(shape[1:]):
            return np.ascontiguousarray(images[:1].astype(np.float32))
    return np.random.default_rng(SEED).standard_normal(tuple(shape), dtype=np.float32)


def _decoder_size(profile, dim: str, wanted: int) -> int:
    return min(wanted, profile[dim].max) if dim in profile else wanted


def run_sam_bench(
    options, artifact: Artifact, steps: Steps, on_round: Callable[[int, Optional[int]], None]
) -> BenchReport:
    """run.run_bench for a SAM artifact (`options`: its BenchOptions, checked)."""
    from ..parity.validate_sam import graph_files, open_graph
    from .run import DEFAULT_ITERATIONS, _Contestant, check_plot, measure

    refuse_options(options, artifact)
    if artifact.kind != "directory" or artifact.manifest is None:
        raise BadInput(
            f"{artifact.path} is one graph of a SAM artifact; bench times both graphs",
            f"pass the artifact directory {artifact.path.parent}",
        )
    check_plot(options, [artifact])
    backend = choose_backend(options.backend, artifact)
    encoder_file, decoder_file = graph_files(artifact, backend)
    backends.preflight(backend)
    iterations = (
        options.iterations if options.iterations is not None or options.duration is not None else DEFAULT_ITERATIONS
    )
    environment = capture(options.threads)
    on_gpu = environment.gpu is not None
    profile = decoder_file.graph.profile
    points = _decoder_size(profile, POINTS_DIM, POINTS)
    counts = list(dict.fromkeys(_decoder_size(profile, PROMPTS_DIM, b) for b in PROMPT_COUNTS))
    image = _image(artifact, encoder_file.graph.input(IMAGE).shape)

    sessions = []
    rows: List[_Contestant] = []
    extras: List[Dict] = []

    def load(label: str, graph: str, prompts: Optional[int], batch: int, run, session=None, file=None):
        """One row: its session opened (the first row of a graph) and its first run, under one HostPeak."""
        with steps.step(f"load:{label}", f"loading {artifact.name}: {label} on {backend.name}"):
            before = device_memory_used() if on_gpu else None
            with HostPeak() as peak:
                if session is None:
                    session = open_graph(file, backend, options.threads)
                    sessions.append(session)
                first = run(session)
            after = device_memory_used() if on_gpu else None
        item = backends.Loaded(session.backend, lambda: run(session), session.describe(), batch)
        contestant = _Contestant(
            label, artifact, backend.requested, item, peak.result(), None if None in (before, after) else after - before
        )
        contestant.check(first)
        rows.append(contestant)
        extras.append({"graph": graph, "prompts": prompts})
        return session, first

    try:
        encoder, encoded = load(ENCODER, ENCODER, None, 1, lambda s: s.run({IMAGE: image}), file=encoder_file)
        embeddings = {IMAGE_EMBEDDINGS: np.ascontiguousarray(encoded[IMAGE_EMBEDDINGS])}
        feeds = {b: {**embeddings, **box_prompts(b, points)} for b in counts}
        decoder = None
        for b in counts:
            decoder, _ = load(
                f"decoder B={b}", DECODER, b, b, lambda s, b=b: s.run(feeds[b]), session=decoder, file=decoder_file
            )
        prompt = {name: feeds[counts[0]][name] for name in DECODER_INPUTS[1:]}

        def pair(_session):
            return decoder.run({IMAGE_EMBEDDINGS: encoder.run({IMAGE: image})[IMAGE_EMBEDDINGS], **prompt})

        load(f"pair (encoder + decoder B={counts[0]})", "pair", counts[0], 1, pair, session=decoder)
        with steps.step("measure", f"timing {len(rows)} rows of {artifact.name}, interleaved"):
            with HostPeak() as run_peak:
                latencies = measure(
                    [r.item.run for r in rows],
                    options.warmup,
                    iterations,
                    options.duration,
                    lambda r: on_round(r, iterations),
                    on_first=lambda i, result: rows[i].check(result),
                )
    finally:
        for session in sessions:
            session.close()

    results = []
    for contestant, seconds, extra in zip(rows, latencies, extras):
        row = contestant.row(seconds)
        per_prompt = row.stats.p50_ms / extra["prompts"] if extra["graph"] == DECODER else None
        results.append(replace(row, per_prompt_ms=per_prompt, **extra))
    return BenchReport(
        settings=BenchSettings(
            warmup=options.warmup,
            iterations=iterations,
            duration_s=options.duration,
            batch=None,
            threads=options.threads,
            transfers=options.transfers,
            cuda_graph=False,
            interleaved=True,
        ),
        baseline=results[0].label,
        results=results,
        host_memory_during_timing=run_peak.result(),
        environment=environment,
        timings_s=steps.timings,
    )
