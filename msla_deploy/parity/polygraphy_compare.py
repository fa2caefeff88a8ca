"""The statistics Polygraphy measures for us: its comparators on a RunResults holding the
artifact's outputs and, as custom output data, the PyTorch reference.

SimpleCompareFunc with the "quantile" statistic yields max, mean and p99 absolute error in one
pass, CosineSimilarityCompareFunc the cosine. Their pass/fail is not used: our budget's max-abs
limit is relative to the reference's peak, and the verdict must also weigh what Polygraphy does
not measure (labels, mIoU, NaN counts), so metrics.compare_outputs decides, from these numbers.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..runtime.polygraphy_env import quiet_polygraphy

REFERENCE_RUNNER = "pytorch-reference"
QUANTILE = 0.99


def polygraphy_statistics(
    candidate: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], runner_name: str
) -> Dict[str, Dict[str, float]]:
    """{output: {max_abs, mean_abs, p99_abs, cosine}} for the outputs present in both."""
    names = [n for n in reference if n in candidate]
    with quiet_polygraphy("Polygraphy could not compare the outputs", "report this as a bug"):
        from polygraphy.comparator import Comparator, CosineSimilarityCompareFunc, RunResults, SimpleCompareFunc

        results = RunResults()
        # runner 0 is compared against runner 1: relative errors are taken against the reference
        results.add([{n: candidate[n] for n in names}], runner_name=runner_name)
        results.add([{n: reference[n] for n in names}], runner_name=REFERENCE_RUNNER)
        funcs = [SimpleCompareFunc(check_error_stat="quantile", error_quantile=QUANTILE), CosineSimilarityCompareFunc()]
        simple, cosine = Comparator.compare_accuracy(results, compare_func=funcs)
    pair = (runner_name, REFERENCE_RUNNER)
    (errors,), (similarity,) = simple[pair], cosine[pair]  # one iteration each
    return {
        n: {
            "max_abs": errors[n].max_absdiff,
            "mean_abs": errors[n].mean_absdiff,
            "p99_abs": errors[n].quantile_absdiff,
            "cosine": similarity[n].cosine_similarity,
        }
        for n in names
    }
