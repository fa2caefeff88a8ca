"""The optional packages of the serve stage, imported lazily: without them, exit 3 with the fix.

Triton's ModelConfig protobuf (inside the tritonclient wheel) for package, nvidia-pytriton (a
tritonserver binary with its Python backend) for serve. Both are the `serve` extra; the
triton:// client imports tritonclient itself (msla_deploy.runtime.triton).
"""

from __future__ import annotations

from ..errors import MissingRuntime
from ..runtime.triton import INSTALL_FIX


def _missing(what: str, exc: ImportError) -> MissingRuntime:
    return MissingRuntime(f"{what} is not installed ({exc})", INSTALL_FIX)


def model_config_message():
    """Triton's own ModelConfig protobuf message class (shipped inside the tritonclient wheel)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise _missing("tritonclient[grpc]", exc) from None
    return model_config_pb2.ModelConfig


def have_tritonclient() -> bool:
    try:
        model_config_message()
    except MissingRuntime:
        return False
    return True


def pytriton():
    """The PyTriton pieces `serve` uses: Triton, TritonConfig, TritonSecurityConfig, ModelConfig,
    DynamicBatcher, Tensor."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise _missing("nvidia-pytriton", exc) from None
    return Triton, TritonConfig, ModelConfig, DynamicBatcher, Tensor
