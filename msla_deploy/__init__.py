"""msla-deploy: LiteMLA models from PyTorch to static ONNX and TensorRT, with parity proofs.

This top-level package imports no torch: the runtime side (inspect, build, validate, bench)
must work on a Jetson that has only numpy, onnx and a runtime installed.
"""

__version__ = "0.1.0"
