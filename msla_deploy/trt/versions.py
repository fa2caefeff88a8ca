"""What each TensorRT version offers, as data, with where each fact comes from.

Everything that decides a build plan or a trtexec command line by version reads these tables;
no other module compares version numbers against literals. Sources are named per fact:

- ``NVIDIA/TensorRT`` means the OSS repository (github.com/NVIDIA/TensorRT), branch
  ``release/X.Y``: ``include/NvInfer.h`` for the C++ enums, ``python/src/infer/*.cpp`` for the
  Python binding names, ``samples/common/sampleOptions.cpp`` for trtexec's flags (its help text
  and parser). Each "since"/"until" below was read off those files at every release branch from
  8.5 to 11.1.
- ``docs/facts/tensorrt.md#<section>`` is this project's own fact page, which explains these tables and names
  the sources above per fact.
- ``docs:`` is NVIDIA's documentation site (docs.nvidia.com/deeplearning/tensorrt/...).

Versions are compared as (major, minor): TensorRT's behaviour changes at minor releases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..errors import BadInput

Version = Tuple[int, int]

SRC_HEADER = "NVIDIA/TensorRT release/X.Y include/NvInfer.h"
SRC_PYTHON = "NVIDIA/TensorRT release/X.Y python/src/infer/pyCore.cpp (Python bindings)"
SRC_TRTEXEC = "NVIDIA/TensorRT release/X.Y samples/common/sampleOptions.cpp (trtexec help and parser)"
SRC_TRTEXEC_ENGINES = (
    "NVIDIA/TensorRT release/X.Y samples/common/sampleEngines.cpp (trtexec's network/config set-up and engine loading)"
)
SRC_FACTS = "docs/facts/tensorrt.md#weak-and-strong-typing"
SRC_FACTS_DLA = "docs/facts/tensorrt.md#dla"
SRC_FACTS_8 = (
    "docs/facts/tensorrt.md#python-api-per-version and #trtexec-flags (checked against NVIDIA's binding wheels and "
    "trtexec sources)"
)
SRC_API_FIXTURES = (
    "tests/data/tensorrt_api/<version>.json.gz (the Python API read from NVIDIA's binding wheels 8.6.1 ... 11.4)"
)
SRC_DLA_DOCS = (
    "docs: inference-library/work-with-dla.html (11.3.0, 11.4.0, 11.4.1) and "
    "getting-started/release-notes-11/11.4.1.html"
)


@dataclass(frozen=True)
class TrtVersion:
    major: int
    minor: int
    text: str  # as given or as installed ("10.3.0.30")

    @property
    def key(self) -> Version:
        return (self.major, self.minor)

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, version: Version) -> bool:
        return self.key >= version

    def before(self, version: Version) -> bool:
        return self.key < version

    def __str__(self) -> str:
        return self.short


def parse_version(text: str) -> TrtVersion:
    """'10.3', '10.3.0.30', '8.6.2' -> TrtVersion. Bad text is BadInput."""
    match = re.fullmatch(r"\s*(\d+)(?:\.(\d+)(?:\.\d+)*)?\s*", text or "")  # "11" means 11.0, as inspect reads it
    if not match:
        raise BadInput(
            f"--trt-version {text!r} is not a TensorRT version", "write it as X.Y, e.g. 8.6, 10.3, 10.13 or 11.4"
        )
    version = TrtVersion(int(match.group(1)), int(match.group(2) or 0), text.strip())
    if version.key < OLDEST_SUPPORTED:
        raise BadInput(
            f"TensorRT {version.short} is older than the oldest version this tool plans for "
            f"({OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]}, JetPack 5.1)",
            "upgrade TensorRT (JetPack 5.1 ships 8.5.2)",
        )
    return version


OLDEST_SUPPORTED: Version = (8, 5)


@dataclass(frozen=True)
class Span:
    """A feature present from `since` (inclusive) until `until` (exclusive, None = still there)."""

    since: Version
    until: Optional[Version]
    source: str
    note: str = ""

    def covers(self, version: TrtVersion) -> bool:
        return version.key >= self.since and (self.until is None or version.key < self.until)


# --- builder / network API -------------------------------------------------------------------

API: Dict[str, Span] = {
    # NetworkDefinitionCreationFlag.kEXPLICIT_BATCH: required for ONNX before 10.0, deprecated
    # (ignored) in 10.0, gone from the 11.0 header and Python bindings.
    "explicit_batch_flag": Span(
        (8, 5), (10, 0), SRC_HEADER, "10.0: 'Ignored because networks are always explicit batch'"
    ),
    # NetworkDefinitionCreationFlag.kSTRONGLY_TYPED appears in the 9.0 header (absent in 8.6);
    # 11.0 deprecates it: 'Strongly typed mode is always enabled ... retained but ignored'.
    "strongly_typed_flag": Span(
        (9, 0), (11, 0), SRC_HEADER, "11.0+: every network is strongly typed, the flag is ignored"
    ),
    "strongly_typed": Span((9, 0), None, SRC_HEADER),
    # BuilderFlag.kFP16 / kOBEY_PRECISION_CONSTRAINTS / ILayer.precision / set_output_type:
    # deprecated in 10.12 ('Superseded by strong typing'), absent from the 11.0 header and bindings.
    "weak_typing": Span((8, 5), (11, 0), f"{SRC_HEADER}; {SRC_PYTHON}; {SRC_FACTS}", "deprecated since 10.12"),
    "builder_optimization_level": Span((8, 6), None, f"{SRC_HEADER} (IBuilderConfig::setBuilderOptimizationLevel)"),
    "hardware_compat_ampere_plus": Span((8, 6), None, f"{SRC_HEADER} (HardwareCompatibilityLevel::kAMPERE_PLUS)"),
    "hardware_compat_same_cc": Span(
        (10, 9), None, f"{SRC_HEADER} (HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY, first in 10.9)"
    ),
    "version_compatible": Span((8, 6), None, f"{SRC_HEADER} (BuilderFlag::kVERSION_COMPATIBLE)"),
    "engine_inspector": Span(
        (8, 2), None, f"{SRC_PYTHON} (ICudaEngine.create_engine_inspector; present in every branch from 8.5)"
    ),
    "tf32_flag": Span((8, 5), None, f"{SRC_HEADER} (BuilderFlag::kTF32, still 'Enabled by default' in 11.0)"),
    "timing_cache": Span((8, 5), None, f"{SRC_PYTHON} (create_timing_cache, set_timing_cache, get_timing_cache)"),
    # Runtime.engine_host_code_allowed: present in every fixture from 8.6.1 (the version-compatible
    # engines it unlocks appear in 8.6); trtexec sets it before deserialising a --versionCompatible engine.
    "engine_host_code_allowed": Span((8, 6), None, f"{SRC_API_FIXTURES}; {SRC_TRTEXEC_ENGINES}; {SRC_FACTS_8}"),
    # Runtime.DLA_core: in every fixture; trtexec sets it before deserialising whenever --useDLACore is given.
    "runtime_dla_core": Span((8, 5), None, f"{SRC_API_FIXTURES}; {SRC_TRTEXEC_ENGINES}"),
}

# What `trtexec --useDLACore=N` adds by itself (sampleEngines.cpp setupNetworkAndConfig, read at
# release/8.5, 8.6, 9.3, 10.0, 10.3, 10.7, 10.8, 10.13, 10.16, 11.0, 11.1): PREFER_PRECISION_CONSTRAINTS
# and FP16 (unless --int8) up to 10.x; DIRECT_IO unless --allowGPUFallback in every branch. The
# Python build sets the same flags, so that the printed command and `build` make the same engine.
# With --stronglyTyped trtexec 9.0-10.x drops --fp16 ("Invalid usage ... not allowed if graph is
# strongly typed"), then sets FP16 for DLA anyway: strong typing with DLA is refused on those versions.
DLA_IMPLIES: Dict[str, Span] = {
    "prefer_precision_constraints": Span((8, 5), (11, 0), SRC_TRTEXEC_ENGINES, "11.x sets neither: the flags are gone"),
    "fp16_flag": Span((8, 5), (11, 0), SRC_TRTEXEC_ENGINES, "unless --int8"),
    "direct_io": Span(
        (8, 5),
        None,
        SRC_TRTEXEC_ENGINES,
        "unless --allowGPUFallback ('Reformatting runs on GPU, so avoid I/O reformatting')",
    ),
}


# trtexec always calls setAvgTimingIterations(8) (sampleOptions.h defaultAvgTiming{8}, sampleEngines.cpp,
# release/8.5 ... 11.1); the API's own default is 1. The Python build sets the same, so the printed
# command and `build` time tactics alike.
TRTEXEC_AVG_TIMING = 8


def dla_implies(flag: str, version: TrtVersion) -> bool:
    return DLA_IMPLIES[flag].covers(version)


# The TensorRT Python names this project's code reads that some supported versions lack, with the
# feature (a key of API) whose span gates the code path that reads them. tests/trt/test_trt_api_usage.py
# walks msla_deploy's source for every `trt.X.Y` it reads and checks it against the API surfaces of
# each version (tests/data/tensorrt_api) where its gate (or, ungated, every supported version) lets the code run.
GATED_NAMES: Dict[str, str] = {
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": "explicit_batch_flag",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": "strongly_typed_flag",
    "BuilderFlag.FP16": "weak_typing",
    "BuilderFlag.INT8": "weak_typing",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS": "weak_typing",
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS": "weak_typing",
    "ILayer.precision": "weak_typing",
    "ILayer.set_output_type": "weak_typing",
    "BuilderFlag.VERSION_COMPATIBLE": "version_compatible",
    "Runtime.engine_host_code_allowed": "engine_host_code_allowed",
    "HardwareCompatibilityLevel.AMPERE_PLUS": "hardware_compat_ampere_plus",
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY": "hardware_compat_same_cc",
    "IBuilderConfig.builder_optimization_level": "builder_optimization_level",
    "IBuilderConfig.hardware_compatibility_level": "hardware_compat_ampere_plus",
}

# Weak typing still works on 10.12-10.x but is deprecated: 'auto' switches to strong typing here.
AUTO_STRONG_SINCE: Version = (10, 12)

# DLA (Orin). docs/facts/tensorrt.md#dla and NVIDIA's DLA pages: 10.7 was the last 10.x with DLA; 11.0-11.3
# have none; 11.4.0 only on Windows on ARM; 11.4.1 on Jetson AGX Orin with JetPack >= 7.2.2,
# strongly typed networks only.
DLA: Tuple[Span, ...] = (
    Span((8, 5), (10, 8), f"{SRC_FACTS_DLA}; {SRC_DLA_DOCS}", "weak (FP16 flag) or strong typing"),
    Span(
        (11, 4),
        None,
        f"{SRC_FACTS_DLA}; {SRC_DLA_DOCS}",
        "11.4.1+ on Jetson AGX Orin with JetPack >= 7.2.2, strongly typed only",
    ),
)
DLA_STRONGLY_TYPED_ONLY_SINCE: Version = (11, 4)


def has(feature: str, version: TrtVersion) -> bool:
    return API[feature].covers(version)


def dla_available(version: TrtVersion) -> bool:
    return any(span.covers(version) for span in DLA)


# --- ONNX parser --------------------------------------------------------------------------------

# Highest opset each parser is documented to read (docs/facts/tensorrt.md#onnx-parser). 10.9-10.12 are not listed
# there: they are treated as 20, the last known value below them, and only warned about.
PARSER_MAX_OPSET: Tuple[Tuple[Version, int], ...] = (
    ((8, 5), 17),
    ((10, 0), 20),
    ((10, 13), 24),
)


def parser_max_opset(version: TrtVersion) -> int:
    best = PARSER_MAX_OPSET[0][1]
    for since, opset in PARSER_MAX_OPSET:
        if version.key >= since:
            best = opset
    return best


# --- trtexec --------------------------------------------------------------------------------

# Every flag this tool may print, with the versions whose trtexec accepts it (read off
# sampleOptions.cpp at each release branch 8.5 ... 11.1).
TRTEXEC_FLAGS: Dict[str, Span] = {
    "--onnx": Span((8, 5), None, SRC_TRTEXEC),
    "--saveEngine": Span((8, 5), None, SRC_TRTEXEC),
    # 8.5-9.3 print "--workspace flag has been deprecated by --memPoolSize flag"; 10.0 removed it.
    "--workspace": Span((8, 5), (10, 0), SRC_TRTEXEC, "deprecated by --memPoolSize already in 8.5"),
    # A plain number is MiB in every version: 8.x reads it as MiB; 10.0 parses it as a count of the
    # default unit and then applies MiB once; 10.1+ appends the default 'M'. A suffixed size is read
    # as bytes by 10.0 and then scaled by MiB again (10.0's sampleEngines.cpp roundToBytes), fixed in
    # 10.1 (addDefaultUnitSuffixIfNotSpecified): so only plain MiB is ever printed.
    "--memPoolSize": Span(
        (8, 5), None, f"{SRC_TRTEXEC}; {SRC_FACTS_8}", "print a plain number of MiB: 10.0.x scales suffixed sizes twice"
    ),
    "--fp16": Span((8, 5), (11, 0), f"{SRC_TRTEXEC}; {SRC_FACTS}"),
    "--int8": Span((8, 5), (11, 0), f"{SRC_TRTEXEC}; {SRC_FACTS_8}", "removed with the INT8 builder flag in 11.0"),
    "--best": Span((8, 5), (11, 0), f"{SRC_TRTEXEC}; {SRC_FACTS}"),
    "--precisionConstraints": Span((8, 5), (11, 0), f"{SRC_TRTEXEC}; {SRC_FACTS}"),
    "--layerPrecisions": Span(
        (8, 5), (11, 0), f"{SRC_TRTEXEC}; {SRC_FACTS}", "8.x: '*' only as a whole name; 10.x: one '*' per name"
    ),
    "--layerOutputTypes": Span((8, 5), (11, 0), SRC_TRTEXEC, "several outputs: types joined with '+'"),
    "--noTF32": Span((8, 5), None, SRC_TRTEXEC),
    "--minShapes": Span(
        (8, 5), None, SRC_TRTEXEC, "name:NxCxHxW,...; with --optShapes and --maxShapes, the optimisation profile"
    ),
    "--optShapes": Span((8, 5), None, SRC_TRTEXEC),
    "--maxShapes": Span((8, 5), None, SRC_TRTEXEC),
    # 9.0 adds it; 11.0 keeps it as
    # '[Deprecated] Strongly typed network is now enabled by default. This flag is a no-op.'
    "--stronglyTyped": Span((9, 0), None, SRC_TRTEXEC, "a deprecated no-op from 11.0"),
    "--timingCacheFile": Span((8, 5), None, SRC_TRTEXEC),
    "--builderOptimizationLevel": Span((8, 6), None, SRC_TRTEXEC, "0-5, default 3"),
    "--hardwareCompatibilityLevel": Span(
        (8, 6), None, SRC_TRTEXEC, "none|ampere+ from 8.6; sameComputeCapability from 10.9"
    ),
    "--versionCompatible": Span((8, 6), None, SRC_TRTEXEC, "alias --vc"),
    "--layerDeviceTypes": Span(
        (8, 6), None, SRC_TRTEXEC, "layerName:GPU|DLA, applied with IBuilderConfig::setDeviceType"
    ),
    "--useDLACore": Span((8, 5), None, SRC_TRTEXEC, "the flag parses everywhere; DLA itself is absent on 10.8-11.3"),
    "--allowGPUFallback": Span((8, 5), None, SRC_TRTEXEC),
    "--profilingVerbosity": Span((8, 5), None, SRC_TRTEXEC, "layer_names_only|detailed|none"),
    "--exportLayerInfo": Span((8, 5), None, SRC_TRTEXEC),
    # 8.5 calls it --buildOnly; 8.6 renames it --skipInference and keeps --buildOnly as a deprecated
    # alias through 9.3; release/10.0's sampleOptions.cpp has no --buildOnly (docs/facts/tensorrt.md#trtexec-flags).
    "--buildOnly": Span(
        (8, 5),
        (10, 0),
        f"{SRC_TRTEXEC}; {SRC_FACTS_8}",
        "deprecated alias of --skipInference in 8.6-9.x, gone from 10.0",
    ),
    "--skipInference": Span((8, 6), None, SRC_TRTEXEC),
}

HARDWARE_COMPAT_TRTEXEC = {"ampere+": "ampere+", "same-cc": "sameComputeCapability"}
HARDWARE_COMPAT_API = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
HARDWARE_COMPAT_FEATURE = {"ampere+": "hardware_compat_ampere_plus", "same-cc": "hardware_compat_same_cc"}


def trtexec_has(flag: str, version: TrtVersion) -> bool:
    return TRTEXEC_FLAGS[flag].covers(version)


# --- JetPack ------------------------------------------------------------------------------------

# JetPack -> (TensorRT, CUDA), docs/facts/tensorrt.md#jetpack-releases.
JETPACK: Dict[str, Tuple[str, str]] = {
    "5.1": ("8.5", "11.4"),
    "6.0": ("8.6", "12.2"),
    "6.1": ("10.3", "12.6"),
    "6.2": ("10.3", "12.6"),
    "7.0": ("10.13", "13.0"),
    "7.1": ("10.13", "13.0"),
    "7.2": ("10.16", "13.2"),
}


def jetpack_for(version: TrtVersion) -> Optional[str]:
    """'JetPack 6.1 / 6.2' for 10.3, None for versions no JetPack ships."""
    names = [jp for jp, (trt, _) in JETPACK.items() if trt == version.short]
    return "JetPack " + " / ".join(names) if names else None
