"""trtexec command lines per TensorRT version, checked against versions.TRTEXEC_FLAGS (read off
trtexec's sampleOptions.cpp per release branch) and against the project's fact page
docs/facts/tensorrt.md (its typing rules, and its flag, JetPack and opset tables agree with versions.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from msla_deploy.errors import BadInput
from msla_deploy.trt import versions as V
from msla_deploy.trt.inputs import load_model_input
from msla_deploy.trt.options import BuildOptions
from msla_deploy.trt.plan import make_plan
from msla_deploy.trt.trtexec import trtexec_argv, trtexec_command
from msla_deploy.trt.versions import parse_version
from tests.fixtures import REPO
from tests.trt.test_build_plan import FP32_NODES, make_export_dir

FACTS = REPO / "docs" / "facts" / "tensorrt.md"
ALL_VERSIONS = ("8.5", "8.6", "9.3", "10.0", "10.3", "10.7", "10.8", "10.12", "10.13", "10.16", "11.0", "11.4")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("trtexec")
    return {kind: make_export_dir(base / kind, kind) for kind in ("fp16", "fp32", "legacy")}


def argv_for(directory: Path, version: str, **options):
    plan = make_plan(BuildOptions(source=directory, **options), load_model_input(directory), parse_version(version))
    return trtexec_argv(plan)


def flags(argv):
    return [a.split("=", 1)[0] for a in argv[1:]]


def value(argv, flag):
    found = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    assert len(found) == 1, (flag, argv)
    return found[0]


LAYERS = ",".join(f"{n}:fp32" for n in FP32_NODES)


def test_8_5_weak_fp16(dirs):
    argv = argv_for(dirs["fp16"], "8.5")
    assert argv[:3] == ["trtexec", "--onnx=model_fp32.onnx", "--saveEngine=model_fp16_trt8.5.engine"]
    assert "--fp16" in argv and "--precisionConstraints=obey" in argv
    assert value(argv, "--layerPrecisions") == LAYERS and value(argv, "--layerOutputTypes") == LAYERS
    assert value(argv, "--memPoolSize") == "workspace:1024"  # 8.x: a plain number of MiB
    assert "--buildOnly" in argv and "--skipInference" not in argv  # 8.5 predates --skipInference
    assert "--stronglyTyped" not in argv and "--workspace" not in flags(argv)
    assert value(argv, "--timingCacheFile") == "timing_trt8.5.cache"
    assert value(argv, "--exportLayerInfo") == "model_fp16_trt8.5.layers.json"
    assert "--profilingVerbosity=detailed" in argv and "--noTF32" in argv


def test_8_6_weak_fp16(dirs):
    argv = argv_for(dirs["fp16"], "8.6")
    assert "--fp16" in argv and "--precisionConstraints=obey" in argv and value(argv, "--layerPrecisions") == LAYERS
    assert value(argv, "--memPoolSize") == "workspace:1024"
    assert "--skipInference" in argv and "--stronglyTyped" not in argv


def test_10_3_weak_fp16(dirs):
    argv = argv_for(dirs["fp16"], "10.3")
    assert argv[1] == "--onnx=model_fp32.onnx"
    assert "--fp16" in argv and "--precisionConstraints=obey" in argv and value(argv, "--layerPrecisions") == LAYERS
    assert value(argv, "--memPoolSize") == "workspace:1024"  # plain MiB: 10.0.x scales "1024M" twice
    assert "--stronglyTyped" not in argv


def test_10_13_strong_fp16(dirs):
    argv = argv_for(dirs["fp16"], "10.13")
    assert argv[1] == "--onnx=model.onnx" and "--stronglyTyped" in argv
    for flag in ("--fp16", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes", "--best"):
        assert flag not in flags(argv)


def test_11_4_strong_fp16(dirs):
    argv = argv_for(dirs["fp16"], "11.4")
    assert argv[1] == "--onnx=model.onnx"
    assert "--stronglyTyped" not in argv  # a deprecated no-op from 11.0
    for flag in ("--fp16", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes", "--best"):
        assert flag not in flags(argv)
    assert value(argv, "--memPoolSize") == "workspace:1024" and "--noTF32" in argv


def test_every_flag_exists_in_its_version(dirs):
    """Over many option combinations, no command names a flag its trtexec lacks (per TRTEXEC_FLAGS)."""
    combos = [
        {},
        {"precision": "fp32"},
        {"typing": "weak"},
        {"typing": "strong"},
        {"opt_level": 2},
        {"hardware_compat": "ampere+"},
        {"hardware_compat": "same-cc"},
        {"version_compatible": True},
        {"dla_core": 0},
        {"dla_core": 1, "gpu_fallback": False},
        {"tf32": True},
        {"workspace": "3G"},
    ]
    built = 0
    for version in ALL_VERSIONS:
        for options in combos:
            try:
                argv = argv_for(dirs["fp16"], version, **options)
            except BadInput:
                continue
            built += 1
            v = parse_version(version)
            for flag in flags(argv):
                assert V.trtexec_has(flag, v), f"{flag} on {version} with {options}"
            assert not ("--stronglyTyped" in argv and "--fp16" in argv)
    assert built > 60


def trtexec_workspace_bytes(spec: str, version: str) -> int:
    """How trtexec turns --memPoolSize=workspace:<spec> into bytes (sampleOptions.cpp / sampleEngines.cpp per branch).

    8.x: std::stod(spec) MiB (a suffix is ignored by stod). 10.0.x: stod(spec) times the suffix's
    multiplier (none: 1), then roundToBytes multiplies by MiB again. 10.1+: a missing suffix becomes
    'M', the bytes are divided by MiB, then multiplied back.
    """
    number = float(re.match(r"[0-9.]+", spec).group(0))
    unit = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    key = tuple(int(x) for x in version.split(".")[:2])
    if key < (10, 0):
        return int(number * (1 << 20))
    suffix = spec[-1].upper() if not spec[-1].isdigit() else None
    if key < (10, 1):
        return int(number * (unit[suffix] if suffix else 1) * (1 << 20))
    return int(number * unit[suffix or "M"])


@pytest.mark.parametrize("workspace", [None, "1536M", "0.5G", "3G", "4096k"])
def test_mem_pool_size_means_the_same_to_every_trtexec(dirs, workspace):
    options = {"workspace": workspace} if workspace else {}
    for version in list(ALL_VERSIONS) + ["10.1"]:
        argv = argv_for(dirs["fp16"], version, **options)
        spec = value(argv, "--memPoolSize").split(":", 1)[1]
        wanted = BuildOptions(source=dirs["fp16"], **options).workspace_bytes
        assert trtexec_workspace_bytes(spec, version) == wanted, (version, spec)
    assert trtexec_workspace_bytes("1024M", "10.0") == 1 << 50  # what a suffix would have asked of 10.0.x


def test_no_command_from_10_names_build_only(dirs):
    for version in ("10.0", "10.3", "10.13", "11.4"):
        assert "--buildOnly" not in argv_for(dirs["fp16"], version) and "--skipInference" in argv_for(
            dirs["fp16"], version
        )


def test_flag_table_matches_trtexec_history():
    """Spot checks of the table against the per-branch reading of sampleOptions.cpp."""
    has = lambda flag, version: V.trtexec_has(flag, parse_version(version))  # noqa: E731
    assert has("--workspace", "9.3") and not has("--workspace", "10.0")
    assert has("--stronglyTyped", "9.0") and not has("--stronglyTyped", "8.6")
    assert has("--builderOptimizationLevel", "8.6") and not has("--builderOptimizationLevel", "8.5")
    assert has("--skipInference", "8.6") and not has("--skipInference", "8.5")
    # docs/facts/tensorrt.md#trtexec-flags: --buildOnly exists up to 8.6 (a deprecated alias through 9.x)
    # and is gone from 10.0
    assert (
        has("--buildOnly", "8.5")
        and has("--buildOnly", "9.3")
        and not has("--buildOnly", "10.0")
        and not has("--buildOnly", "11.4")
    )
    for flag in ("--fp16", "--best", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"):
        assert has(flag, "10.16") and not has(flag, "11.0")
    for flag in (
        "--noTF32",
        "--memPoolSize",
        "--timingCacheFile",
        "--useDLACore",
        "--allowGPUFallback",
        "--saveEngine",
        "--exportLayerInfo",
        "--profilingVerbosity",
        "--versionCompatible",
        "--hardwareCompatibilityLevel",
    ):
        assert has(flag, "11.4")


def facts_section(title: str) -> str:
    """One `## title` section of docs/facts/tensorrt.md (part of the repository: missing is a failure)."""
    text = FACTS.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _facts_section3() -> str:
    return facts_section("Weak and strong typing")


def table_rows(section: str) -> list:
    """The body rows of the markdown table in a section, as lists of stripped cells."""
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # header and |---| rule dropped


def test_facts_page_flag_table_is_versions_py():
    """docs/facts/tensorrt.md#trtexec-flags lists exactly TRTEXEC_FLAGS, with the same spans."""

    def version(cell):
        return None if cell == "-" else tuple(int(p) for p in cell.split("."))

    table = {
        row[0].strip("`"): (version(row[1]), version(row[2])) for row in table_rows(facts_section("trtexec flags"))
    }
    assert table == {flag: (span.since, span.until) for flag, span in V.TRTEXEC_FLAGS.items()}


def test_facts_page_jetpack_and_opset_tables_are_versions_py():
    jetpack = {}
    for release, trt, cuda in table_rows(facts_section("JetPack releases")):
        for number in release.split("(")[0].split("/"):
            jetpack[number.strip()] = (".".join(trt.split(".")[:2]), cuda)
    assert jetpack == V.JETPACK
    documented = {}
    for versions, opset in table_rows(facts_section("ONNX parser")):
        for version in versions.split(","):
            documented[version.split("-")[0].strip().rstrip("+").replace(".x", ".0")] = int(opset)  # "11.x": 11.0
    for version, opset in documented.items():
        assert V.parser_max_opset(parse_version(version)) == opset, version
    assert {(parse_version(v).key, o) for v, o in documented.items() if v in ("8.5", "10.0", "10.13")} == set(
        V.PARSER_MAX_OPSET
    )


def test_against_facts_md_removed_in_11(dirs):
    section = _facts_section3()
    sentence = re.search(r"trtexec 11 has no (.*?)\.", section, re.S).group(1)
    removed = set(re.findall(r"--[A-Za-z0-9]+", sentence))
    assert removed == {"--fp16", "--best", "--layerPrecisions", "--precisionConstraints"}
    for flag in removed:
        assert V.TRTEXEC_FLAGS[flag].until == (11, 0)
    for version in ("11.0", "11.4"):
        for options in ({}, {"precision": "fp32"}, {"dla_core": 0}):
            try:
                argv = argv_for(dirs["fp16"], version, **options)
            except BadInput:
                continue
            assert not removed & set(flags(argv))


def test_against_facts_md_weak_typing_recipe(dirs):
    section = _facts_section3()
    recipe = re.search(r"\(`(--precisionConstraints=obey --layerPrecisions=[^`]*)`\)", section).group(1)
    # docs/facts/tensorrt.md: --precisionConstraints=obey --layerPrecisions=<layer>:fp32,...
    pattern = recipe.replace("<layer>:fp32,...", r"[^,:\s]+:fp32(,[^,:\s]+:fp32)*")
    for version in ("8.5", "8.6", "10.3"):  # JetPack 5/6: weakly typed
        command = trtexec_command(argv_for(dirs["fp16"], version))
        assert re.search(pattern, command), command
    # docs/facts/tensorrt.md: "STRONGLY_TYPED together with the FP16 flag is an API usage error on 10.x"
    assert re.search(r"STRONGLY_TYPED together with the\s+FP16 flag is an API usage error", section)
    for version in ("9.3", "10.3", "10.13", "10.16"):
        for typing in ("strong", "auto", "weak"):
            argv = argv_for(dirs["fp16"], version, typing=typing)
            assert not ("--stronglyTyped" in argv and "--fp16" in argv)


def test_dla_flags(dirs):
    argv = argv_for(dirs["fp16"], "10.3", dla_core=1)
    assert "--useDLACore=1" in argv and "--allowGPUFallback" in argv and "--fp16" in argv
    assert value(argv, "--layerDeviceTypes") == ",".join(f"{n}:GPU" for n in FP32_NODES)
    argv = argv_for(dirs["fp16"], "8.5", dla_core=0)  # 8.5's trtexec has no --layerDeviceTypes
    assert "--layerDeviceTypes" not in flags(argv) and "--allowGPUFallback" in argv
    argv = argv_for(dirs["fp16"], "8.6", dla_core=0, gpu_fallback=False)
    assert "--useDLACore=0" in argv and "--allowGPUFallback" not in argv
    argv = argv_for(dirs["fp16"], "11.4", dla_core=0)
    assert "--useDLACore=0" in argv and "--fp16" not in argv


def test_options_become_flags(dirs):
    argv = argv_for(
        dirs["fp16"],
        "10.13",
        opt_level=5,
        hardware_compat="same-cc",
        version_compatible=True,
        tf32=True,
        workspace="1536M",
    )
    assert "--builderOptimizationLevel=5" in argv and "--hardwareCompatibilityLevel=sameComputeCapability" in argv
    assert "--versionCompatible" in argv and "--noTF32" not in argv
    assert value(argv, "--memPoolSize") == "workspace:1536"
    argv = argv_for(dirs["fp16"], "8.6", hardware_compat="ampere+", workspace="0.5G")
    assert "--hardwareCompatibilityLevel=ampere+" in argv and value(argv, "--memPoolSize") == "workspace:512"
    argv = argv_for(dirs["fp32"], "8.6")
    assert "--fp16" not in argv and "--noTF32" in argv and argv[1] == "--onnx=model.onnx"


def test_paths_relative_to_the_artifact_directory(dirs, tmp_path):
    argv = argv_for(
        dirs["fp16"], "10.3", out=dirs["fp16"] / "engines" / "x.engine", timing_cache=tmp_path / "shared.cache"
    )
    assert value(argv, "--saveEngine") == "engines/x.engine"
    assert value(argv, "--exportLayerInfo") == "engines/x.layers.json"
    assert value(argv, "--timingCacheFile") == str((tmp_path / "shared.cache").resolve())  # outside: absolute


def test_command_is_shell_safe(dirs, tmp_path):
    plan = make_plan(
        BuildOptions(source=dirs["fp16"], out=tmp_path / "a dir" / "m.engine"),
        load_model_input(dirs["fp16"]),
        parse_version("10.3"),
    )
    argv = trtexec_argv(plan)
    assert shlex.split(trtexec_command(argv)) == argv


def test_layer_names_that_trtexec_cannot_express(tmp_path):
    directory = make_export_dir(tmp_path / "odd", "fp16", fp32_nodes=FP32_NODES)
    plan = make_plan(BuildOptions(source=directory), load_model_input(directory), parse_version("8.6"))
    import dataclasses

    odd = dataclasses.replace(plan, layer_precisions=(("a,b", "fp32"),), layer_output_types=())
    with pytest.raises(BadInput, match="cannot be written"):
        trtexec_argv(odd)
