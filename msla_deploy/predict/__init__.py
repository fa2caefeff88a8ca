"""`predict` (torch-free): labels, colours and overlays for pictures (segmentation), their top-k
classes (classification); run.py hands each artifact to its task's predictor."""
