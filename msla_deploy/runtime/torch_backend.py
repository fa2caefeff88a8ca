"""The PyTorch rebuild of an export behind the Session interface (the only backend needing torch).

The model is the exported one, rebuilt from the manifest and checked against its weight hash
(msla_deploy.loading); it runs in fp32 eager mode on the CPU, which is what the reference
bundle's outputs are.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ..artifact.graph import TensorSpec
from ..artifact.names import BATCH_DIM, INPUT_NAME, OUTPUT_NAME
from ..errors import BadInput, MissingRuntime
from .session import Session

INSTALL_TORCH = "install PyTorch (CPU: pip install torch==2.13.0) and onnxscript"


def require_torch(purpose: str, alternative: str = "") -> None:
    """PyTorch, or MissingRuntime whose fix is installing it, then `alternative` (what works without it)."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        fix = f"{INSTALL_TORCH}; or {alternative}" if alternative else INSTALL_TORCH
        raise MissingRuntime(f"{purpose} needs PyTorch to rebuild the exported model ({exc})", fix) from None
    except Exception as exc:  # installed but broken (a missing shared library, mixed versions): still exit 3
        raise MissingRuntime(
            f"{purpose} needs PyTorch, which is installed but does not import ({type(exc).__name__}: {exc})",
            "reinstall it: pip install --force-reinstall torch",
        ) from None


def rebuild(manifest, purpose: str):
    """The exported nn.Module, or MissingRuntime/BadInput."""
    from ..artifact.trust import check_model_code

    check_model_code(manifest, purpose)  # a manifest's model code runs only if the user names it again
    require_torch(purpose)
    from ..loading import rebuild_exported_model

    return rebuild_exported_model(manifest, purpose)


def torch_info(torch) -> dict:
    """What a torch session says of itself (Session.info): eager PyTorch on the CPU, this process's threads."""
    return {
        "runtime": "torch",
        "version": torch.__version__,
        "ran_on": "PyTorch eager (CPU)",
        "fell_back": False,
        "intra_op_threads": torch.get_num_threads(),
    }


class TorchSession(Session):
    def __init__(self, artifact, *, threads: Optional[int] = None, purpose: str = "--backend torch") -> None:
        if artifact.manifest is None or artifact.manifest.options is None:
            raise BadInput(
                f"{purpose}: {artifact.path} has no export manifest to rebuild the PyTorch model from",
                "pass the export directory written by msla-deploy export",
            )
        self.module = rebuild(artifact.manifest, purpose)
        import torch

        from ..nn.heads import with_head

        options = artifact.manifest.options
        # the export's head in PyTorch (segmentation labels: upstream's bicubic resize + argmax, their reference)
        self.module = with_head(self.module, options.head, options.resolution, "cubic", artifact.task.name)

        self._torch = torch
        inputs = artifact.inputs
        if inputs:
            self.inputs = {s.name: s for s in inputs}
        else:  # an engine-only directory: the export options say the shape
            options = artifact.manifest.options
            batch = BATCH_DIM if options.dynamic_batch else options.batch
            self.inputs = {INPUT_NAME: TensorSpec(INPUT_NAME, (batch, 3, *options.resolution), "float32")}
        self.max_batch = options.batch if options.dynamic_batch else None
        outputs = artifact.outputs
        self.outputs = (
            {s.name: s for s in outputs} if outputs else {OUTPUT_NAME: TensorSpec(OUTPUT_NAME, (), "float32")}
        )
        self._previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)  # process-wide: put back in close()
        self.backend = "torch"
        self.info = torch_info(torch)

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)) for name in self.inputs]
        with torch.inference_mode():
            output = self.module(*args)
        names = list(self.outputs)
        values = output if isinstance(output, (tuple, list)) else (output,)
        return {
            name: (value.detach().float() if value.is_floating_point() else value.detach()).numpy()
            for name, value in zip(names, values)
        }

    def close(self) -> None:
        self._torch.set_num_threads(self._previous_threads)
