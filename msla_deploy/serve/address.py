"""Where `serve` listens unless told otherwise: numpy-free, for the command's option defaults."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"  # the loopback: nothing on the network reaches the model unless --host says so
DEFAULT_PORT = 8001  # Triton's gRPC port
