"""Statistics of a latency sample, and the order of an interleaved comparison.

Pure functions on lists of seconds, so that the numbers a report shows can be checked against
hand-computed values without running a model.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .report import LatencyStats

PERCENTILES = (50, 90, 99)  # LatencyStats' p50_ms, p90_ms, p99_ms


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, what most tools report)."""
    if not len(values):
        raise ValueError("percentile of an empty sample")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(latencies_s: Sequence[float], batch: int) -> LatencyStats:
    """min / mean / max / std / p50 / p90 / p99 in milliseconds, and throughput in images per
    second (batch / mean latency: the mean, not the median, is what a steady stream of work sees)."""
    values = np.asarray(latencies_s, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latencies to summarize")
    mean = float(values.mean())
    p50, p90, p99 = (percentile(values, q) * 1e3 for q in PERCENTILES)
    return LatencyStats(
        iterations=int(values.size),
        min_ms=float(values.min()) * 1e3,
        mean_ms=mean * 1e3,
        max_ms=float(values.max()) * 1e3,
        std_ms=float(values.std()) * 1e3,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        throughput_ips=batch / mean if mean > 0 else None,
    )


def median_ratios(medians: Sequence[float]) -> List[Optional[float]]:
    """Each median over the first's: 2.0 means twice as slow as the baseline. A ratio measured in
    one interleaved run survives machine noise that absolute times do not."""
    if not medians:
        return []
    base = medians[0]
    return [None if not base else m / base for m in medians]


def interleaved_order(count: int, rounds: int) -> List[List[int]]:
    """Round-robin: each round runs every contestant once, and who goes first rotates, so that
    none always runs right after another one's cache and clock effects."""
    if count < 1 or rounds < 0:
        raise ValueError("interleaved_order needs count >= 1 and rounds >= 0")
    return [rotation(count, r) for r in range(rounds)]


def rotation(count: int, round_index: int) -> List[int]:
    """The order of round `round_index`: 0, 1, 2 / 1, 2, 0 / 2, 0, 1 / 0, 1, 2 ..."""
    start = round_index % count
    return [(start + i) % count for i in range(count)]
