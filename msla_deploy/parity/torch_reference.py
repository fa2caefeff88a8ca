"""The PyTorch side of localize and reference pictures: the rebuilt model's module outputs and its
outputs on pictures. Imported lazily (torch is optional on the runtime side); the model itself is
rebuilt by the runtime's torch backend (msla_deploy.runtime.torch_backend.rebuild).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from ..errors import BadInput


def run_with_probes(module, x: np.ndarray, names: Sequence[str]) -> Tuple[np.ndarray, List[Tuple[str, np.ndarray]]]:
    """The model's output on `x` and the named modules' outputs in execution (completion) order."""
    import torch

    from ..nn.capture import capture

    known = dict(module.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise BadInput(
            f"probe module {missing[0]!r} of the manifest is not in the rebuilt model",
            "re-export with this version of msla-deploy",
        )
    with torch.no_grad(), capture(module, list(names)) as captured:
        output = module(torch.from_numpy(np.ascontiguousarray(x)))
        probes = [(name, t.detach().float().numpy().copy()) for name, t in captured if t is not output]
    return output.detach().float().numpy(), probes


def run_model(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x))).detach().float().numpy()
