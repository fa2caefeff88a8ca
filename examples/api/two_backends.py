"""A new stage in ten lines: resolve an artifact, run it on two backends, compare (torch-free
unless a backend is "torch"). Usage: python examples/api/two_backends.py ARTIFACT [B1 B2]"""

import sys

import numpy as np

from msla_deploy import runtime
from msla_deploy.artifact.resolve import resolve

artifact = resolve(sys.argv[1])
first, second = (sys.argv[2:4] + ["ort-cpu", "torch"][len(sys.argv[2:4]) :])[:2]
with runtime.open(artifact, first) as a, runtime.open(artifact, second) as b:
    feeds = a.random_feeds(seed=1)
    out_a, out_b = a.run(feeds), b.run(feeds)
for name in out_a:
    error = float(np.abs(out_a[name] - out_b[name]).max())
    print(f"{name}: {a.describe()['ran_on']} vs {b.describe()['ran_on']}: max |diff| {error:.3g}")
