"""The `triton://HOST:PORT[/MODEL]` backend: a model served by Triton Inference Server, run over
KServe v2 gRPC through tritonclient, behind the same Session interface as a local backend.

gRPC rather than HTTP: one channel is safe to share between threads (concurrent callers of
run()), tensors travel as raw bytes, and every call takes a deadline. Port 8001 is Triton's gRPC
default. Every call is bounded (`timeout_s`): a server that is down, a model that is not ready or
a server that stops answering is MissingRuntime (exit 3) with the reason, never a hang.
"""

from __future__ import annotations

import re
import threading
from typing import Dict, Optional, Tuple

import numpy as np

from ..artifact.graph import TensorSpec
from ..artifact.names import TRITON_SCHEME
from ..errors import BadInput, MissingRuntime, install_extra, one_line_text
from .session import Session

DEFAULT_PORT = 8001  # Triton's gRPC port
DEFAULT_TIMEOUT_S = 30.0
BACKEND = "triton"
INSTALL_FIX = f"{install_extra('serve')}: tritonclient and nvidia-pytriton"

# numpy dtype name -> KServe v2 datatype; Triton's config enum is "TYPE_" + the same word
KSERVE_DTYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
}
NUMPY_DTYPES = {v: k for k, v in KSERVE_DTYPES.items()}


def import_tritonclient_grpc():
    """tritonclient.grpc and its error type, or exit 3 with the install line."""
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise MissingRuntime(f"tritonclient[grpc] is not installed ({exc})", INSTALL_FIX) from None
    return grpcclient, InferenceServerException


def is_triton_target(target) -> bool:
    return isinstance(target, str) and target.startswith(TRITON_SCHEME)


# a DNS name or IPv4 address (labels of letters, digits and '-', not starting with '-'), or an IPv6 address
_HOST_OK = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*|[0-9A-Fa-f:.%]+"
)


_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a model name Triton serves and a folder can carry


def check_model_name(name: str) -> str:
    """A name Triton can serve and a folder can carry (fullmatch: `$` alone would let a trailing
    newline through, into config.pbtxt and the repository's folder name)."""
    if not _NAME_OK.fullmatch(name or ""):
        raise BadInput(f"model name {name!r} is not usable by Triton", "use letters, digits, '.', '_' and '-' (--name)")
    return name


def parse_target(url: str) -> Tuple[str, int, Optional[str]]:
    """triton://HOST[:PORT][/MODEL] -> (host, port, model or None)."""
    if not is_triton_target(url):
        raise BadInput(f"{url!r} is not a Triton address", "write triton://HOST:PORT[/MODEL]")
    rest = url[len(TRITON_SCHEME) :]
    address, _, model = rest.partition("/")
    model = model.strip("/") or None
    if model is not None and "/" in model:
        raise BadInput(f"{url!r}: a model name has no '/'", "write triton://HOST:PORT/MODEL")
    if model is not None:
        check_model_name(model)
    if address.startswith("["):  # [::1]:8001
        host, closed, port_text = address[1:].partition("]")
        if not closed or (port_text and not port_text.startswith(":")):
            raise BadInput(f"{url!r}: an IPv6 address is written [ADDRESS]:PORT", "write e.g. triton://[::1]:8001")
        port_text = port_text[1:]
    else:
        host, _, port_text = address.partition(":")
    if not host:
        raise BadInput(f"{url!r} names no host", "write triton://HOST:PORT[/MODEL], e.g. triton://127.0.0.1:8001")
    if not _HOST_OK.fullmatch(host):
        raise BadInput(
            f"{url!r}: {host!r} is not a host name or address",
            "write triton://HOST:PORT[/MODEL], e.g. triton://127.0.0.1:8001",
        )
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise BadInput(f"{url!r}: port {port_text!r} is not a number", "write triton://HOST:PORT[/MODEL]") from None
    if not 0 < port < 65536:
        raise BadInput(f"{url!r}: port {port} is out of range", "write triton://HOST:PORT[/MODEL]")
    return host, port, model


def _status(exc) -> str:
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else status or "")


_UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


def _fits(shape, declared) -> bool:
    """A shape against the server's declared dims (a name such as "?": any size)."""
    return len(shape) == len(declared) and all(not isinstance(d, int) or int(s) == d for s, d in zip(shape, declared))


class TritonSession(Session):
    """A served model as a Session: named numpy arrays in, named numpy arrays out."""

    backend = BACKEND

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._client = None
        self.host, self.port, model = parse_target(url)
        self.timeout_s = float(timeout_s)
        self._grpc, self._error = import_tritonclient_grpc()
        self.address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self._client = self._grpc.InferenceServerClient(self.address)
        self._lock = threading.Lock()
        self._answered_version: Optional[str] = None
        self._answers = 0
        self.model = model  # the one asked for (None: the server's only model, found on connecting)
        try:
            self._connect(model)
        except BaseException:
            self.close()
            raise

    # --- opening --------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, client_timeout=self.timeout_s, **kwargs)
        except self._error as exc:
            raise self._as_error(what, exc) from None

    def _as_error(self, what: str, exc) -> Exception:
        text = one_line_text(exc.message() if callable(getattr(exc, "message", None)) else exc)
        status = _status(exc)
        if any(s in status for s in _UNREACHABLE) or "failed to connect" in text.lower() or "deadline" in text.lower():
            return MissingRuntime(
                f"Triton server {self.url} did not answer {what} within {self.timeout_s:g} s ({text})",
                "start it (msla-deploy serve ARTIFACT, or tritonserver --model-repository=...), and check HOST:PORT "
                "(gRPC)",
            )
        return MissingRuntime(f"Triton server {self.url}: {what} failed ({text})", "check the server's log")

    def _connect(self, model: Optional[str]) -> None:
        if not self._call("a liveness check", self._client.is_server_live):
            raise MissingRuntime(f"Triton server {self.url} is not live", "wait for it to start, or check its log")
        self.server = self._call("its metadata", self._client.get_server_metadata, as_json=True)
        self.model = model or self._only_model()
        if not self._call(f"whether {self.model!r} is ready", self._client.is_model_ready, self.model):
            raise MissingRuntime(
                f"model {self.model!r} is not ready on Triton server {self.url}",
                "check the name (triton://HOST:PORT/MODEL) and the server's log: did it load?",
            )
        self.metadata = self._call(
            f"the metadata of {self.model!r}", self._client.get_model_metadata, self.model, as_json=True
        )
        config = self._call(f"the config of {self.model!r}", self._client.get_model_config, self.model, as_json=True)
        self.config = config.get("config", config)
        self.max_batch_size = int(self.config.get("max_batch_size") or 0)
        self.max_batch = self.max_batch_size or None
        self.inputs = self._specs(self.metadata.get("inputs") or [])
        self.outputs = self._specs(self.metadata.get("outputs") or [])
        # .batch (Session's: the first input's first dim): with max_batch_size 0 the dims include
        # the batch; with > 0 Triton batches, and a request may carry up to that many
        self.info = {
            "runtime": "tritonserver",
            "version": self.server.get("version"),
            "server": self.url,
            "model": self.model,
        }

    def _only_model(self) -> str:
        try:
            index = self._client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        except self._error as exc:
            text = one_line_text(exc.message() if callable(getattr(exc, "message", None)) else exc)
            if "restricted" not in text.lower() and any(s in _status(exc) for s in _UNREACHABLE):
                raise self._as_error("its model index", exc) from None
            # PyTriton (and so `msla-deploy serve`) restricts the repository API, which lists models
            raise BadInput(
                f"Triton server {self.url} does not list its models ({text})",
                "name the model: triton://HOST:PORT/MODEL (msla-deploy serve prints it)",
            ) from None
        models = sorted({m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY"})
        if len(models) != 1:
            listed = ", ".join(models) if models else "none ready"
            raise BadInput(
                f"Triton server {self.url} holds {len(models)} ready models ({listed})",
                "name one: triton://HOST:PORT/MODEL",
            )
        return models[0]

    def _specs(self, tensors) -> Dict[str, TensorSpec]:
        specs = {}
        for t in tensors:
            shape = [int(d) for d in t.get("shape", [])]
            if self.max_batch_size > 0 and shape and shape[0] == -1:
                shape[0] = self.max_batch_size
            shape = [d if d >= 0 else "?" for d in shape]  # a dimension the server leaves open
            dtype = NUMPY_DTYPES.get(t.get("datatype", ""), t.get("datatype", ""))
            specs[t["name"]] = TensorSpec(t["name"], tuple(shape), dtype)
        return specs

    # --- the Session interface ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{TRITON_SCHEME}{self.address}" + (f"/{self.model}" if getattr(self, "model", None) else "")

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        requests = []
        for name, spec in self.inputs.items():
            value = np.ascontiguousarray(feeds[name])
            if value.dtype.name != spec.dtype:
                raise BadInput(
                    f"{self.url}: input {name} is {spec.dtype}, given {value.dtype.name}", f"cast it to {spec.dtype}"
                )
            if self.max_batch_size == 0 and not _fits(value.shape, spec.shape):
                raise BadInput(
                    f"{self.url}: input {name} has shape {list(spec.shape)}, given {list(value.shape)}",
                    "resize or batch the input to that shape",
                )
            if self.max_batch_size > 0 and not (
                _fits(value.shape[1:], spec.shape[1:]) and 0 < value.shape[0] <= self.max_batch_size
            ):
                rest = ", ".join(map(str, spec.shape[1:]))
                raise BadInput(
                    f"{self.url}: input {name} takes shape [1..{self.max_batch_size}, {rest}], given "
                    f"{list(value.shape)}",
                    "split the batch",
                )
            request = self._grpc.InferInput(name, list(value.shape), KSERVE_DTYPES[value.dtype.name])
            request.set_data_from_numpy(value)
            requests.append(request)
        wanted = [self._grpc.InferRequestedOutput(name) for name in self.outputs]
        result = self._call(f"an inference of {self.model!r}", self._client.infer, self.model, requests, outputs=wanted)
        answer = result.get_response(as_json=True)
        with self._lock:
            self._answered_version = str(answer.get("model_version") or self._answered_version or "")
            self._answers += 1
        return {name: result.as_numpy(name) for name in self.outputs}

    def describe(self) -> Dict:
        """Which server, model version and platform answered."""
        versions = self.metadata.get("versions") or []
        return {
            "runtime": "tritonserver",
            "version": self.server.get("version"),
            "ran_on": (
                f"{self.url} (model version {self._answered_version or ', '.join(versions) or '?'}, platform "
                f"{self.metadata.get('platform', '?')})"
            ),
            "server": self.url,
            "model": self.model,
            "model_version": self._answered_version,
            "model_versions": versions,
            "platform": self.metadata.get("platform"),
            "backend_in_server": self.config.get("backend") or None,
            "max_batch_size": self.max_batch_size,
            "answers": self._answers,
            "providers": None,
            "fell_back": False,
            "note": "served: the server's config (instance_group) decides the device",
        }

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a channel to a dead server must not mask the real error
                pass
            self._client = None


def open_triton(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, expected=None) -> TritonSession:
    """A session on a served model; with `expected` (an Artifact) the served model's inputs and
    outputs must be the artifact's (validate compares the server's answers with that export's
    reference, so a different model there would be judged as a broken one)."""
    session = TritonSession(url, timeout_s=timeout_s)
    if expected is not None and expected.onnx_model is not None:
        try:
            _check_same_io(session, expected)
        except BaseException:
            session.close()
            raise
    return session


def _check_same_io(session: TritonSession, artifact) -> None:
    def served(specs):
        return {n: (tuple(s.shape), s.dtype) for n, s in specs.items()}

    def local(specs):
        # a dynamic batch ('batch') is served as Triton's batching up to the export's largest batch,
        # which the served side's shapes carry in that place (_specs)
        def shape(spec):
            dims = tuple(spec.shape)
            if dims and not isinstance(dims[0], int) and artifact.max_batch:
                return (artifact.max_batch, *dims[1:])
            return dims

        return {s.name: (shape(s), s.dtype) for s in specs}

    for side, mine, theirs in (
        ("inputs", local(artifact.inputs), served(session.inputs)),
        ("outputs", local(artifact.outputs), served(session.outputs)),
    ):
        if mine != theirs:
            raise BadInput(
                f"the model at {session.url} is not {artifact.path}: its {side} are {theirs}, the artifact's {mine}",
                "point triton:// at the model served from this artifact (or pass that model's artifact)",
            )
