"""Option vocabularies shared by the torch-free CLI/options layer and the torch-side policy."""

FLOAT_PRECISIONS = ("fp32", "fp16")  # what the PyTorch precision policy computes in
PRECISIONS = FLOAT_PRECISIONS + ("int8",)  # int8: Q/DQ quantization of the fp32 export
UPSAMPLE_MODES = ("cubic", "bilinear")
EXPORTERS = ("auto", "dynamo", "torchscript")
HEADS = ("logits", "labels", "both")  # graph outputs: logits, in-graph resize + argmax labels, or both
CALIB_METHODS = ("max", "entropy", "percentile")  # ONNX Runtime's MinMax, Entropy, Percentile
