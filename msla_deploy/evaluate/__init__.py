"""`msla-deploy evaluate`: how well a deployed model does on a labelled dataset, upstream's protocol
for its task (mIoU for segmentation, top-1 / top-5 accuracy for classification).

protocols       which evaluation a model gets: one per task name (the one place evaluate asks)
passes          what every pass shares: backend order, low-priority reader threads, decoded batches
render          the console view of each report

Segmentation
datasets        the published layouts (Cityscapes, ADE20K, a plain folder), decoding and checks
run             the pass over the data (Evaluation: decode, infer, score, report)
report          EvaluateReport (report.json's typed record), report.md, junit.xml
pictures        the pictures of the images where two backends disagree most
synthetic       procedural scenes with known labels in each layout, and class folders (tests, benchmarks)

Classification
imagenet        an ImageNet-style class folder or a `PATH INDEX` list file, checked
accuracy        top-1 / top-k counts per class, agreement between backends
classification  the pass (ClassifyEvaluation), upstream's transform from runtime/classify_preprocess.py
classify_report ClassifyReport (report.json's typed record), report.md, junit.xml

command         the CLI front end
"""
