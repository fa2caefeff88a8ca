"""What serving costs: throughput of one model served by Triton (msla-deploy serve, PyTriton) with
1, 4 and 8 concurrent clients, against the same ONNX Runtime session run in-process, as ratios
measured in one run (interleaved rounds). Everything stays on 127.0.0.1.

    python benchmarks/serve_throughput.py [--artifact DIR | --model NAME --res HxW] [--rounds 5]
        [--requests 40] [--clients 1,4,8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from msla_deploy.artifact.files import environment  # noqa: E402
from msla_deploy.runtime.triton import TritonSession  # noqa: E402
from msla_deploy.serve.model_io import onnx_io, open_artifact  # noqa: E402
from msla_deploy.serve.server import free_port, open_runner, start_server  # noqa: E402


def export(model: str, res: str, where: Path) -> Path:
    out = where / "artifact"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "msla_deploy",
            "export",
            "-m",
            model,
            "-r",
            res,
            "-o",
            str(out),
            "--json",
            "--models-dir",
            str(where / "no-models"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )
    return out


def in_process(run, feeds, requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        run(feeds)
    return requests / (time.perf_counter() - start)


def served(sessions, feeds, requests: int) -> float:
    """`requests` in total, shared by len(sessions) client threads (one session each)."""
    per_client = [requests // len(sessions) + (1 if i < requests % len(sessions) else 0) for i in range(len(sessions))]
    errors = []

    def client(session, n):
        try:
            for _ in range(n):
                session.run(feeds)
        except Exception as exc:  # noqa: BLE001 -- reported below, the figure is void then
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(s, n)) for s, n in zip(sessions, per_client)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    return requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="export directory to serve (default: export --model at --res)")
    parser.add_argument("--model", default="efficientvit-seg-b0-cityscapes")
    parser.add_argument("--res", default="256x512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="requests per measurement")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact or export(args.model, args.res, Path(tmp))
        inputs, _ = onnx_io(open_artifact(artifact).onnx_path)
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.standard_normal(t.shape).astype(t.dtype) for t in inputs}
        local = open_runner(open_artifact(artifact), "ort-cpu")  # the same kind of session the server runs
        run, runner = local.run, local.describe()
        with start_server(artifact, port=free_port(), backend="ort-cpu") as server:
            sessions = [TritonSession(server.url, timeout_s=120) for _ in range(max(counts))]
            try:
                for _ in range(args.warmup):
                    run(feeds)
                    sessions[0].run(feeds)
                rows = {"in-process": []}
                rows.update({f"served x{c}": [] for c in counts})
                for r in range(args.rounds):  # interleaved, the order rotating per round
                    jobs = [("in-process", lambda: in_process(run, feeds, args.requests))]
                    jobs += [(f"served x{c}", (lambda c=c: served(sessions[:c], feeds, args.requests))) for c in counts]
                    k = r % len(jobs)
                    for name, job in jobs[k:] + jobs[:k]:
                        rows[name].append(job())
                described = sessions[0].describe()
            finally:
                for s in sessions:
                    s.close()

    base = rows["in-process"]
    result = {
        "artifact": str(artifact),
        "inputs": [t.to_dict() for t in inputs],
        "model_runs_on": runner,
        "server": {
            "url": server.url,
            "tritonserver": described["version"],
            "platform": described["platform"],
            "batching": server.batching.to_dict(),
        },
        "rounds": args.rounds,
        "requests_per_measurement": args.requests,
        "environment": environment(("numpy", "onnxruntime", "nvidia-pytriton", "tritonclient")),
        "throughput_rps": {name: values for name, values in rows.items()},
        "median_rps": {name: statistics.median(values) for name, values in rows.items()},
        # per round: served / in-process of the same round, then the median over rounds
        "ratio_to_in_process": {
            name: statistics.median(v / b for v, b in zip(values, base)) for name, values in rows.items()
        },
    }
    for name in rows:
        print(
            f"{name:>12}: {result['median_rps'][name]:8.1f} req/s   x{result['ratio_to_in_process'][name]:.2f} of "
            "in-process"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
