"""Where do the numbers drift? Probe tensors of the ONNX against PyTorch module outputs.

The export keeps each block's output as a named tensor and lists them in manifest["probes"]
(module path -> tensor). Here a copy of the ONNX gets those tensors marked as graph outputs and
runs on the same backend as the validation; the rebuilt PyTorch model runs on the same input with
hooks on the same modules. Errors are compared per module in execution order: the first module
over the limit is where the drift starts (a later block inherits its input's error), the ranked
list shows where it is worst.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import onnx

from ..artifact.names import PROBE_PREFIX
from ..errors import BadInput
from .budgets import Budget
from .metrics import cosine_similarity
from .records import Localization, LocalizeCriterion, ProbeDrift, measured

# where the budget has no peak-relative limit (fp16 budgets judge outputs by cosine and labels),
# an intermediate tensor counts as drifted beyond 1% of its peak
FALLBACK_RELATIVE_LIMIT = 1e-2

TENSORRT_NOTE = (
    "Marking probe tensors as outputs changes TensorRT's layer fusion and precision choices: the "
    "engine measured here is not the one validated, and a drift (especially fp16) can move or vanish. "
    "Use the ranking as a lead, and confirm by forcing suspect layers to fp32."
)


def mark_outputs(model: onnx.ModelProto, tensors: Sequence[str]) -> bytes:
    """A serialized copy of `model` with `tensors` appended as graph outputs (element types from
    shape inference, shapes left open)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:  # inference is only for the dtypes; float is the right guess for probes
        types = {}
    present = {o for node in copy.graph.node for o in node.output}
    existing = {o.name for o in copy.graph.output}
    for name in tensors:
        if name in present and name not in existing:
            copy.graph.output.append(
                onnx.helper.make_tensor_value_info(name, types.get(name) or onnx.TensorProto.FLOAT, None)
            )
    return copy.SerializeToString()


def drift(
    module: str, tensor: str, reference: np.ndarray, candidate: np.ndarray, relative_limit: float, min_cosine: float
) -> ProbeDrift:
    if reference.shape != candidate.shape:
        raise BadInput(
            f"probe {module}: PyTorch shape {reference.shape} != ONNX shape {candidate.shape}", "re-export the artifact"
        )
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    finite = np.isfinite(ref) & np.isfinite(cand)
    nonfinite = int((np.isfinite(ref) & ~np.isfinite(cand)).sum())
    err = np.abs(ref - cand)[finite]
    max_abs = float(err.max()) if err.size else float("nan")
    peak = float(np.abs(ref[np.isfinite(ref)]).max()) if np.isfinite(ref).any() else 0.0
    relative = max_abs / peak if peak > 0 else max_abs
    # over the finite elements; with none left there is nothing to be similar
    cosine = (
        cosine_similarity(np.where(finite, ref, 0).ravel(), np.where(finite, cand, 0).ravel())
        if finite.any()
        else float("nan")
    )
    offender = bool(nonfinite or not relative <= relative_limit or not cosine >= min_cosine)  # NaN: an offender
    return ProbeDrift(
        module,
        tensor,
        list(ref.shape),
        measured(max_abs),
        peak,
        measured(relative),
        measured(cosine),
        nonfinite,
        offender,
    )


def relative_limit(budget: Budget) -> float:
    return budget.max_abs_rel if budget.max_abs_rel else FALLBACK_RELATIVE_LIMIT


def localize(
    manifest, model: onnx.ModelProto, run_marked, feed: Dict[str, np.ndarray], budget: Budget, tensorrt: bool
) -> Localization:
    """`run_marked(onnx_bytes, feed) -> (outputs by name, runtime info)` runs the marked copy on
    the validation's backend; `feed` is one batch of the reference inputs."""
    from ..runtime.torch_backend import rebuild
    from .torch_reference import run_with_probes

    probes = manifest.probes if manifest is not None else None
    if not probes:
        raise BadInput(
            "--localize needs the export's manifest.json with its 'probes' (module -> ONNX tensor)",
            "validate the export directory (or a .onnx inside it); re-export if its manifest predates probes",
        )
    # the manifest names the tensors of its model.onnx; another ONNX of the same export (the fp32
    # one beside an fp16 model.onnx) carries the plain probe name
    produced = {o for node in model.graph.node for o in node.output}
    probes = {m: next((t for t in (tensor, PROBE_PREFIX + m) if t in produced), tensor) for m, tensor in probes.items()}
    if len(feed) != 1:
        raise BadInput(
            f"--localize runs one-input models; this one takes {sorted(feed)}", "validate without --localize"
        )
    (x,) = feed.values()
    module = rebuild(manifest, "--localize")
    torch_output, captured = run_with_probes(module, x.astype(np.float32), list(probes))
    outputs, runtime = run_marked(mark_outputs(model, probes.values()), feed)

    limit, min_cosine = relative_limit(budget), budget.min_cosine
    rows = []
    for name, reference in captured:  # execution order
        tensor = probes[name]
        if tensor in outputs:
            rows.append(drift(name, tensor, reference, outputs[tensor], limit, min_cosine))
    final = model.graph.output[0].name
    if final in outputs:
        rows.append(drift(f"(model output {final})", final, torch_output, outputs[final], limit, min_cosine))
    not_found = [name for name in probes if probes[name] not in outputs]
    first = next((r.module for r in rows if r.offender), None)
    # worst first: NaN/Inf (largest share of the tensor first), then the largest relative error
    ranked = sorted(
        rows,
        key=lambda r: (
            -r.nonfinite / max(1, int(np.prod(r.shape))),
            -(float("inf") if r.relative is None else r.relative),
        ),
    )
    notes = [TENSORRT_NOTE] if tensorrt else []
    if not_found:
        notes.append(
            f"{len(not_found)} probe tensors are not in the artifact's graph and were skipped (e.g. {not_found[0]})"
        )
    rule = (
        "first module, in execution order, whose max |error| / peak |PyTorch| exceeds max_relative, whose cosine is "
        "below "
        "min_cosine, or which has NaN/Inf"
    )
    return Localization(
        first_offender=first,
        criterion=LocalizeCriterion(limit, min_cosine, rule),
        input=f"reference inputs [0:{x.shape[0]}]",
        runtime=runtime,
        probes=rows,
        ranked=[r.module for r in ranked],
        notes=notes,
    )
