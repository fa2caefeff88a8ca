"""SAM's int8 encoder policies: which blocks of the encoder stay out of Q/DQ.

Whatever the policy, the LiteMLA cores are fp32 islands (export/int8.py) and the final LayerNorm2d's
statistics (its mean/var reductions, its Sqrt and Div) are never quantized: they own no weighted
layer, so no Q/DQ is ever placed on them, and the export pins their nodes to fp32. A policy names
further blocks, by what they are in PyTorch (`families`), to keep out of Q/DQ:

* all: every block's convolutions int8;
* ends-float: the stem convolution (the picture's first layer) and the neck's output projection
  (the last layer before the LayerNorm2d: the embeddings themselves);
* mbconv-float: the MBConv blocks (expand, depthwise, project: the stage-3 blocks, the stage-4
  downsampling one and the local MBConv of each EfficientViT block), the blocks a simulated
  study found sensitive;
* neck-float: the whole SAM neck (input projections, FusedMBConvs, output projection).

"Float" is what the Q/DQ graph cannot say more precisely: a block outside Q/DQ computes in the
graph's fp32. A strongly typed TensorRT build runs it in fp32; a weakly typed --int8 --fp16 build
may run it in fp16 (only the cores and the LayerNorm2d are pinned). fp16 blocks inside the int8
graph would need Casts around each block, which no policy here writes.

The block families are read off the PyTorch encoder (`block_families`) while it exists; which
units a policy keeps float is then decided on the ONNX graph's units alone (torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Sequence

from ..choices import INT8_POLICIES, Int8Policy
from ..records import Record

if TYPE_CHECKING:  # int8.py needs numpy and onnx; `export --help` reads DEFAULT_POLICY from here
    from .int8 import Unit

#: the default policy of `export --precision int8` for SAM: the best measured (benchmarks/README.md, "EfficientViT-SAM
#: int8 policies": its masks agree with fp32's at IoU 90.3 against 80.5-81.2 for the others, on seeded weights; the
#: trained stand-in is too weak to rank them). It agrees with the simulated study the issue cites (MBConv sensitive).
DEFAULT_POLICY = Int8Policy.MBCONV_FLOAT.value

# the block families of the encoder (what each quantization unit is in PyTorch)
STEM, RES, FUSED_MBCONV, MBCONV, ATTENTION_CONVS, CORE, NECK_INPUT, NECK_OUTPUT, OTHER = (
    "stem",
    "resblock",
    "fused-mbconv",
    "mbconv",
    "attention-convs",
    "attention-core",
    "neck-input",
    "neck-output",
    "other",
)
NECK = "neck"  # the neck's module prefix (upstream's state-dict name)


def block_families(encoder) -> Dict[str, str]:
    """module path (relative to the image encoder, as the graph's probes name it) -> family, for
    every module of the PyTorch encoder. torch is imported here: the export's side only."""
    from ..nn.blocks import EfficientViTBlock, FusedMBConv, MBConv, ResBlock
    from ..nn.layers import ConvLayer, ResidualBlock
    from ..nn.litemla import LiteMLA

    families: Dict[str, str] = {}
    for path, module in encoder.named_modules():
        inner = module.main if isinstance(module, ResidualBlock) else module
        if path.endswith(".core") or path == "core":
            family = CORE
        elif isinstance(inner, LiteMLA):
            family = ATTENTION_CONVS
        elif isinstance(inner, (MBConv, EfficientViTBlock)):  # an EfficientViT block's own convs: its local MBConv
            family = MBCONV
        elif isinstance(inner, FusedMBConv):
            family = FUSED_MBCONV
        elif isinstance(inner, ResBlock):
            family = RES
        elif path.startswith(f"{NECK}.input_ops."):
            family = NECK_INPUT
        elif path.startswith(f"{NECK}.output_ops."):
            family = NECK_OUTPUT
        elif isinstance(inner, ConvLayer) and path.startswith("backbone."):
            family = STEM
        else:
            family = OTHER
        families[path] = family
    return families


def unit_family(module: str, families: Dict[str, str]) -> str:
    """A unit's family: its module's, else its innermost known ancestor's (a probe on a sub-module)."""
    path = module
    while path:
        if path in families:
            return families[path]
        path = path.rpartition(".")[0]
    return OTHER


def _kept(policy: str, module: str, family: str, first_stem: bool) -> bool:
    if policy == Int8Policy.ENDS_FLOAT.value:
        return first_stem or family == NECK_OUTPUT
    if policy == Int8Policy.MBCONV_FLOAT.value:
        return family == MBCONV
    if policy == Int8Policy.NECK_FLOAT.value:
        return module == NECK or module.startswith(NECK + ".")
    return False


@dataclass
class PolicyPlan(Record):
    """What a policy made of one encoder graph: the manifest's precision.int8.policy."""

    KIND = "msla-deploy/sam-int8-policy"
    VERSION = 1

    name: str
    kept_float: List[str]  # block units kept out of Q/DQ by the policy (the LiteMLA cores are always float)
    families: Dict[str, str] = field(default_factory=dict)  # every unit -> its block family
    float_means: str = (
        "fp32 in the Q/DQ graph and in a strongly typed TensorRT build; a weakly typed --int8 --fp16 build may run "
        "the kept blocks in fp16 (only the LiteMLA cores and the LayerNorm2d are pinned to fp32)"
    )


def plan(policy: str, units: Sequence["Unit"], families: Dict[str, str]) -> PolicyPlan:
    """The units `policy` keeps float, in graph order (the first block unit of the backbone, when it
    is a plain convolution, is the stem)."""
    if policy not in INT8_POLICIES:
        raise ValueError(f"unknown int8 policy {policy!r}")
    unit_families = {u.module: unit_family(u.module, families) for u in units}
    blocks = [u for u in units if u.kind == "block"]
    stem = next((u.module for u in blocks if unit_families[u.module] == STEM), None)
    kept = [u.module for u in blocks if _kept(policy, u.module, unit_families[u.module], u.module == stem)]
    return PolicyPlan(str(policy), kept, unit_families)


def describe(name: str) -> str:
    """One line for the summary: what the policy keeps float besides the cores and the LayerNorm2d."""
    return {
        Int8Policy.ALL.value: "every block int8",
        Int8Policy.ENDS_FLOAT.value: "stem conv and neck output projection float",
        Int8Policy.MBCONV_FLOAT.value: "MBConv blocks float",
        Int8Policy.NECK_FLOAT.value: "the neck float",
    }.get(name, name)
