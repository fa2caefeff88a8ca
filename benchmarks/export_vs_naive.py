"""Our export against a plain `torch.onnx.export` of upstream-structured code, same weights.

    .venv/bin/python benchmarks/export_vs_naive.py [--model NAME] [--res HxW] [--runs N] [--json FILE]

The baseline ("naive") is the zoo model with every LiteMLA replaced by the upstream-structured
block of `tests/upstream_litemla.py` (runtime-size reshapes with -1, slicing, F.pad of v, autocast
decorators, the token-count branch), carrying the same weights, exported the way upstream's own
script does: legacy TorchScript exporter, opset 17, static shapes, default constant folding.
"Ours" is the `msla-deploy export` command, run exactly as a user runs it.

What is measured, and how:

* Export wall time and peak RSS, each export in its own process (a process's peak RSS is a
  high-water mark; measured in one process, the second export would inherit the first's).
  Ours does more than export (PyTorch reference forward, graph checks, ORT parity run), so its
  step timings are reported too, and its time without the reference forward.
* Node counts by op type for both graphs, and the nodes inside the attention blocks, found by
  graph structure (see `attention_regions`) and divided by the number of blocks found.
* Both graphs are run on the same input first; the benchmark refuses to time graphs that
  disagree, since a latency ratio between different functions means nothing.
* ONNX Runtime CPU latency: one session per graph, runs interleaved (ours, naive, then naive,
  ours, ...), so machine noise and thermal drift hit both alike. The result is a ratio of
  medians ours/naive with a bootstrap interval over the pairs, never an absolute promise.

The parent process never imports torch: it runs ONNX Runtime, and an idle torch thread pool
beside the sessions would be one more source of noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "efficientvit-seg-b1-cityscapes"
OPSET = 17  # what upstream's export script uses, and what TensorRT 8.x parses

#: the ops the issue asks about: layout shuffles and run-time shape arithmetic
WATCHED_OPS = ("Reshape", "Transpose", "Slice", "Pad", "Shape", "Gather", "Concat", "Unsqueeze")
#: ONNX ops that only exist to compute shapes at run time (TensorRT 8.x rejects graphs built on them)
SHAPE_ARITHMETIC_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "ConstantOfShape", "Range", "Size")


# ---------------------------------------------------------------------------------------------
# Child modes: run in their own processes (torch lives only here)
# ---------------------------------------------------------------------------------------------


def _child_make_weights(path: Path, model_name: str, seed: int) -> None:
    """Seeded random weights as a state-dict file, so both exports load byte-identical weights.

    BatchNorm statistics are randomised too: a fresh BN is the identity, which would hide a
    difference in how the two exporters fold it into the convolutions.
    """
    import torch
    from torch import nn

    from msla_deploy import zoo

    torch.manual_seed(seed)
    model = zoo.build(model_name)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
    torch.save(model.state_dict(), path)


def _upstream_config(module) -> dict:
    """Constructor arguments of an upstream-style block equivalent to one of our LiteMLA modules."""
    from torch import nn

    qkv_conv, proj_conv = module.qkv.conv, module.proj.conv
    if not isinstance(module.kernel_func, nn.ReLU):
        raise SystemExit(f"the upstream-style block supports the ReLU kernel only, got {module.kernel_func}")
    for layer in (module.qkv, module.proj):
        if layer.act is not None and not isinstance(layer.act, nn.ReLU):
            raise SystemExit(f"the upstream-style block supports ReLU or no activation, got {layer.act}")
    return {
        "in_channels": qkv_conv.in_channels,
        "out_channels": proj_conv.out_channels,
        "heads": module.heads,
        "dim": module.dim,
        "use_bias": (qkv_conv.bias is not None, proj_conv.bias is not None),
        "norm": tuple(None if layer.norm is None else "bn2d" for layer in (module.qkv, module.proj)),
        "act_func": tuple(None if layer.act is None else "relu" for layer in (module.qkv, module.proj)),
        "kernel_func": "relu",
        "scales": tuple(branch[0].kernel_size[0] for branch in module.aggreg),
        "eps": module.eps,
    }


def _child_export_naive(out: Path, model_name: str, weights: Path, resolution: Tuple[int, int]) -> None:
    """Build the upstream-structured model with the given weights and export it plainly."""
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))  # `tests` is a package at the repository root
    import torch
    from torch import nn

    from msla_deploy import zoo
    from msla_deploy.export.pipeline import state_dict_sha256
    from msla_deploy.nn import attention_modules
    from tests.upstream_litemla import UpstreamStyleLiteMLA

    timings = {"import": time.perf_counter() - started}
    mark = time.perf_counter()
    model = zoo.build(model_name)
    zoo.load_checkpoint(model, weights)
    blocks = attention_modules(model)
    for name, ours in blocks:
        naive = UpstreamStyleLiteMLA(**_upstream_config(ours))
        naive.load_state_dict(ours.state_dict(), strict=True)  # same state-dict names by design
        # the zoo sets BN eps per model family (1e-7 for L); a fresh block would have 1e-5
        for mine, theirs in zip(naive.modules(), ours.modules()):
            if isinstance(mine, nn.modules.batchnorm._BatchNorm):
                mine.eps = theirs.eps
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, naive)
    model.eval()
    left = [n for n, _ in attention_modules(model)]
    if left:
        raise SystemExit(f"LiteMLA modules not replaced: {left}")
    timings["build"] = time.perf_counter() - mark

    height, width = resolution
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    mark = time.perf_counter()
    # the baseline as upstream's script writes it: no names, no dynamic axes, folding at its default
    torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=OPSET)
    timings["export"] = time.perf_counter() - mark
    print(
        json.dumps(
            {
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "blocks": len(blocks),
                "state_dict_sha256": state_dict_sha256(model),
                "torch": torch.__version__,
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# Subprocesses with per-process peak RSS
# ---------------------------------------------------------------------------------------------


def run_measured(command: Sequence[str], log_dir: Path, label: str) -> Dict:
    """Run a command; wall time, peak RSS of that process (and its children), exit code, stdout.

    os.wait4 returns the rusage of that one child, unlike RUSAGE_CHILDREN, which is a high-water
    mark over every child this process has ever waited for.
    """
    stdout_path, stderr_path = log_dir / f"{label}.stdout", log_dir / f"{label}.stderr"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=stdout, stderr=stderr, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    return {
        "command": list(command),
        "returncode": process.returncode,
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "stdout": stdout_path.read_text(errors="replace"),
        "stderr": stderr_path.read_text(errors="replace"),
    }


def _check(result: Dict, what: str, allowed=(0,)) -> None:
    if result["returncode"] not in allowed:
        tail = "\n".join(result["stderr"].strip().splitlines()[-15:])
        raise SystemExit(f"{what} failed (exit {result['returncode']}):\n{tail}")


def _msla_deploy_command() -> List[str]:
    # the installed console script is what a user runs; `-m` is the same entry point
    script = Path(sys.executable).with_name("msla-deploy")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "msla_deploy"]


def export_ours(out: Path, args, weights: Path, log_dir: Path, label: str) -> Dict:
    command = _msla_deploy_command() + [
        "export",
        "--model",
        args.model,
        "--weights",
        str(weights),
        "--res",
        args.res,
        "--opset",
        str(OPSET),
        "--exporter",
        args.exporter,
        "--out",
        str(out),
        "--json",
    ]
    result = run_measured(command, log_dir, label)
    _check(result, "msla-deploy export", allowed=(0, 1))  # 1: parity failed, the JSON still says how
    try:
        report = json.loads(result["stdout"])
    except ValueError:  # exit 1 is also "internal error", which prints no JSON
        _check(dict(result, returncode=f"{result['returncode']}, no JSON on stdout"), "msla-deploy export", allowed=())
    manifest = report["manifest"]
    timings = manifest["timings_s"]
    return {
        "wall_s": result["wall_s"],
        "peak_rss_mib": result["peak_rss_mib"],
        "cpu_s": result["cpu_s"],
        "timings_s": timings,
        # the reference forward is work the naive export does not do
        "wall_without_reference_s": round(result["wall_s"] - timings.get("reference", 0.0), 3),
        "exporter_used": manifest["exporter"]["used"],
        "parity_passed": report["passed"],
        "state_dict_sha256": manifest["weights"]["state_dict_sha256"],
        "command": " ".join(command),
    }


def export_naive(out: Path, args, weights: Path, log_dir: Path, label: str) -> Dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_export-naive",
        str(out),
        "--model",
        args.model,
        "--weights",
        str(weights),
        "--res",
        args.res,
    ]
    result = run_measured(command, log_dir, label)
    _check(result, "naive export")
    report = json.loads(result["stdout"].strip().splitlines()[-1])
    return {
        "wall_s": result["wall_s"],
        "peak_rss_mib": result["peak_rss_mib"],
        "cpu_s": result["cpu_s"],
        "timings_s": report["timings_s"],
        "blocks": report["blocks"],
        "state_dict_sha256": report["state_dict_sha256"],
    }


# ---------------------------------------------------------------------------------------------
# Graph analysis
# ---------------------------------------------------------------------------------------------


def attention_regions(graph) -> List[List[int]]:
    """Node indices of each attention block's core, found by structure alone.

    Our exporter keeps no module scopes in node names, so names cannot say which nodes belong to
    attention. Structure can: cut the graph at every Conv (the qkv, aggregation and proj convs
    bound each block's core) and take the connected pieces that contain a MatMul; only attention
    multiplies activations by activations. Constant nodes connect nothing (one may feed several
    blocks) and are attributed to a region when all their consumers are in it.
    """
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    parent = list(range(len(nodes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def joins(node) -> bool:
        return node.op_type not in ("Conv", "Constant")

    consumers = defaultdict(list)
    for i, node in enumerate(nodes):
        for name in node.input:
            j = producer.get(name)
            if j is None:
                continue
            consumers[j].append(i)
            if joins(node) and joins(nodes[j]):
                parent[find(i)] = find(j)

    groups = defaultdict(list)
    for i, node in enumerate(nodes):
        if joins(node):
            groups[find(i)].append(i)
    regions = [members for members in groups.values() if any(nodes[i].op_type == "MatMul" for i in members)]
    region_of = {i: r for r, members in enumerate(regions) for i in members}
    for j, node in enumerate(nodes):
        if node.op_type == "Constant" and consumers[j]:
            owners = {region_of.get(i) for i in consumers[j]}
            if len(owners) == 1 and None not in owners:
                regions[owners.pop()].append(j)
    return regions


def graph_summary(path: Path) -> Dict:
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    counts = Counter(node.op_type for node in graph.node)
    regions = attention_regions(graph)
    attention = Counter(graph.node[i].op_type for members in regions for i in members)
    return {
        "nodes": len(graph.node),
        "nodes_without_constant": len(graph.node) - counts.get("Constant", 0),
        "initializers": len(graph.initializer),
        "op_counts": dict(sorted(counts.items())),
        "attention_blocks_found": len(regions),
        "attention_op_counts": dict(sorted(attention.items())),
        "attention_nodes": sum(attention.values()),
        "shape_arithmetic_nodes": sum(counts.get(op, 0) for op in SHAPE_ARITHMETIC_OPS),
        "file_mib": round(path.stat().st_size / 2**20, 2),
    }


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------


#: --ort-level: "all" is ORT's default; "basic" (constant folding and node elimination, no fusions
#: or layout changes) is closer to what a simpler runtime makes of the graph as exported
ORT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def make_session(path: Path, threads: int, level: str = "all", optimized_path: Optional[Path] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if optimized_path is not None:
        # what ORT actually runs after its own rewrites: explains a latency tie despite different graphs
        options.optimized_model_filepath = str(optimized_path)
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - started


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_ratio(
    ours: Sequence[float], naive: Sequence[float], reps: int = 2000, seed: int = 0
) -> Tuple[float, float]:
    """95% interval of median(ours)/median(naive), resampling whole pairs (they share the noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = np.asarray(ours), np.asarray(naive)
    picks = rng.integers(0, len(a), size=(reps, len(a)))
    ratios = np.median(a[picks], axis=1) / np.median(b[picks], axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def time_interleaved(
    sessions: Dict[str, object], feed_of: Dict[str, Dict], runs: int, warmup: int
) -> Dict[str, List[float]]:
    """Alternate which variant goes first, so neither always runs on a warmer cache or quieter moment."""
    order = list(sessions)
    for _ in range(warmup):
        for name in order:
            sessions[name].run(None, feed_of[name])
    times: Dict[str, List[float]] = {name: [] for name in order}
    for i in range(runs):
        for name in order if i % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            sessions[name].run(None, feed_of[name])
            times[name].append(time.perf_counter() - started)
    return times


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _table(rows: List[Sequence], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _per_block(count: int, blocks: int) -> str:
    return f"{count / blocks:.2f}".rstrip("0").rstrip(".") if blocks else "-"


def render(results: Dict) -> str:
    g_ours, g_naive = results["graph"]["ours"], results["graph"]["naive"]
    b_ours, b_naive = g_ours["attention_blocks_found"], g_naive["attention_blocks_found"]
    out = []
    out.append(
        f"{results['model']} at {results['resolution']}, opset {OPSET}, ORT CPU {results['latency']['threads']} "
        "thread(s), "
        f"ORT optimisation level {results['latency']['ort_level']}"
    )
    out.append("")
    ops = sorted(set(g_ours["op_counts"]) | set(g_naive["op_counts"]), key=lambda op: (op not in WATCHED_OPS, op))
    rows = []
    for op in ops:
        rows.append(
            [
                op + (" *" if op in WATCHED_OPS else ""),
                g_naive["op_counts"].get(op, 0),
                g_ours["op_counts"].get(op, 0),
                _per_block(g_naive["attention_op_counts"].get(op, 0), b_naive),
                _per_block(g_ours["attention_op_counts"].get(op, 0), b_ours),
            ]
        )
    rows.append(
        [
            "total nodes",
            g_naive["nodes"],
            g_ours["nodes"],
            _per_block(g_naive["attention_nodes"], b_naive),
            _per_block(g_ours["attention_nodes"], b_ours),
        ]
    )
    rows.append(["total without Constant", g_naive["nodes_without_constant"], g_ours["nodes_without_constant"], "", ""])
    out.append(_table(rows, ["op (* = watched)", "naive", "ours", "naive/block", "ours/block"]))
    out.append(
        f"attention blocks found by structure: naive {b_naive}, ours {b_ours} (LiteMLA modules: {results['blocks']})"
    )
    ort_n, ort_o = (
        results["graph"].get("ort_optimized", {}).get("naive"),
        results["graph"].get("ort_optimized", {}).get("ours"),
    )
    if ort_n and ort_o:
        out.append(
            f"after ORT's own optimisation ({results['latency']['ort_level']}): naive {ort_n['nodes']} nodes, ours "
            f"{ort_o['nodes']} nodes"
        )
    out.append("")

    check = results["check"]
    out.append(
        f"same logits: max |ours - naive| = {check['max_abs_ours_vs_naive']:.3g}; vs PyTorch: "
        f"ours {check['max_abs_ours_vs_torch']:.3g}, naive {check['max_abs_naive_vs_torch']:.3g} (max |logit| "
        f"{check['max_abs_logit']:.3g})"
    )
    lat = results["latency"]
    out.append(
        _table(
            [
                [
                    name,
                    f"{lat[name]['median_s'] * 1e3:.1f}",
                    f"{lat[name]['p90_s'] * 1e3:.1f}",
                    f"{lat[name]['min_s'] * 1e3:.1f}",
                    f"{lat[name]['session_create_s']:.2f}",
                ]
                for name in ("naive", "ours")
            ],
            ["ORT latency", "median ms", "p90 ms", "min ms", "session s"],
        )
    )
    r = lat["ratio"]
    out.append(
        f"ours/naive: ratio of medians {r['of_medians']:.3f} (bootstrap 95% "
        f"{r['bootstrap_95'][0]:.3f}..{r['bootstrap_95'][1]:.3f}; "
        f"per-pair ratios median {r['pairs_median']:.3f}, min {r['pairs_min']:.3f}, max {r['pairs_max']:.3f}; "
        f"{lat['runs']} pairs)"
    )
    out.append("")
    e_o, e_n = results["export"]["ours"], results["export"]["naive"]
    rows = [
        [
            "naive (legacy exporter)",
            f"{e_n['wall_s']:.1f}",
            "-",
            f"{e_n['timings_s']['export']:.1f}",
            f"{e_n['cpu_s']:.1f}",
            f"{e_n['peak_rss_mib']:.0f}",
            ", ".join(f"{k} {v:.1f}" for k, v in e_n["timings_s"].items()),
        ],
        [
            f"ours ({e_o['exporter_used']})",
            f"{e_o['wall_s']:.1f}",
            f"{e_o['wall_without_reference_s']:.1f}",
            f"{e_o['timings_s']['export']:.1f}",
            f"{e_o['cpu_s']:.1f}",
            f"{e_o['peak_rss_mib']:.0f}",
            ", ".join(f"{k} {v:.1f}" for k, v in e_o["timings_s"].items()),
        ],
    ]
    out.append(
        _table(rows, ["export", "wall s", "w/o reference s", "export call s", "CPU s", "peak RSS MiB", "steps (s)"])
    )
    if not e_o["parity_passed"]:
        out.append("WARNING: our export's own ORT-vs-PyTorch parity check failed (msla-deploy exited 1)")
    if len(e_o.get("wall_all_s", [])) > 1:
        out.append(f"export repeats (wall s): ours {e_o['wall_all_s']}, naive {e_n['wall_all_s']}; medians shown")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _parse_res(text: str) -> Tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width or height)


def _median_run(runs: List[Dict]) -> Dict:
    """The export repeat with the median wall time (all walls are kept beside it)."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["wall_all_s"] = [r["wall_s"] for r in runs]
    chosen["peak_rss_all_mib"] = [r["peak_rss_mib"] for r in runs]
    return chosen


def _source_state() -> Dict:
    """Which code was measured: the tree is shared and edited while benchmarks run."""

    def git(*cmd: str) -> str:
        # --no-optional-locks: a read must not take the index lock from someone committing
        done = subprocess.run(["git", "--no-optional-locks", *cmd], cwd=REPO, capture_output=True, text=True)
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""  # porcelain lines start with a space

    changed = [line[3:] for line in git("status", "--porcelain", "--", "msla_deploy", "tests").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_in_msla_deploy_or_tests": changed}


def benchmark(args) -> Dict:
    import numpy as np
    import onnxruntime

    sys.path.insert(0, str(REPO))
    from msla_deploy.artifact.reference import read_reference

    with tempfile.TemporaryDirectory(prefix="msla-bench-") as tmp_name:
        tmp = Path(tmp_name)
        weights = Path(args.weights).resolve() if args.weights else tmp / "weights.pt"
        if not args.weights:
            made = run_measured(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--_make-weights",
                    str(weights),
                    "--model",
                    args.model,
                    "--seed",
                    str(args.seed),
                ],
                tmp,
                "weights",
            )
            _check(made, "making seeded weights")

        # alternate the order of repeated exports, as for latency: neither always goes first
        ours_runs, naive_runs = [], []
        for rep in range(args.export_reps):
            order = ("naive", "ours") if rep % 2 == 0 else ("ours", "naive")
            for name in order:
                print(f"exporting {name} (repeat {rep + 1}/{args.export_reps}) ...", file=sys.stderr, flush=True)
                if name == "ours":
                    ours_runs.append(export_ours(tmp / f"ours{rep}", args, weights, tmp, f"ours{rep}"))
                else:
                    naive_runs.append(export_naive(tmp / f"naive{rep}.onnx", args, weights, tmp, f"naive{rep}"))
        ours_export, naive_export = _median_run(ours_runs), _median_run(naive_runs)
        if ours_export["state_dict_sha256"] != naive_export["state_dict_sha256"]:
            raise SystemExit("the two models do not hold the same weights (state-dict hashes differ)")
        ours_path, naive_path = tmp / "ours0" / "model.onnx", tmp / "naive0.onnx"

        graphs = {"ours": graph_summary(ours_path), "naive": graph_summary(naive_path)}

        reference = read_reference(tmp / "ours0" / "reference")
        image = reference.inputs["input"]
        torch_logits = reference.outputs["logits"]
        print("creating ONNX Runtime sessions ...", file=sys.stderr, flush=True)
        sessions, created, feeds = {}, {}, {}
        for name, path in (("ours", ours_path), ("naive", naive_path)):
            sessions[name], created[name] = make_session(path, args.threads, args.ort_level, tmp / f"{name}.ort.onnx")
            feeds[name] = {sessions[name].get_inputs()[0].name: image}
        graphs["ort_optimized"] = {}
        for name in sessions:
            optimized = graph_summary(tmp / f"{name}.ort.onnx")
            graphs["ort_optimized"][name] = {"nodes": optimized["nodes"], "op_counts": optimized["op_counts"]}

        logits = {name: sessions[name].run(None, feeds[name])[0] for name in sessions}
        check = {
            "max_abs_ours_vs_naive": float(np.max(np.abs(logits["ours"] - logits["naive"]))),
            "max_abs_ours_vs_torch": float(np.max(np.abs(logits["ours"] - torch_logits))),
            "max_abs_naive_vs_torch": float(np.max(np.abs(logits["naive"] - torch_logits))),
            "max_abs_logit": float(np.max(np.abs(torch_logits))),
        }
        # fp32 reassociation across different op orders stays far below this; a wrong graph does not
        tolerance = 1e-3 * max(1.0, check["max_abs_logit"])
        check["tolerance"] = tolerance
        check["passed"] = check["max_abs_ours_vs_naive"] <= tolerance
        if not check["passed"]:
            raise SystemExit(f"the two graphs disagree: {check}; refusing to time them")

        print(
            f"timing {args.runs} interleaved pairs after {args.warmup} warm-up pairs ...", file=sys.stderr, flush=True
        )
        times = time_interleaved(sessions, feeds, args.runs, args.warmup)
        ratios = [o / n for o, n in zip(times["ours"], times["naive"])]
        latency = {
            "threads": args.threads,
            "ort_level": args.ort_level,
            "runs": args.runs,
            "warmup": args.warmup,
            "onnxruntime": onnxruntime.__version__,
        }
        for name in sessions:
            latency[name] = {
                "median_s": statistics.median(times[name]),
                "p90_s": _percentile(times[name], 0.9),
                "min_s": min(times[name]),
                "session_create_s": round(created[name], 3),
                "all_s": [round(t, 5) for t in times[name]],
            }
        latency["ratio"] = {
            "of_medians": latency["ours"]["median_s"] / latency["naive"]["median_s"],
            "bootstrap_95": bootstrap_ratio(times["ours"], times["naive"]),
            "pairs_median": statistics.median(ratios),
            "pairs_min": min(ratios),
            "pairs_max": max(ratios),
        }

    return {
        "model": args.model,
        "resolution": args.res,
        "opset": OPSET,
        "weights": args.weights or f"seeded random (seed {args.seed}, BN statistics randomised)",
        "blocks": naive_export["blocks"],
        "source": _source_state(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "graph": graphs,
        "check": check,
        "latency": latency,
        "export": {"ours": ours_export, "naive": naive_export},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo name")
    parser.add_argument("--res", default="1024x2048", help="input HxW")
    parser.add_argument("--weights", default=None, help="state-dict checkpoint for both; default: seeded random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--runs", type=int, default=20, help="timed ORT runs per variant (interleaved pairs)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed ORT runs per variant first")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--ort-level", default="all", choices=tuple(ORT_LEVELS), help="ORT graph optimisation level")
    parser.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"), help="our exporter")
    parser.add_argument(
        "--export-reps", type=int, default=1, help="exports per variant (order alternates); median wall reported"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write all results (per-run times too) here")
    # internal modes, run in child processes
    parser.add_argument("--_export-naive", dest="export_naive", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_make-weights", dest="make_weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.make_weights:
        _child_make_weights(Path(args.make_weights), args.model, args.seed)
        return
    if args.export_naive:
        _child_export_naive(Path(args.export_naive), args.model, Path(args.weights), _parse_res(args.res))
        return
    if args.runs < 1 or args.export_reps < 1:
        parser.error("--runs and --export-reps must be at least 1")

    results = benchmark(args)
    print(render(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
