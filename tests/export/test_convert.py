"""Plug-and-play conversion: recognise foreign LiteMLA blocks, swap them, export the result.

The foreign blocks are written in the tests (upstream_litemla.py, timm_litemla.py), never
imported from msla_deploy, so recognition is tested the way users meet it: by structure.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from msla_deploy import convert
from msla_deploy.convert import SwapRecord, find_litemla, is_litemla_like, scan_litemla, swap_litemla
from msla_deploy.errors import BadInput
from msla_deploy.nn import LiteMLA, plan_static
from msla_deploy.user_model import build_user_model, load_factory
from tests.fixtures import FIXTURES as UPSTREAM_FIXTURES
from tests.fixtures import REPO
from tests.timm_litemla import TimmStyleLiteMLA
from tests.upstream_litemla import UpstreamStyleLiteMLA, build_upstream_like

FIXTURES = UPSTREAM_FIXTURES / "litemla"
EXAMPLE = REPO / "examples" / "plug_and_play" / "my_segmenter.py"
DYNAMIC_OPS = {"Shape", "Gather", "ConstantOfShape", "If", "Loop"}


def load_case(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def upstream_block_for(case: dict) -> nn.Module:
    module = build_upstream_like(case["config"])
    module.load_state_dict(case["state_dict"])
    return module.eval()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that a swap that loses or reorders BN shows up in the output."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            m.running_var.copy_(0.75 + 0.5 * torch.rand(n, generator=generator))
            m.weight.data.copy_(0.75 + 0.5 * torch.rand(n, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


class ContextStage(nn.Module):
    """Nests the upstream-style block two levels down: body.context.block.0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(UpstreamStyleLiteMLA(channels, channels, dim=8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class TinySegNet(nn.Module):
    def __init__(self, channels: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(channels), nn.Hardswish()
        )
        self.body = nn.ModuleDict({"context": ContextStage(channels)})
        self.neck = TimmStyleLiteMLA(channels, channels, dim=16, scales=(3,))
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body["context"](self.stem(x))
        x = x + self.neck(x)
        return self.head(x)


def tiny_net() -> TinySegNet:
    torch.manual_seed(0)
    model = TinySegNet()
    randomise_batchnorm(model)
    return model.eval()


EXAMPLE_INPUT = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # 8x8 tokens > dim: linear


# --- the test copies are faithful -------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(p.stem for p in FIXTURES.glob("*.pt")))
def test_upstream_style_copy_reproduces_fixture(case):
    data = load_case(case)
    with torch.no_grad():
        out = upstream_block_for(data)(data["input"])
    assert relative_error(out, data["output"]) <= 1e-5


def test_timm_style_copy_computes_the_same_attention():
    """timm's layout (tokens first, chunk, ones column) gives upstream's numbers with upstream's eps."""
    data = load_case("c96_dim8_s3s5")
    config = dict(data["config"], scales=tuple(data["config"]["scales"]))
    timm_block = TimmStyleLiteMLA(**config, eps=1e-15)
    timm_block.load_state_dict(data["state_dict"])  # same keys: absent norms are Identity
    with torch.no_grad():
        out = timm_block.eval()(data["input"])
    assert relative_error(out, data["output"]) <= 1e-5


# --- recognition ------------------------------------------------------------------------------


def test_recognises_both_layouts_and_not_ours():
    model = tiny_net()
    assert [name for name, _ in find_litemla(model)] == ["body.context.block.0", "neck"]
    assert is_litemla_like(UpstreamStyleLiteMLA(32, 32, dim=8))
    assert is_litemla_like(TimmStyleLiteMLA(32, 32, dim=8))
    assert not is_litemla_like(LiteMLA(32, 32, dim=8))  # already export-friendly
    assert not is_litemla_like(nn.Conv2d(3, 3, 1))


# --- swapping a network -----------------------------------------------------------------------


def test_swap_network_keeps_weights_outputs_and_eps():
    model = tiny_net()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(EXAMPLE_INPUT)

    swapped, records = swap_litemla(model)

    assert swapped is model  # in place when the root is not itself a LiteMLA
    assert [(r.path, r.source, r.swapped, r.eps) for r in records] == [
        ("body.context.block.0", f"{UpstreamStyleLiteMLA.__module__}.UpstreamStyleLiteMLA", True, 1e-15),
        ("neck", f"{TimmStyleLiteMLA.__module__}.TimmStyleLiteMLA", True, 1e-5),  # timm's own eps kept
    ]
    assert [(r.dim, r.heads, r.scales, r.kernel) for r in records] == [(8, 4, (5,), "ReLU"), (16, 2, (3,), "ReLU")]
    json.dumps([r.to_dict() for r in records])  # manifest-ready
    assert scan_litemla(swapped) == []  # no foreign LiteMLA left, not even a look-alike
    ours = [m for m in swapped.modules() if isinstance(m, LiteMLA)]
    assert [m.eps for m in ours] == [1e-15, 1e-5]

    after_state = swapped.state_dict()
    assert list(after_state) == list(before_state)
    assert all(torch.equal(after_state[k], before_state[k]) for k in before_state)
    swapped.load_state_dict(before_state, strict=True)
    with torch.no_grad():
        after = swapped(EXAMPLE_INPUT)
    assert relative_error(after, before) <= 1e-5


def test_swap_at_root_returns_new_root_and_keeps_mode():
    block = UpstreamStyleLiteMLA(32, 32, dim=8).train()
    block.proj.norm.eval()  # a mixed-mode submodule must stay as the user left it
    swapped, records = swap_litemla(block)
    assert isinstance(swapped, LiteMLA) and swapped is not block
    assert [r.path for r in records] == [""]
    assert swapped.training and swapped.qkv.training and not swapped.proj.norm.training
    assert swapped.proj is block.proj  # weights shared, not copied


def test_block_shared_by_two_parents_is_swapped_in_both():
    block = UpstreamStyleLiteMLA(16, 16, dim=8)
    model = nn.ModuleDict({"a": nn.Sequential(block), "b": nn.Sequential(block)})
    swapped, records = swap_litemla(model)
    assert len(records) == 1
    assert isinstance(swapped["a"][0], LiteMLA) and swapped["a"][0] is swapped["b"][0]


def test_inconsistent_look_alike_is_reported_not_swapped():
    odd = UpstreamStyleLiteMLA(32, 32, dim=8)
    odd.dim = 5  # 96 qkv channels are not a multiple of 3*5
    model = nn.Sequential(nn.Conv2d(3, 32, 1), odd)
    assert find_litemla(model) == [] and not is_litemla_like(odd)
    swapped, records = swap_litemla(model)
    assert swapped[1] is odd
    (record,) = records
    assert (record.path, record.swapped) == ("1", False)
    assert "multiple of 3*dim" in record.problem
    assert "left 1 " in record.summary()


class ChannelMajorLiteMLA(UpstreamStyleLiteMLA):
    """Same structure, other layout: all q, then all k, then all v. Structure alone cannot tell."""

    def _split_heads(self, qkv):
        batch, channels, height, width = qkv.shape
        q, k, v = qkv.reshape(batch, 3, channels // (3 * self.dim), self.dim, height * width).unbind(1)
        return q, k, v


def test_look_alike_with_other_math_is_caught_by_the_check():
    model = nn.Sequential(ChannelMajorLiteMLA(32, 32, dim=8).eval())
    swapped, (record,) = swap_litemla(model)
    assert not record.swapped and "differs" in record.problem
    assert isinstance(swapped[0], ChannelMajorLiteMLA)
    # without the check the same structure would be swapped (and give wrong numbers)
    _, (unchecked,) = swap_litemla(nn.Sequential(ChannelMajorLiteMLA(32, 32, dim=8)), verify=False)
    assert unchecked.swapped


def test_extra_submodule_is_reported():
    block = UpstreamStyleLiteMLA(16, 16, dim=8)
    block.norm_q = nn.LayerNorm(8)  # a variant upstream later added; a swap would lose it
    _, (record,) = swap_litemla(block)
    assert not record.swapped and "norm_q" in record.problem


def test_check_leaves_training_modes_and_bn_statistics_alone():
    model = tiny_net().train()
    stats = model.neck.proj.norm.running_mean.clone()
    swap_litemla(model)
    assert all(m.training for m in model.modules())
    assert torch.equal(model.neck.proj.norm.running_mean, stats)


# --- export -----------------------------------------------------------------------------------


def export_onnx(model: nn.Module, example: torch.Tensor, dynamo: bool) -> onnx.ModelProto:
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(model, (example,), dynamo=True, opset_version=17, verbose=False).model_proto
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17)
        return onnx.load_from_string(buffer.getvalue())


def run_ort(proto: onnx.ModelProto, example: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]


def op_types(proto: onnx.ModelProto) -> set:
    graphs = [proto.graph]
    ops = set()
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            ops.add(node.op_type)
            graphs.extend(attr.g for attr in node.attribute if attr.type == onnx.AttributeProto.GRAPH)
    for function in proto.functions:
        ops.update(node.op_type for node in function.node)
    return ops


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_swapped_network_exports_static_and_matches(dynamo):
    model, _ = swap_litemla(tiny_net())
    reference, plans = plan_static(model, EXAMPLE_INPUT)
    assert all(plan.linear for plan in plans.values())
    proto = export_onnx(model, EXAMPLE_INPUT, dynamo)
    assert not op_types(proto) & DYNAMIC_OPS
    assert relative_error(torch.from_numpy(run_ort(proto, EXAMPLE_INPUT)), reference) <= 1e-5


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_zero_query_fixture_keeps_eps_through_export(dynamo):
    data = load_case("c64_dim16_zero_query")
    model, (record,) = swap_litemla(upstream_block_for(data))
    assert record.swapped and record.eps == 1e-15
    plan_static(model, data["input"])
    got = torch.from_numpy(run_ort(export_onnx(model, data["input"], dynamo), data["input"]))
    assert torch.isfinite(got).all()  # eps lost would give 0/0 = NaN for head 0
    assert relative_error(got, data["output"]) <= 1e-5


# --- loading a user's factory -----------------------------------------------------------------


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def bad_input(spec: str, *fragments: str) -> str:
    with pytest.raises(BadInput) as info:
        build_user_model(spec)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_factory_spec_errors(tmp_path):
    bad_input("model.py", "':factory'")
    bad_input(str(tmp_path / "missing.py") + ":build", "not found")
    bad_input(
        write(tmp_path / "boom.py", "import torch\n\nx = 1 / 0\n") + ":build", "ZeroDivisionError at boom.py line 3"
    )
    bad_input(write(tmp_path / "syntax.py", "def build(:\n    pass\n") + ":build", "SyntaxError at syntax.py line 1")
    bad_input(
        write(tmp_path / "deps.py", "import no_such_package_xyz\n") + ":build",
        "ModuleNotFoundError",
        "no_such_package_xyz",
        "install",
    )
    spec = write(tmp_path / "names.py", "from torch import nn\n\ndef make():\n    return nn.Identity()\n")
    bad_input(spec + ":build", "no attribute 'build'", "make")
    bad_input(write(tmp_path / "value.py", "build = 3\n") + ":build", "not callable")
    raising = "def helper():\n    raise ValueError('no weights here')\n\ndef build():\n    return helper()\n"
    bad_input(
        write(tmp_path / "raises.py", raising) + ":build", "raised ValueError at raises.py line 2: no weights here"
    )
    bad_input(write(tmp_path / "wrong.py", "def build():\n    return 42\n") + ":build", "returned int", "nn.Module")
    bad_input(
        write(tmp_path / "args.py", "def build(classes):\n    pass\n") + ":build", "build(classes)", "needs arguments"
    )
    bad_input("no_such_package_xyz.models:build", "no module named")
    bad_input("collections:OrderedDict", "returned OrderedDict")


def test_factory_from_file_with_sibling_import(tmp_path):
    write(
        tmp_path / "msla_test_sibling_blocks.py", "from torch import nn\n\ndef conv():\n    return nn.Conv2d(3, 4, 1)\n"
    )
    spec = (
        write(tmp_path / "net.py", "from msla_test_sibling_blocks import conv\n\ndef build():\n    return conv()\n")
        + ":build"
    )
    assert callable(load_factory(spec))
    model, name = build_user_model(spec)
    assert isinstance(model, nn.Conv2d) and name == "build"


def test_factory_from_module_and_from_callable():
    model, name = build_user_model("torch.nn:Identity")
    assert isinstance(model, nn.Identity) and name == "Identity"
    model, name = build_user_model(tiny_net)
    assert isinstance(model, TinySegNet) and name == "tiny_net"


def test_example_segmenter_is_swapped():
    model, name = build_user_model(f"{EXAMPLE}:build")
    model.eval()
    example = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(example)
    model, records = swap_litemla(model)
    assert name == "build" and [(r.path, r.swapped) for r in records] == [("context", True)]
    assert records[0].source.endswith(".LiteMLA") and isinstance(model.context, LiteMLA)
    with torch.no_grad():
        assert relative_error(model(example), before) <= 1e-5


def test_record_dict_round_trip():
    record = SwapRecord("a.b", "pkg.Cls", True, dim=8, heads=4, scales=(3, 5), eps=1e-5, kernel="ReLU")
    assert record.to_dict() == {
        "path": "a.b",
        "source": "pkg.Cls",
        "swapped": True,
        "dim": 8,
        "heads": 4,
        "scales": [3, 5],
        "eps": 1e-5,
        "kernel": "ReLU",
        "problem": None,
    }
    assert convert.class_name(record) == "msla_deploy.convert.SwapRecord"


# --- eps decides: a (nearly) silent query head (issue 16) -------------------------------------


def _timm_block_with_a_silent_query_head(eps: float = 1e-5) -> TimmStyleLiteMLA:
    """timm's layout with head 0's query weights scaled by 1e-9: its normaliser (~1e-7) is far
    below timm's eps 1e-5 and far above upstream's 1e-15, so which eps is used sets the output.
    (An exactly zero query gives 0 / eps = 0 for any eps > 0; a nearly zero one does not.)"""
    torch.manual_seed(3)
    block = TimmStyleLiteMLA(32, 32, dim=16, scales=(3,), eps=eps)
    randomise_batchnorm(block)
    with torch.no_grad():
        block.qkv.conv.weight[: block.dim] *= 1e-9  # head-major q|k|v: rows 0..dim-1 are head 0's q
    return block.eval()


def test_swapped_timm_block_keeps_its_own_eps_where_eps_decides():
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(4))  # 64 tokens: linear
    timm_block = _timm_block_with_a_silent_query_head()
    upstream_eps = _timm_block_with_a_silent_query_head(eps=1e-15)
    upstream_eps.load_state_dict(timm_block.state_dict())
    with torch.no_grad():
        want = timm_block(x)
        other = upstream_eps(x)
    assert relative_error(other, want) > 0.05  # the case really depends on eps

    swapped, (record,) = swap_litemla(timm_block)
    assert isinstance(swapped, LiteMLA) and record.swapped
    with torch.no_grad():
        got = swapped(x)
    error = relative_error(got, want)
    assert error <= 1e-4, f"swapped block is {error:.3g} off timm's own (eps 1e-5) output"
