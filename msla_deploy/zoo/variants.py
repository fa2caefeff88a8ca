"""The model zoo as data: one registry entry per public (upstream) model name, of either task:
the 11 EfficientViT-Seg models and the 21 EfficientViT classifiers (ImageNet-1k).

Torch-free on purpose, so that listing models and resolving checkpoint names works where only
the runtime side is installed. The numbers are upstream's (docs/facts/upstream.md#backbones, #seg-head, #zoo); the
state-dict manifests in tests/data/upstream/state_dict_keys/ pin them down key for key.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .. import timm_models
from ..artifact.options import (
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_PROMPTS,
    DEFAULT_RESOLUTION,
    ExportOptions,
    is_factory_spec,
)
from ..errors import BadInput
from ..tasks import CLASSIFICATION, DEFAULT_TASK, SAM, SEGMENTATION, get_task

#: official checkpoint file names per task (upstream's), as str.format patterns
CHECKPOINT_FILES: Dict[str, str] = {
    SEGMENTATION: "efficientvit_seg_{variant}_{dataset}.pt",
    CLASSIFICATION: "efficientvit_{variant}_r{resolution}.pt",
    SAM: "efficientvit_sam_{variant}.pt",
}


def checkpoint_pattern(task: str) -> str:
    """A task's checkpoint file name with placeholders, for people: efficientvit_<variant>_r<res>.pt."""
    return CHECKPOINT_FILES[task].format(variant="<variant>", dataset="<dataset>", resolution="<res>")


@dataclass(frozen=True)
class ZooSpec:
    """What a user and the export pipeline need to know about one zoo model."""

    name: str
    variant: str  # "b0" ... "l3"
    dataset: str  # "cityscapes", "ade20k" or "imagenet"
    num_classes: int
    norm_eps: float  # set on every BatchNorm after construction, as upstream's zoo does
    checkpoint_file: str  # file name of the official checkpoint
    default_resolution: Tuple[int, int]  # (H, W) of upstream's evaluation
    params: int  # parameter elements
    macs: int  # multiply-accumulates of one batch-1 forward at default_resolution
    task: str = SEGMENTATION  # tasks.py's name


@dataclass(frozen=True)
class BackboneDims:
    """Widths and depths of one backbone, per stage (stride 2, 4, 8, 16, 32; EfficientViT-SAM-XL's
    has a sixth, at 64)."""

    family: str  # "b": EfficientViTBackbone, "l": EfficientViTLargeBackbone
    widths: Tuple[int, ...]
    depths: Tuple[int, ...]
    attention_dim: int  # per-head dim of LiteMLA


@dataclass(frozen=True)
class HeadDims:
    """The seg head's own sizes; its input widths come from the backbone (stride 32, 16, 8)."""

    width: int
    depth: int
    expand_ratio: float
    middle_op: str  # "mbconv" or "fmbconv"
    final_expand: Optional[float]  # None: the classifier reads the middle output directly


@dataclass(frozen=True)
class _Family:
    norm_eps: float
    act: str  # activation of every block (backbone and head)


@dataclass(frozen=True)
class _Dataset:
    num_classes: int
    default_resolution: Tuple[int, int]


FAMILIES: Dict[str, _Family] = {
    "b": _Family(norm_eps=1e-5, act="hswish"),
    # 1e-7 is upstream's zoo setting for L models; PyTorch's default 1e-5 would shift every BN
    "l": _Family(norm_eps=1e-7, act="gelu"),
}

DATASETS: Dict[str, _Dataset] = {
    "cityscapes": _Dataset(num_classes=19, default_resolution=(1024, 2048)),
    "ade20k": _Dataset(num_classes=150, default_resolution=(512, 512)),
    "imagenet": _Dataset(num_classes=1000, default_resolution=(224, 224)),  # a classifier's name says its own
}

BACKBONES: Dict[str, BackboneDims] = {
    "b0": BackboneDims("b", widths=(8, 16, 32, 64, 128), depths=(1, 2, 2, 2, 2), attention_dim=16),
    "b1": BackboneDims("b", widths=(16, 32, 64, 128, 256), depths=(1, 2, 3, 3, 4), attention_dim=16),
    "b2": BackboneDims("b", widths=(24, 48, 96, 192, 384), depths=(1, 3, 4, 4, 6), attention_dim=32),
    "b3": BackboneDims("b", widths=(32, 64, 128, 256, 512), depths=(1, 4, 6, 6, 9), attention_dim=32),
    "l1": BackboneDims("l", widths=(32, 64, 128, 256, 512), depths=(1, 1, 1, 6, 6), attention_dim=32),
    "l2": BackboneDims("l", widths=(32, 64, 128, 256, 512), depths=(1, 2, 2, 8, 8), attention_dim=32),
    "l3": BackboneDims("l", widths=(64, 128, 256, 512, 1024), depths=(1, 2, 2, 8, 8), attention_dim=32),
}


def _b_head(width: int, depth: int, dataset: str) -> HeadDims:
    # B heads differ between datasets only in the classifier: Cityscapes adds a 4x expand conv
    return HeadDims(width, depth, 4, "mbconv", 4 if dataset == "cityscapes" else None)


#: head sizes per public name; the registry order is upstream's
HEADS: Dict[str, HeadDims] = {
    "efficientvit-seg-b0-cityscapes": _b_head(32, 1, "cityscapes"),
    "efficientvit-seg-b1-cityscapes": _b_head(64, 3, "cityscapes"),
    "efficientvit-seg-b2-cityscapes": _b_head(96, 3, "cityscapes"),
    "efficientvit-seg-b3-cityscapes": _b_head(128, 3, "cityscapes"),
    "efficientvit-seg-l1-cityscapes": HeadDims(256, 3, 1, "fmbconv", None),
    "efficientvit-seg-l2-cityscapes": HeadDims(256, 5, 1, "fmbconv", None),
    "efficientvit-seg-b1-ade20k": _b_head(64, 3, "ade20k"),
    "efficientvit-seg-b2-ade20k": _b_head(96, 3, "ade20k"),
    "efficientvit-seg-b3-ade20k": _b_head(128, 3, "ade20k"),
    "efficientvit-seg-l1-ade20k": HeadDims(128, 3, 4, "fmbconv", 8),
    "efficientvit-seg-l2-ade20k": HeadDims(128, 3, 4, "fmbconv", 8),
}


#: (parameters, MACs at the dataset's default resolution) per public name: facts of each model, kept
#: as data so that `msla-deploy models` lists them at once and without torch. Counted by
#: zoo/complexity.py on the built model (tests/zoo/test_zoo.py recounts every entry); the Cityscapes
#: MACs are upstream's published 4.4/25/74/179/282/396 GMACs to within 0.6%.
SIZES: Dict[str, Tuple[int, int]] = {
    "efficientvit-seg-b0-cityscapes": (706_691, 4_388_290_560),
    "efficientvit-seg-b1-cityscapes": (4_803_443, 25_094_520_832),
    "efficientvit-seg-b2-cityscapes": (15_323_779, 73_619_472_384),
    "efficientvit-seg-b3-cityscapes": (39_603_155, 179_183_812_608),
    "efficientvit-seg-l1-cityscapes": (40_242_227, 282_467_500_032),
    "efficientvit-seg-l2-cityscapes": (52_607_923, 396_105_875_456),
    "efficientvit-seg-b1-ade20k": (4_791_414, 3_089_104_896),
    "efficientvit-seg-b2-ade20k": (15_293_382, 9_080_537_088),
    "efficientvit-seg-b3-ade20k": (39_546_198, 22_168_338_432),
    "efficientvit-seg-l1-ade20k": (40_409_526, 36_337_090_560),
    "efficientvit-seg-l2-ade20k": (51_462_454, 45_173_178_368),
}


def _spec_from_name(name: str) -> ZooSpec:
    variant, dataset = name.rsplit("-", 2)[-2:]
    family = FAMILIES[BACKBONES[variant].family]
    data = DATASETS[dataset]
    return ZooSpec(
        name=name,
        variant=variant,
        dataset=dataset,
        num_classes=data.num_classes,
        norm_eps=family.norm_eps,
        checkpoint_file=CHECKPOINT_FILES[SEGMENTATION].format(variant=variant, dataset=dataset),
        default_resolution=data.default_resolution,
        params=SIZES[name][0],
        macs=SIZES[name][1],
    )


@dataclass(frozen=True)
class ClsHeadDims:
    """The classifier head: 1x1 conv to widths[0], global average pool, linear + LayerNorm to
    widths[1], linear to the classes."""

    widths: Tuple[int, int]


#: classifier head widths per backbone variant (upstream's efficientvit_cls_<variant>)
CLS_HEADS: Dict[str, ClsHeadDims] = {
    "b0": ClsHeadDims((1024, 1280)),
    "b1": ClsHeadDims((1536, 1600)),
    "b2": ClsHeadDims((2304, 2560)),
    "b3": ClsHeadDims((2304, 2560)),
    "l1": ClsHeadDims((3072, 3200)),
    "l2": ClsHeadDims((3072, 3200)),
    "l3": ClsHeadDims((6144, 6400)),
}

#: the resolutions upstream published a checkpoint for, per variant (the name's r<res>)
CLS_RESOLUTIONS: Dict[str, Tuple[int, ...]] = {
    "b0": (224,),
    "b1": (224, 256, 288),
    "b2": (224, 256, 288),
    "b3": (224, 256, 288),
    "l1": (224,),
    "l2": (224, 256, 288, 320, 384),
    "l3": (224, 256, 288, 320, 384),
}


def _cls_name(variant: str, resolution: int) -> str:
    # b0 has one checkpoint and upstream's zoo lists it without the resolution
    return f"efficientvit-{variant}" if variant == "b0" else f"efficientvit-{variant}-r{resolution}"


#: (parameters, MACs at the name's resolution) of each classifier, counted like SIZES; the MACs are
#: upstream's published table to within its rounding (tests/zoo/test_cls_zoo.py)
CLS_SIZES: Dict[str, Tuple[int, int]] = {
    "efficientvit-b0": (3_410_008, 100_157_952),
    "efficientvit-b1-r224": (9_102_024, 518_963_712),
    "efficientvit-b1-r256": (9_102_024, 676_588_032),
    "efficientvit-b1-r288": (9_102_024, 855_228_928),
    "efficientvit-b2-r224": (24_330_712, 1_584_411_136),
    "efficientvit-b2-r256": (24_330_712, 2_066_845_696),
    "efficientvit-b2-r288": (24_330_712, 2_613_604_864),
    "efficientvit-b3-r224": (48_646_056, 3_952_768_512),
    "efficientvit-b3-r256": (48_646_056, 5_160_210_432),
    "efficientvit-b3-r288": (48_646_056, 6_528_644_608),
    "efficientvit-l1-r224": (52_654_088, 5_258_178_560),
    "efficientvit-l2-r224": (63_707_016, 6_949_460_992),
    "efficientvit-l2-r256": (63_707_016, 9_072_858_112),
    "efficientvit-l2-r288": (63_707_016, 11_479_374_848),
    "efficientvit-l2-r320": (63_707_016, 14_169_011_200),
    "efficientvit-l2-r384": (63_707_016, 20_397_642_752),
    "efficientvit-l3-r224": (246_037_288, 27_585_722_368),
    "efficientvit-l3-r256": (246_037_288, 36_016_334_848),
    "efficientvit-l3-r288": (246_037_288, 45_571_028_992),
    "efficientvit-l3-r320": (246_037_288, 56_249_804_800),
    "efficientvit-l3-r384": (246_037_288, 80_979_601_408),
}


def _cls_spec(variant: str, resolution: int) -> ZooSpec:
    name = _cls_name(variant, resolution)
    params, macs = CLS_SIZES[name]
    return ZooSpec(
        name=name,
        variant=variant,
        dataset="imagenet",
        num_classes=DATASETS["imagenet"].num_classes,
        norm_eps=FAMILIES[BACKBONES[variant].family].norm_eps,
        checkpoint_file=CHECKPOINT_FILES[CLASSIFICATION].format(variant=variant, resolution=resolution),
        default_resolution=(resolution, resolution),
        params=params,
        macs=macs,
        task=CLASSIFICATION,
    )


SPECS: Dict[str, ZooSpec] = {name: _spec_from_name(name) for name in HEADS}
SPECS.update(
    (spec.name, spec) for spec in (_cls_spec(v, r) for v, resolutions in CLS_RESOLUTIONS.items() for r in resolutions)
)


def names() -> List[str]:
    """The public model names, in upstream's registry order."""
    return list(SPECS)


def get_spec(name: str) -> ZooSpec:
    spec = SPECS.get(name)
    if spec is None:
        query = str(name).strip().lower()
        # a bare variant or dataset ("b1", "ade20k") matches by substring; typos by similarity
        close = [n for n in SPECS if len(query) >= 2 and query in n]
        close = close or difflib.get_close_matches(query, SPECS, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid names: {', '.join(SPECS)}"
        raise BadInput(f"unknown model {name!r}; {hint}", "run `msla-deploy models` to list them")
    return spec


def architecture(name: str) -> Tuple[BackboneDims, Union[HeadDims, ClsHeadDims], str]:
    """(backbone sizes, head sizes, activation) of a zoo model."""
    spec = get_spec(name)
    backbone = BACKBONES[spec.variant]
    head = CLS_HEADS[spec.variant] if spec.task == CLASSIFICATION else HEADS[name]
    return backbone, head, FAMILIES[backbone.family].act


def with_model_defaults(options: ExportOptions) -> ExportOptions:
    """The options with what the model decides filled in: a zoo model's task and resolution are its
    name's, a factory's are --task (segmentation) and DEFAULT_RESOLUTION. The head must be one of
    the task's."""
    if timm_models.is_timm_spec(options.model):  # timm's models are ImageNet classifiers
        task = options.task or timm_models.TASK
        resolution = options.resolution or timm_models.default_resolution(options.model)
    elif is_factory_spec(options.model):
        task, resolution = options.task or DEFAULT_TASK, options.resolution or DEFAULT_RESOLUTION
        if task == SAM:
            raise BadInput(
                "--task sam takes a zoo model (efficientvit-sam-l0 ... -xl1), not a FILE.py:FACTORY",
                "export one of `msla-deploy models --task sam`, or your model as segmentation/classification",
            )
    else:
        spec = get_spec(options.model)
        if options.task not in (None, spec.task):
            raise BadInput(
                f"--task {options.task} does not apply to {spec.name}, a {spec.task} model",
                "drop --task: a zoo model's task is its name's",
            )
        task, resolution = spec.task, options.resolution or spec.default_resolution
    model_task = get_task(task)
    if task != SAM and (options.max_prompts, options.max_points) != (DEFAULT_MAX_PROMPTS, DEFAULT_MAX_POINTS):
        raise BadInput(f"--max-prompts/--max-points apply to SAM models, not to a {task} model", "drop them")
    head = model_task.head_or_default(options.head)
    model_task.check_head(head)
    if options.upsample != "cubic" and not model_task.resizes:
        raise BadInput(f"--upsample {options.upsample}: a {task} model resizes nothing", "drop --upsample")
    return dataclasses.replace(options, task=task, resolution=tuple(resolution), head=head)


def find_checkpoint(name: str, models_dir: Union[str, Path]) -> Optional[Path]:
    """`models_dir / <official file name>` if that file exists, else None."""
    path = Path(models_dir).expanduser() / get_spec(name).checkpoint_file
    return path if path.is_file() else None


# --- EfficientViT-SAM ---------------------------------------------------------------------------
# The five segment-anything models (the third task). Their architecture is zoo/sam/architecture.py;
# zoo.sam.build_sam(name) builds them, and zoo.build(name) hands them to it.

SAM_TASK = SAM
#: upstream's zoo sets this eps on every BatchNorm and LayerNorm (the encoder's, the prompt
#: encoder's and the decoder's alike)
SAM_NORM_EPS = 1e-6

#: (image side of the encoder, parameters of the whole model, MACs of the image encoder at that
#: side) per public name, upstream's registry order. Parameters as upstream's modules count them
#: (published: 34.8M, 47.7M, 61.3M, 117.0M, 203.3M); MACs counted by zoo/complexity.py on the
#: image encoder alone (published: 35G, 49G, 69G, 185G, 322G); tests/zoo/test_sam_zoo.py recounts both.
SAM_SIZES: Dict[str, Tuple[int, int, int]] = {
    "efficientvit-sam-l0": (512, 34_792_784, 34_773_925_888),
    "efficientvit-sam-l1": (512, 47_650_128, 48_978_722_816),
    "efficientvit-sam-l2": (512, 61_328_592, 68_552_228_864),
    "efficientvit-sam-xl0": (1024, 116_957_904, 184_799_723_520),
    "efficientvit-sam-xl1": (1024, 203_346_128, 321_860_927_488),
}


#: the project's own stand-in (not upstream's; no upstream checkpoint exists): EfficientViT-SAM-L0's
#: encoder layout at half its widths and about half its depth, SAM's prompt encoder and mask decoder
#: with a one-block transformer (zoo/sam/architecture.py), small enough to train on a CPU.
#: benchmarks/train_sam.py trains it on procedural shape scenes (evaluate/coco_scenes.py).
SAM_STANDIN = "efficientvit-sam-standin"
SAM_STANDIN_SIZES: Dict[str, Tuple[int, int, int]] = {SAM_STANDIN: (512, 5_990_880, 5_484_183_552)}


def _sam_spec(name: str) -> ZooSpec:
    side, params, macs = {**SAM_SIZES, **SAM_STANDIN_SIZES}[name]
    variant = name.rsplit("-", 1)[-1]
    return ZooSpec(
        name=name,
        variant=variant,
        dataset="sa-1b" if name in SAM_SIZES else "coco-scenes",
        num_classes=0,  # class-agnostic masks
        norm_eps=SAM_NORM_EPS,
        checkpoint_file=CHECKPOINT_FILES[SAM].format(variant=variant),
        default_resolution=(side, side),
        params=params,
        macs=macs,
        task=SAM_TASK,
    )


#: upstream's five
SAM_SPECS: Dict[str, ZooSpec] = {name: _sam_spec(name) for name in SAM_SIZES}
SAM_STANDIN_SPECS: Dict[str, ZooSpec] = {name: _sam_spec(name) for name in SAM_STANDIN_SIZES}
SPECS.update(SAM_SPECS)
SPECS.update(SAM_STANDIN_SPECS)
