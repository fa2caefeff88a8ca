"""What a latency figure depends on, recorded next to it: CPU and threads, GPU and driver,
package versions, and on a Jetson the power mode and clocks (nvpmodel / jetson_clocks change
results several-fold). Everything is best-effort: a missing file or tool is a None, never an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

from ..artifact.files import environment as package_environment
from .report import BenchEnvironment, GpuFacts, JetsonFacts

TOOL_TIMEOUT_S = 3.0


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip() or None
    except OSError:
        return None


def cpu_model() -> Optional[str]:
    """x86 says "model name"; ARM kernels (Jetson) often say nothing useful, so the board's
    device-tree model ("NVIDIA Jetson AGX Orin ...") stands in."""
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return _read("/proc/device-tree/model")


def _run(argv: List[str]) -> Optional[str]:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout + done.stderr).strip() or None


def jetson() -> Optional[JetsonFacts]:
    """Power mode and clocks, when this is a Jetson (None elsewhere). `jetson_clocks --show`
    needs root on most images; its error text is recorded as is, since that says why."""
    release = _read("/etc/nv_tegra_release")
    if release is None and not Path("/etc/nvpmodel.conf").exists():
        return None
    return JetsonFacts(
        l4t_release=release.splitlines()[0] if release else None,
        board=_read("/proc/device-tree/model"),
        nvpmodel_conf=Path("/etc/nvpmodel.conf").exists(),
        nvpmodel_q=_run(["nvpmodel", "-q"]),
        jetson_clocks_show=_run(["jetson_clocks", "--show"]),
    )


def gpu() -> Optional[GpuFacts]:
    from ..errors import MissingRuntime
    from ..trt.runtime import probe_gpu

    try:
        info = probe_gpu()
    except MissingRuntime:
        return None
    driver = _read("/proc/driver/nvidia/version")  # desktop drivers; Jetson has none
    return GpuFacts(
        name=info.name,
        compute_capability=info.compute_capability,
        driver_cuda_version=info.driver_cuda_version,
        index=info.index,
        driver=driver.splitlines()[0] if driver else None,
    )


def capture(threads: Optional[int]) -> BenchEnvironment:
    try:
        usable: Optional[int] = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    env = package_environment()  # the facts a manifest records too, by the same function
    return BenchEnvironment(
        python=env["python"],
        platform=env["platform"],
        machine=env["machine"],
        packages=env["packages"],
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        cpu_usable=usable,
        threads_requested=threads,
        cpu_governor=_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        gpu=gpu(),
        jetson=jetson(),
    )
