"""`msla-deploy evaluate`: mIoU of a deployed model on a labelled dataset, upstream's protocol.

datasets   the published layouts (Cityscapes, ADE20K, a plain folder), decoding and checks
metrics    running confusion matrices (mIoU, pixel accuracy, per-class IoU)
run        the pass over the data (Evaluation: decode, infer, score, report)
report     EvaluateReport (report.json's typed record), report.md, junit.xml
synthetic  procedural scenes with known labels in each layout (tests, benchmarks)
command    the CLI front end
"""
