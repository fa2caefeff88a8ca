"""Fixtures every test module can ask for by name."""

from tests.trt_fake import fake_trt  # noqa: F401  (the fake TensorRT of each version, installed: tests/trt_fake.py)
