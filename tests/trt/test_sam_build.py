"""`build` of a SAM artifact: an engine per graph (encoder, decoder), the decoder with the optimisation
profile of its manifest record (prompts and points), both recorded in the manifest; trtexec lines per
TensorRT version 8.5 ... 11.4 for both graphs. Against the fake `tensorrt` of the real API of each
version in tests/trt_fake.py (which refuses a dynamic network without a matching profile).

The artifacts (tests/sam_artifacts.py): "fp16" is a tiny hand-made encoder (mixed-precision
encoder.onnx, encoder_fp32.onnx with its LayerNorm pinned) with l0's real dynamic decoder; "fp32"
is l0's real fp32 encoder with the same decoder.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msla_deploy.artifact.builds import BuildRecord
from msla_deploy.artifact.graphs import DECODER, ENCODER
from msla_deploy.artifact.manifest import read_manifest, write_manifest
from msla_deploy.artifact.names import engine_name
from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.trt import versions as V
from msla_deploy.trt.build import plan_for_runtime, plan_graphs_for_trtexec, run_graph_builds
from msla_deploy.trt.inputs import load_model_input
from msla_deploy.trt.options import BuildOptions
from tests.fixtures import one_error_line
from tests.sam_artifacts import (
    LAYER_NORM_NODES,
    decoder_shapes,
    real_graphs,
    tiny_encoder,
    write_sam_artifact,
)
from tests.trt_fake import FAKE_VERSIONS, read_fake_engine, version_key

VERSIONS = ("8.5", "8.6", "10.3", "10.13", "11.4")
runner = CliRunner()


@pytest.fixture(scope="module")
def fp16_dir(tmp_path_factory):
    _, _, decoder = real_graphs()
    return write_sam_artifact(
        tmp_path_factory.mktemp("sam_build") / "sam-fp16",
        tiny_encoder(mixed=True),
        decoder,
        precision="fp16",
        fp32_encoder=tiny_encoder(mixed=False),
        fp32_nodes=LAYER_NORM_NODES,
    )


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    encoder, nodes, decoder = real_graphs()
    return write_sam_artifact(
        tmp_path_factory.mktemp("sam_build") / "sam-fp32", encoder, decoder, precision="fp32", fp32_nodes=nodes
    )


def plans(directory: Path, version: str, **options):
    found = plan_graphs_for_trtexec(BuildOptions(source=directory, trt_version=version, **options), lambda: None)
    return {p.model.graph.role: p for p in found}


def value(argv, flag):
    found = [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]
    assert len(found) == 1, (flag, argv)
    return found[0]


def shapes_flag(point: str) -> str:
    return ",".join(f"{name}:" + "x".join(map(str, shape)) for name, shape in decoder_shapes(point).items())


# --- plans and trtexec lines per version -----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_trtexec_lines_per_version(fp16_dir, version):
    planned = plans(fp16_dir, version)
    assert list(planned) == [ENCODER, DECODER]
    encoder, decoder = planned[ENCODER].argv, planned[DECODER].argv
    key = V.parse_version(version)
    # the encoder: weakly typed from encoder_fp32.onnx with its pins before 10.12, strongly typed after
    if key.before(V.AUTO_STRONG_SINCE):
        assert encoder[1] == "--onnx=encoder_fp32.onnx" and "--fp16" in encoder
        pins = ",".join(f"{n}:fp32" for n in LAYER_NORM_NODES)
        assert value(encoder, "--layerPrecisions") == pins and "--precisionConstraints=obey" in encoder
    else:
        assert encoder[1] == "--onnx=encoder.onnx" and "--fp16" not in encoder
        assert ("--stronglyTyped" in encoder) == key.before((11, 0))
        assert not [a for a in encoder if a.startswith(("--layerPrecisions", "--precisionConstraints"))]
    assert value(encoder, "--saveEngine") == f"encoder_fp16_trt{version}.engine"
    assert not [a for a in encoder if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))]  # static
    # the decoder: fp32 from decoder.onnx, the manifest's profile; image_embeddings static (not listed)
    assert decoder[1] == "--onnx=decoder.onnx" and value(decoder, "--saveEngine") == f"decoder_fp32_trt{version}.engine"
    assert "--fp16" not in decoder and "--layerPrecisions" not in " ".join(decoder)
    for flag, point in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        assert value(decoder, flag) == shapes_flag(point)
    assert value(decoder, "--minShapes").startswith("point_coords:1x1x2,point_labels:1x1,mask_input:1x1x256x256")
    assert value(decoder, "--maxShapes").endswith("has_mask_input:64")
    for argv in (encoder, decoder):
        # every flag exists in this version's trtexec; TensorRT 11 lost the weak-typing ones
        assert all(V.trtexec_has(a.split("=", 1)[0], key) for a in argv[1:])
        if key.at_least((11, 0)):
            assert not {"--fp16", "--int8", "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"} & {
                a.split("=", 1)[0] for a in argv
            }
        assert value(argv, "--timingCacheFile") == f"timing_trt{version}.cache"


def test_an_fp32_artifact_and_precision_fp16(fp32_dir):
    encoder, nodes, _ = real_graphs()
    planned = plans(fp32_dir, "10.3")
    assert planned[ENCODER].plan.precision == "fp32" and "--fp16" not in planned[ENCODER].argv
    # --precision fp16 applies to the encoder (its graph with the FP16 flag and the recorded pins)
    # and leaves the fp32 decoder as exported
    planned = plans(fp32_dir, "10.3", precision="fp16")
    argv = planned[ENCODER].argv
    assert argv[1] == "--onnx=encoder.onnx" and "--fp16" in argv
    assert value(argv, "--layerPrecisions") == ",".join(f"{n}:fp32" for n in nodes)
    assert planned[DECODER].plan.precision == "fp32" and "--fp16" not in planned[DECODER].argv
    with pytest.raises(BadInput, match="mixed-precision fp16 ONNX"):
        plans(fp32_dir, "11.4", precision="fp16")  # no weak typing on 11: an fp32 graph cannot build fp16


def test_plan_for_runtime_per_graph(fp16_dir):
    plan = plan_for_runtime(fp16_dir, "10.13", graph=DECODER)
    assert [p.name for p in plan.profiles] == list(decoder_shapes("min"))
    assert {p.name: p.opt for p in plan.profiles} == decoder_shapes("opt")
    assert plan.engine.name == engine_name("decoder", "fp32", "10.13")
    assert plan_for_runtime(fp16_dir, "8.6", graph=ENCODER).onnx.name == "encoder_fp32.onnx"


def test_single_graph_readers_refuse_a_sam_artifact_in_one_line(fp16_dir):
    with pytest.raises(BadInput, match="2 graphs \\(encoder, decoder\\)"):
        load_model_input(fp16_dir)
    with pytest.raises(BadInput, match="no decoder graph|only a multi-graph artifact"):
        load_model_input(fp16_dir / "encoder.onnx", DECODER)


def test_manifest_and_onnx_must_agree_on_the_profile(fp16_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(fp16_dir, broken)
    manifest = read_manifest(broken)
    decoder = manifest.graph(DECODER)
    decoder.profile.pop("points")
    write_manifest(broken, manifest)
    with pytest.raises(BadInput, match="disagree on point_coords"):
        plans(broken, "10.3")


# --- the command ---------------------------------------------------------------------------------------


def build(*args):
    return runner.invoke(app, ["build", *map(str, args)])


def test_print_trtexec_prints_a_line_per_graph(fp16_dir):
    result = build(fp16_dir, "--print-trtexec", "--trt-version", "10.3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    encoder, decoder = (shlex.split(line) for line in lines)
    assert encoder[1] == "--onnx=encoder_fp32.onnx" and decoder[1] == "--onnx=decoder.onnx"
    assert "encoder: fp16, weakly typed" in result.stderr and "profile prompts 1..64 (tuned for 16)" in result.stderr
    assert str(fp16_dir) in result.stderr and not list(fp16_dir.glob("*.engine"))
    data = json.loads(build(fp16_dir, "--print-trtexec", "--trt-version", "11.4", "--json").stdout)
    assert [g["graph"] for g in data["graphs"]] == [ENCODER, DECODER]
    assert data["graphs"][0]["profiles"] == [] and len(data["graphs"][1]["profiles"]) == 4
    assert shlex.split(data["graphs"][1]["command"]) == data["graphs"][1]["argv"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--out", "x.engine"], "--out names one engine"),
        (["--opt-batch", "4"], "--opt-batch"),
        (["--dla-core", "0", "--precision", "fp16"], "DLA needs static shapes"),
        (["--precision", "fp16", "--typing", "weak"], "removed in TensorRT 11.0"),
    ],
)
def test_bad_options_are_one_line(fp16_dir, args, needle):
    version = "11.4" if "weak" in args else "10.3"
    before = sorted(p.name for p in fp16_dir.iterdir())
    result = build(fp16_dir, *args, "--print-trtexec", "--trt-version", version)
    assert result.exit_code == 2, result.output
    assert needle in one_error_line(result)
    assert sorted(p.name for p in fp16_dir.iterdir()) == before


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed here: the exit-3 path cannot be seen")
def test_without_tensorrt_exit_3_and_nothing_written(fp16_dir):
    before = sorted(p.name for p in fp16_dir.iterdir())
    result = build(fp16_dir)
    assert result.exit_code == 3 and "TensorRT" in one_error_line(result)
    assert sorted(p.name for p in fp16_dir.iterdir()) == before


# --- builds on the fake TensorRT of each version -----------------------------------------------------------


@pytest.mark.parametrize("fake_trt", FAKE_VERSIONS, indirect=True)
def test_an_engine_per_graph_with_the_decoders_profile(fake_trt, fp16_dir, tmp_path):
    directory = tmp_path / "sam"
    shutil.copytree(fp16_dir, directory)
    trt = fake_trt
    short = ".".join(trt.__version__.split(".")[:2])
    results = run_graph_builds(BuildOptions(source=directory), trt=trt)
    assert [r.planned.model.graph.role for r in results] == [ENCODER, DECODER]

    # both records in the manifest, each naming its graph, engine and ONNX
    builds = read_manifest(directory).builds
    assert [(b.graph, b.engine_file, b.onnx_file) for b in builds] == [
        (ENCODER, f"encoder_fp16_trt{short}.engine", results[0].plan.onnx.name),
        (DECODER, f"decoder_fp32_trt{short}.engine", "decoder.onnx"),
    ]
    assert all(isinstance(b, BuildRecord) and b.trtexec_equivalent for b in builds)

    encoder = read_fake_engine((directory / builds[0].engine_file).read_bytes())
    decoder = read_fake_engine((directory / builds[1].engine_file).read_bytes())
    weak = version_key(trt.__version__) < V.AUTO_STRONG_SINCE
    assert ("FP16" in encoder["flags"]) == weak and encoder["profiles"] == []
    if weak:  # the LayerNorm pinned to fp32
        pinned = {layer["name"] for layer in encoder["layers"] if layer["precision"] == "FLOAT"}
        assert set(LAYER_NORM_NODES) <= pinned
    # the decoder: one profile, every dynamic input at the manifest's min/opt/max
    assert "FP16" not in decoder["flags"] and len(decoder["profiles"]) == 1
    expected = {
        name: [list(decoder_shapes(point)[name]) for point in ("min", "opt", "max")] for name in decoder_shapes("min")
    }
    assert decoder["profiles"][0] == expected
    dynamic = {t["name"] for t in decoder["io"] if t["mode"] == "INPUT" and -1 in t["shape"]}
    assert dynamic == set(expected)  # image_embeddings static: no profile needed, none given
    profile_calls = trt.fake.calls_to("IOptimizationProfile.set_shape")
    assert sorted(c["input"] for c in profile_calls) == sorted(expected)


@pytest.mark.parametrize("fake_trt", ["10.3.0"], indirect=True)
def test_the_command_builds_and_renders_both(fake_trt, fp16_dir, tmp_path):
    directory = tmp_path / "sam"
    shutil.copytree(fp16_dir, directory)
    result = build(directory, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [r["graph"] for r in shown["records"]] == [ENCODER, DECODER]
    assert shown["records"] == [b.to_dict() for b in read_manifest(directory).builds]
    table = build(directory)
    assert table.exit_code == 0, table.output
    for text in ("encoder_fp16_trt10.3.engine", "decoder_fp32_trt10.3.engine", "loaded and updated", "fp32 layers"):
        assert text in table.stdout, text
    assert len(read_manifest(directory).builds) == 4


# --- the exported artifact (msla-deploy export --model efficientvit-sam-l0, fp32) --------------------------


@pytest.mark.parametrize("version", ["8.5", "10.13", "11.4"])
def test_print_trtexec_of_the_export(sam_artifact, version):
    result = build(sam_artifact, "--print-trtexec", "--trt-version", version)
    assert result.exit_code == 0, result.output
    encoder, decoder = (shlex.split(line) for line in result.stdout.strip().splitlines())
    assert encoder[1:3] == ["--onnx=encoder.onnx", f"--saveEngine=encoder_fp32_trt{version}.engine"]
    profile = read_manifest(sam_artifact).graph(DECODER).profile
    prompts, points = profile["prompts"].max, profile["points"].max
    assert value(decoder, "--maxShapes").startswith(f"point_coords:{prompts}x{points}x2,point_labels:{prompts}x")
    if version == "11.4":
        assert not {"--fp16", "--stronglyTyped"} & set(encoder + decoder)


@pytest.mark.parametrize("fake_trt", ["11.4.0.106"], indirect=True)
def test_the_export_builds_on_the_fake(fake_trt, sam_artifact, tmp_path):
    directory = tmp_path / "sam"
    shutil.copytree(sam_artifact, directory)
    results = run_graph_builds(BuildOptions(source=directory), trt=fake_trt)
    builds = read_manifest(directory).builds
    assert [b.graph for b in builds] == [ENCODER, DECODER] and len(results) == 2
    decoder = read_fake_engine((directory / builds[1].engine_file).read_bytes())
    assert len(decoder["profiles"]) == 1 and "image_embeddings" not in decoder["profiles"][0]
