"""msla-deploy: LiteMLA models from PyTorch to static ONNX and TensorRT, with parity proofs.

This top-level package imports no torch: the runtime side (inspect, build, validate, bench)
must work on a Jetson that has only numpy, onnx and a runtime installed.
"""

__version__ = "0.1.0"

__all__ = ["Classifier", "Classification", "SamPredictor", "Segmenter", "Segmentation", "__version__"]


def __getattr__(name):
    # lazy (PEP 562): `import msla_deploy` stays light; the Segmenter, the Classifier and the
    # SamPredictor load their runtime on first use
    if name in ("Segmenter", "Segmentation"):
        from .runtime import segmenter

        return getattr(segmenter, name)
    if name in ("Classifier", "Classification"):
        from .runtime import classifier

        return getattr(classifier, name)
    if name == "SamPredictor":
        from .runtime import sam_predictor

        return sam_predictor.SamPredictor
    raise AttributeError(f"module 'msla_deploy' has no attribute {name!r}")
