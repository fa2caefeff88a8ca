"""EfficientViT-SAM on this CPU: our encoder.onnx against upstream's own encoder export, the
decoder's latency per prompt, and what exporting the large xl1 (1024) costs.

    .venv/bin/python benchmarks/sam_bench.py --upstream EFFICIENTVIT --segment-anything SEGMENT_ANYTHING \
        [--model efficientvit-sam-l0] [--export-model efficientvit-sam-xl1] [--runs N] [--json FILE]

EFFICIENTVIT: a checkout of https://github.com/mit-han-lab/efficientvit; SEGMENT_ANYTHING: one of
https://github.com/facebookresearch/segment-anything (upstream's SAM models import its modules).
Neither is a dependency of msla-deploy: they are loaded in child processes only, the way
tests/data/upstream/sam/make_sam_data.py loads them (inert stand-ins for triton and torchvision,
which upstream imports at module level and the export never calls).

What is measured, and how:

1. The encoder under ONNX Runtime (CPU), ours against upstream's. Both load one checkpoint: the
   seeded weights of tests/zoo/sam_golden.py (the golden data's; trained-like magnitudes, not a
   fresh init) saved as a .pt. Upstream's file is made by upstream's own
   applications/efficientvit_sam/deployment/onnx/export_encoder.py, its `run_export` called as
   its command line calls it (opset 17), with one change: torch >= 2.9 defaults
   `torch.onnx.export` to the dynamo exporter, so the legacy TorchScript exporter that script was
   written for is asked for explicitly (dynamo=False). Ours is `msla-deploy export --model M
   --weights W`, run as a user runs it. Both graphs first run on the same picture (our reference
   bundle's first); the benchmark refuses to time graphs whose embeddings differ by more than
   1e-3 of their peak. Then one session per graph, runs interleaved (ours, upstream, then
   upstream, ours, ...); the result is the ratio of medians ours/upstream with a bootstrap
   interval over the pairs.
2. The decoder (ours; fp32, B prompts dynamic) at B = 1 and B = 16 boxes on those embeddings,
   interleaved too: latency per call and per prompt, and the per-prompt ratio B=16 / B=1.
3. `msla-deploy export --model efficientvit-sam-xl1` (fp32) in a child process: wall time, CPU
   time, peak RSS (os.wait4's ru_maxrss of that process), its step timings; upstream's encoder
   export of the same weights beside it, as the baseline of the ratios (ours does more: a PyTorch
   reference, the decoder graph, checks, an ONNX Runtime parity run).

The parent process never imports torch (only ONNX Runtime runs in it). Helpers shared with
export_vs_naive.py (process measurement, sessions, interleaved timing, bootstrap) come from there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from export_vs_naive import (
    _check,
    _msla_deploy_command,
    _percentile,
    _source_state,
    _table,
    bootstrap_ratio,
    graph_summary,
    make_session,
    run_measured,
    time_interleaved,
)

REPO = Path(__file__).resolve().parents[1]
OPSET = 17  # upstream's export_encoder.py default
UPSTREAM_SCRIPT = Path("applications/efficientvit_sam/deployment/onnx/export_encoder.py")
#: the decoder's two prompt counts (bench's B = 1 and B = 16)
PROMPT_COUNTS = (1, 16)
#: graphs computing the same function agree far better than this; a wrong graph does not
AGREEMENT = 1e-3


# ---------------------------------------------------------------------------------------------
# Child modes: run in their own processes (torch lives only here)
# ---------------------------------------------------------------------------------------------


def _child_make_weights(path: Path, model_name: str) -> None:
    """tests/zoo/sam_golden.py's seeded weights (those of the golden data) as a checkpoint."""
    sys.path.insert(0, str(REPO))  # `tests` is a package at the repository root
    import torch

    from msla_deploy.zoo.sam import build_sam
    from tests.zoo import sam_golden

    torch.save(sam_golden.fill_model(build_sam(model_name)).state_dict(), path)


def _child_export_upstream(out: Path, model_name: str, weights: Path, efficientvit: Path, sam: Path) -> None:
    """Upstream's export_encoder.run_export, unmodified, with the legacy exporter it was written for."""
    import importlib.util

    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    import torch

    from tests.data.upstream.sam.make_sam_data import load_upstream_sam

    load_upstream_sam(efficientvit, sam)  # upstream's modules, stand-ins for triton and torchvision
    spec = importlib.util.spec_from_file_location("upstream_export_encoder", efficientvit / UPSTREAM_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    timings = {"import": time.perf_counter() - started}

    export = torch.onnx.export

    def legacy_export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)  # torch >= 2.9 defaults to dynamo; upstream's torch did not
        return export(*args, **kwargs)

    torch.onnx.export = legacy_export
    mark = time.perf_counter()
    script.run_export(model=model_name, weight_url=str(weights), output=str(out), opset=OPSET)
    timings["run_export"] = time.perf_counter() - mark
    print(json.dumps({"timings_s": {k: round(v, 3) for k, v in timings.items()}, "torch": torch.__version__}))


# ---------------------------------------------------------------------------------------------
# Steps of the parent
# ---------------------------------------------------------------------------------------------


def _self_command(*args: str) -> List[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def make_weights(path: Path, model: str, log_dir: Path) -> Dict:
    result = run_measured(_self_command("--_make-weights", str(path), "--model", model), log_dir, f"weights-{model}")
    _check(result, f"making the seeded weights of {model}")
    return {"wall_s": result["wall_s"]}


def export_ours(out: Path, model: str, weights: Path, exporter: str, log_dir: Path) -> Dict:
    command = _msla_deploy_command() + [
        "export",
        "--model",
        model,
        "--weights",
        str(weights),
        "--exporter",
        exporter,
        "--out",
        str(out),
        "--json",
    ]
    result = run_measured(command, log_dir, f"ours-{model}")
    _check(result, "msla-deploy export", allowed=(0, 1))  # 1: parity failed, the JSON still says how
    try:
        report = json.loads(result["stdout"])
    except ValueError:  # exit 1 is also "internal error", which prints no JSON
        _check(dict(result, returncode=f"{result['returncode']}, no JSON on stdout"), "msla-deploy export", allowed=())
    manifest = report["manifest"]
    return {
        "wall_s": result["wall_s"],
        "peak_rss_mib": result["peak_rss_mib"],
        "cpu_s": result["cpu_s"],
        "timings_s": manifest["timings_s"],
        "exporter_used": manifest["exporter"]["used"],
        "parity_passed": report["passed"],
        "command": " ".join(command),
    }


def export_upstream(out: Path, model: str, weights: Path, args, log_dir: Path) -> Dict:
    command = _self_command(
        "--_export-upstream",
        str(out),
        "--model",
        model,
        "--weights",
        str(weights),
        "--upstream",
        str(args.upstream),
        "--segment-anything",
        str(args.segment_anything),
    )
    result = run_measured(command, log_dir, f"upstream-{model}")
    _check(result, "upstream's export_encoder.py")
    report = json.loads(result["stdout"].strip().splitlines()[-1])
    return {
        "wall_s": result["wall_s"],
        "peak_rss_mib": result["peak_rss_mib"],
        "cpu_s": result["cpu_s"],
        "timings_s": report["timings_s"],
        "torch": report["torch"],
        "command": " ".join(command),
    }


def _latency(times: Sequence[float], created: float) -> Dict:
    return {
        "median_s": statistics.median(times),
        "p90_s": _percentile(times, 0.9),
        "min_s": min(times),
        "session_create_s": round(created, 3),
        "all_s": [round(t, 5) for t in times],
    }


def _ratio(ours: Sequence[float], base: Sequence[float]) -> Dict:
    pairs = [o / b for o, b in zip(ours, base)]
    return {
        "of_medians": statistics.median(ours) / statistics.median(base),
        "bootstrap_95": bootstrap_ratio(ours, base),
        "pairs_median": statistics.median(pairs),
        "pairs_min": min(pairs),
        "pairs_max": max(pairs),
    }


def time_encoders(ours: Path, upstream: Path, reference: Path, args, tmp: Path) -> Dict:
    """Both encoders on our reference bundle's first picture: agreement first, then interleaved runs."""
    import numpy as np

    from msla_deploy.artifact.reference import read_reference
    from msla_deploy.artifact.sam_io import IMAGE, IMAGE_EMBEDDINGS

    bundle = read_reference(reference)
    image = bundle.inputs[IMAGE][:1]
    torch_embeddings = bundle.outputs[IMAGE_EMBEDDINGS][:1]
    sessions, created, feeds = {}, {}, {}
    for name, path in (("ours", ours), ("upstream", upstream)):
        sessions[name], created[name] = make_session(path, args.threads, "all", tmp / f"{name}.ort.onnx")
        feeds[name] = {sessions[name].get_inputs()[0].name: image}
    embeddings = {name: sessions[name].run(None, feeds[name])[0] for name in sessions}
    peak = float(np.abs(torch_embeddings).max())
    check = {
        "max_abs_ours_vs_upstream": float(np.abs(embeddings["ours"] - embeddings["upstream"]).max()),
        "max_abs_ours_vs_torch": float(np.abs(embeddings["ours"] - torch_embeddings).max()),
        "max_abs_upstream_vs_torch": float(np.abs(embeddings["upstream"] - torch_embeddings).max()),
        "peak": peak,
        "tolerance": AGREEMENT * peak,
    }
    check["passed"] = check["max_abs_ours_vs_upstream"] <= check["tolerance"]
    if not check["passed"]:
        raise SystemExit(f"the two encoders disagree: {check}; refusing to time them")
    print(f"timing the encoders: {args.runs} interleaved pairs ...", file=sys.stderr, flush=True)
    times = time_interleaved(sessions, feeds, args.runs, args.warmup)
    graphs = {}
    for name, path in (("ours", ours), ("upstream", upstream)):
        summary, optimized = graph_summary(path), graph_summary(tmp / f"{name}.ort.onnx")
        graphs[name] = {"nodes": summary["nodes"], "ort_optimized_nodes": optimized["nodes"]}
    return {
        "check": check,
        "graphs": graphs,
        "ours": _latency(times["ours"], created["ours"]),
        "upstream": _latency(times["upstream"], created["upstream"]),
        "ratio": _ratio(times["ours"], times["upstream"]),
        "embeddings": embeddings["ours"],
    }


def decoder_feeds(embeddings, seed: int) -> Dict[str, Dict]:
    """B seeded boxes in the 1024 prompt frame, for each B of PROMPT_COUNTS."""
    import numpy as np

    from msla_deploy.artifact.sam_io import IMAGE_EMBEDDINGS, decoder_feed

    rng = np.random.default_rng(seed)
    feeds = {}
    for count in PROMPT_COUNTS:
        corner = rng.uniform(0, 600, size=(count, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(50, 400, size=(count, 2))], axis=1)
        feeds[f"B={count}"] = {**decoder_feed(boxes=boxes), IMAGE_EMBEDDINGS: embeddings}
    return feeds


def time_decoder(decoder: Path, embeddings, args) -> Dict:
    session, created = make_session(decoder, args.threads, "all")
    feeds = decoder_feeds(embeddings, args.seed)
    sessions = {name: session for name in feeds}  # one session, two prompt counts
    print(f"timing the decoder: {args.runs} interleaved pairs ...", file=sys.stderr, flush=True)
    times = time_interleaved(sessions, feeds, args.runs, args.warmup)
    out = {"session_create_s": round(created, 3)}
    for count in PROMPT_COUNTS:
        name = f"B={count}"
        out[name] = _latency(times[name], created)
        out[name]["per_prompt_median_s"] = out[name]["median_s"] / count
    small, large = (f"B={count}" for count in PROMPT_COUNTS)
    per_prompt = [b / PROMPT_COUNTS[1] / (a / PROMPT_COUNTS[0]) for a, b in zip(times[small], times[large])]
    out["per_prompt_ratio"] = {
        "of_medians": out[large]["per_prompt_median_s"] / out[small]["per_prompt_median_s"],
        "pairs_min": min(per_prompt),
        "pairs_max": max(per_prompt),
    }
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _export_row(label: str, e: Dict) -> List[str]:
    steps = ", ".join(f"{k} {v:.1f}" for k, v in e["timings_s"].items())
    return [label, f"{e['wall_s']:.1f}", f"{e['cpu_s']:.1f}", f"{e['peak_rss_mib']:.0f}", steps]


def render(results: Dict) -> str:
    out = []
    enc = results["encoder"]
    out.append(
        f"{results['model']}: encoder under ONNX Runtime CPU, {results['threads']} thread(s), level all; "
        f"ours ({results['export']['ours_exporter_used']}) vs upstream's export_encoder.py (legacy exporter, opset "
        f"{OPSET})"
    )
    c = enc["check"]
    out.append(
        f"same embeddings: max |ours - upstream| = {c['max_abs_ours_vs_upstream']:.3g}; vs PyTorch: ours "
        f"{c['max_abs_ours_vs_torch']:.3g}, upstream {c['max_abs_upstream_vs_torch']:.3g} (peak {c['peak']:.3g})"
    )
    rows = [
        [
            name,
            _ms(enc[name]["median_s"]),
            _ms(enc[name]["p90_s"]),
            _ms(enc[name]["min_s"]),
            f"{enc[name]['session_create_s']:.2f}",
            enc["graphs"][name]["nodes"],
            enc["graphs"][name]["ort_optimized_nodes"],
        ]
        for name in ("upstream", "ours")
    ]
    out.append(_table(rows, ["encoder", "median ms", "p90 ms", "min ms", "session s", "nodes", "nodes after ORT"]))
    r = enc["ratio"]
    out.append(
        f"ours/upstream: ratio of medians {r['of_medians']:.3f} (bootstrap 95% {r['bootstrap_95'][0]:.3f}.."
        f"{r['bootstrap_95'][1]:.3f}; per-pair min {r['pairs_min']:.3f}, max {r['pairs_max']:.3f}; "
        f"{results['runs']} pairs)"
    )
    out.append("")
    dec = results["decoder"]
    rows = [
        [
            name,
            _ms(dec[name]["median_s"]),
            _ms(dec[name]["p90_s"]),
            _ms(dec[name]["min_s"]),
            _ms(dec[name]["per_prompt_median_s"]),
        ]
        for name in (f"B={count}" for count in PROMPT_COUNTS)
    ]
    out.append(_table(rows, ["decoder (boxes)", "median ms", "p90 ms", "min ms", "per prompt ms"]))
    p = dec["per_prompt_ratio"]
    out.append(
        f"per prompt, B={PROMPT_COUNTS[1]} / B={PROMPT_COUNTS[0]}: ratio of medians {p['of_medians']:.3f} "
        f"(per-pair min {p['pairs_min']:.3f}, max {p['pairs_max']:.3f})"
    )
    out.append("")
    rows = [
        _export_row(f"upstream encoder {results['model']}", results["export"]["upstream_encoder"]),
        _export_row(f"ours {results['model']}", results["export"]["ours_encoder"]),
    ]
    big = results.get("big_export")
    if big:
        rows.append(_export_row(f"upstream encoder {big['model']}", big["upstream"]))
        rows.append(_export_row(f"ours {big['model']}", big["ours"]))
    out.append(_table(rows, ["export", "wall s", "CPU s", "peak RSS MiB", "steps (s)"]))
    if big:
        ratios = big["ratios"]
        out.append(
            f"{big['model']} ours/upstream: wall {ratios['wall']:.2f}x, CPU {ratios['cpu']:.2f}x, "
            f"peak RSS {ratios['peak_rss']:.2f}x (ours exports both graphs and runs a reference and parity)"
        )
    for label, e in (("ours", results["export"]["ours_encoder"]), ("ours xl", (big or {}).get("ours"))):
        if e and not e["parity_passed"]:
            out.append(f"WARNING: {label}: the export's own parity check failed (msla-deploy exited 1)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _big_export(args, tmp: Path) -> Dict:
    model = args.export_model
    weights = tmp / f"{model}.pt"
    print(f"making the seeded weights of {model} ...", file=sys.stderr, flush=True)
    make_weights(weights, model, tmp)
    print(f"exporting {model}: upstream's encoder, then ours ...", file=sys.stderr, flush=True)
    upstream = export_upstream(tmp / f"upstream-{model}.onnx", model, weights, args, tmp)
    ours = export_ours(tmp / f"ours-{model}", model, weights, args.exporter, tmp)
    return {
        "model": model,
        "upstream": upstream,
        "ours": ours,
        "ratios": {
            "wall": ours["wall_s"] / upstream["wall_s"],
            "cpu": ours["cpu_s"] / upstream["cpu_s"],
            "peak_rss": ours["peak_rss_mib"] / upstream["peak_rss_mib"],
        },
    }


def benchmark(args) -> Dict:
    import onnxruntime

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="msla-sam-bench-") as tmp_name:
        tmp = Path(tmp_name)
        weights = tmp / f"{args.model}.pt"
        print(f"making the seeded weights of {args.model} ...", file=sys.stderr, flush=True)
        make_weights(weights, args.model, tmp)
        print("exporting: upstream's encoder, then ours ...", file=sys.stderr, flush=True)
        upstream = export_upstream(tmp / "upstream.onnx", args.model, weights, args, tmp)
        ours = export_ours(tmp / "ours", args.model, weights, args.exporter, tmp)
        encoder = time_encoders(
            tmp / "ours" / "encoder.onnx", tmp / "upstream.onnx", tmp / "ours" / "reference", args, tmp
        )
        decoder = time_decoder(tmp / "ours" / "decoder.onnx", encoder.pop("embeddings"), args)
        big = _big_export(args, tmp) if args.export_model else None
    return {
        "model": args.model,
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "onnxruntime": onnxruntime.__version__,
        "weights": "tests/zoo/sam_golden.py's seeded recipe (the golden data's weights), one .pt for both",
        "source": _source_state(),
        "upstream": {"efficientvit": str(args.upstream), "segment_anything": str(args.segment_anything)},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "encoder": encoder,
        "decoder": decoder,
        "export": {"upstream_encoder": upstream, "ours_encoder": ours, "ours_exporter_used": ours["exporter_used"]},
        "big_export": big,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", type=Path, help="checkout of mit-han-lab/efficientvit")
    parser.add_argument("--segment-anything", type=Path, help="checkout of facebookresearch/segment-anything")
    parser.add_argument("--model", default="efficientvit-sam-l0", help="SAM zoo name of the latency comparison")
    parser.add_argument(
        "--export-model", default="efficientvit-sam-xl1", help="SAM zoo name whose export is measured; '' skips it"
    )
    parser.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"), help="our exporter")
    parser.add_argument("--runs", type=int, default=20, help="timed ORT runs per variant (interleaved pairs)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed ORT runs per variant first")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder's boxes")
    parser.add_argument("--json", dest="json_out", default=None, help="write all results (per-run times too) here")
    # internal modes, run in child processes
    parser.add_argument("--_export-upstream", dest="export_upstream", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_make-weights", dest="make_weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.make_weights:
        _child_make_weights(Path(args.make_weights), args.model)
        return
    if args.upstream is None or args.segment_anything is None:
        parser.error("--upstream and --segment-anything are required (checkouts of upstream's code)")
    args.upstream, args.segment_anything = args.upstream.resolve(), args.segment_anything.resolve()
    if args.export_upstream:
        _child_export_upstream(
            Path(args.export_upstream), args.model, Path(args.weights), args.upstream, args.segment_anything
        )
        return
    if not (args.upstream / UPSTREAM_SCRIPT).is_file():
        parser.error(f"--upstream {args.upstream}: no {UPSTREAM_SCRIPT} there")
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    results = benchmark(args)
    print(render(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
