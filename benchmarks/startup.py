"""Start-up of the command line: `--help`, `doctor --help` and `models` against `python -c pass`.

    .venv/bin/python benchmarks/startup.py [--repeats 15] [--json FILE]

Each command runs as its own process (`python -m msla_deploy ...`, this checkout first on the
path), interleaved with the baseline so that a busy machine slows both alike; the figure is the
median over the repeats, as seconds and as a ratio to `python -c pass` in the same run. Wall time
is what a user waits; CPU time (user + sys of the child) is what the start-up costs, and stays
comparable on a shared machine where the wall clock does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]

CASES: Dict[str, Sequence[str]] = {
    "python -c pass": ("-c", "pass"),
    "msla-deploy --help": ("-m", "msla_deploy", "--help"),
    "msla-deploy doctor --help": ("-m", "msla_deploy", "doctor", "--help"),
    "msla-deploy models": ("-m", "msla_deploy", "models", "--models-dir", str(ROOT / "models")),
}
BASELINE = "python -c pass"


def run_once(args: Sequence[str], env: Dict[str, str]) -> Tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeats: int) -> Dict[str, Dict[str, float]]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        COLUMNS="100",
    )
    for args in CASES.values():  # warm the file cache and the bytecode once, untimed
        run_once(args, env)
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in CASES}
    for _ in range(repeats):
        for name, args in CASES.items():  # interleaved: a load spike hits every case
            samples[name].append(run_once(args, env))
    base_wall = statistics.median(w for w, _ in samples[BASELINE])
    base_cpu = statistics.median(c for _, c in samples[BASELINE])
    result = {}
    for name, runs in samples.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        result[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "wall_ratio": wall / base_wall,
            "cpu_ratio": cpu / base_cpu if base_cpu else float("nan"),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    result = measure(args.repeats)
    print(
        f"median of {args.repeats} runs, {sys.executable} (Python {sys.version.split()[0]}), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'command':<28} {'wall s':>8} {'x pass':>7} {'CPU s':>8} {'x pass':>7}")
    for name, r in result.items():
        print(f"{name:<28} {r['wall_s']:8.3f} {r['wall_ratio']:7.1f} {r['cpu_s']:8.3f} {r['cpu_ratio']:7.1f}")
    if args.json:
        args.json.write_text(
            json.dumps({"repeats": args.repeats, "python": sys.version.split()[0], "results": result}, indent=2)
        )


if __name__ == "__main__":
    main()
