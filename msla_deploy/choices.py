"""Option vocabularies shared by the torch-free CLI/options layer and the torch-side policy."""

PRECISIONS = ("fp32", "fp16")
UPSAMPLE_MODES = ("cubic", "bilinear")
EXPORTERS = ("auto", "dynamo", "torchscript")
