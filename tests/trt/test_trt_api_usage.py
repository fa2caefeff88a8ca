"""The TensorRT names msla_deploy reads, checked against the real API of every version that runs them,
and the generated fake (tests/trt_fake.py) checked against the fixtures it is generated from.

The walk reads msla_deploy's source (ast) for every attribute read from the `trt` module
(`trt.BuilderFlag.FP16`, `trt.Runtime`, `getattr(trt.X, "NAME")`) and, inside functions that take (or
assign) `trt`, from the TensorRT objects they name (`config.set_flag`, `layer.precision`, `runtime.DLA_core`).
A name listed in versions.GATED_NAMES must exist in every fixture version its feature's span
covers; any other name in every fixture version. A failure names the attribute, file:line and
the version that lacks it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import List, Optional

import pytest

from msla_deploy.trt import versions as V
from tests.fixtures import REPO
from tests.trt_fake import FAKE_VERSIONS, load_api, make_fake_tensorrt, surface_has, uncovered, version_key

PACKAGE = REPO / "msla_deploy"

# In a function that takes `trt`, these local names hold TensorRT objects of these classes.
OBJECT_NAMES = {
    "builder": "Builder",
    "config": "IBuilderConfig",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "layer": "ILayer",
    "inspector": "EngineInspector",
    "cache": "ITimingCache",
}


@dataclass(frozen=True)
class Use:
    name: str  # "BuilderFlag.FP16", "IBuilderConfig.set_flag"
    where: str  # "msla_deploy/trt/engine.py:123"


def _chain(node: ast.AST) -> Optional[List[str]]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def _takes_trt(function: ast.AST) -> bool:
    """The function has `trt` as a parameter or assigns it (trt = import_tensorrt())."""
    args = function.args
    if any(a.arg == "trt" for a in args.args + args.kwonlyargs + getattr(args, "posonlyargs", [])):
        return True
    return any(
        isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "trt" for t in n.targets)
        for n in ast.walk(function)
    )


class _Walker(ast.NodeVisitor):
    def __init__(self, where: str):
        self.where, self.uses, self.in_trt_function = where, [], [False]

    def visit_FunctionDef(self, node):
        self.in_trt_function.append(_takes_trt(node))
        self.generic_visit(node)
        self.in_trt_function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _add(self, name: str, node: ast.AST) -> None:
        self.uses.append(Use(name, f"{self.where}:{node.lineno}"))

    def visit_Attribute(self, node):
        chain = _chain(node)
        if chain and chain[0] == "trt":
            self._add(".".join(chain[1:3]), node)  # class and member: deeper parts are the member's own
            return  # the inner Attribute nodes are prefixes of this chain
        if chain and len(chain) == 2 and self.in_trt_function[-1] and chain[0] in OBJECT_NAMES:
            self._add(f"{OBJECT_NAMES[chain[0]]}.{chain[1]}", node)
        self.generic_visit(node)

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2:
            target, name = _chain(node.args[0]), node.args[1]
            if (
                target
                and target[0] == "trt"
                and len(target) == 2
                and isinstance(name, ast.Constant)
                and isinstance(name.value, str)
            ):
                self._add(f"{target[1]}.{name.value}", node)
        self.generic_visit(node)


def project_uses() -> List[Use]:
    uses: List[Use] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent).as_posix()
        walker = _Walker(where)
        walker.visit(ast.parse(path.read_text(), filename=str(path)))
        uses += walker.uses
    return uses


def runs_on(name: str) -> List[str]:
    """The fixture versions whose code path reads `name` (its versions.GATED_NAMES gate, or all)."""
    gate = V.GATED_NAMES.get(name)
    if gate is None:
        return list(FAKE_VERSIONS)
    return [v for v in FAKE_VERSIONS if V.has(gate, V.parse_version(v))]


def resolves(version: str, name: str) -> bool:
    head, _, member = name.partition(".")
    if not member:
        return surface_has(version, head)
    if surface_has(version, name):
        return True
    # a nested type: trt.ILogger.Severity -> "ILogger.Severity" is the class's qualname
    return head + "." + member in load_api(version)["classes"]


def test_the_walk_finds_the_uses_it_must_check():
    names = {u.name for u in project_uses()}
    for expected in (
        "BuilderFlag.FP16",
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "Runtime",
        "Runtime.engine_host_code_allowed",
        "Runtime.DLA_core",
        "IBuilderConfig.set_memory_pool_limit",
        "ILayer.precision",
        "TensorIOMode.INPUT",
    ):
        assert expected in names, f"the walk missed {expected}"


def test_every_tensorrt_name_msla_deploy_reads_exists_where_its_code_runs():
    problems = []
    for use in project_uses():
        if use.name.startswith("fake"):
            problems.append(f"{use.where} reads trt.{use.name}, which only the test fake has")
            continue
        for version in runs_on(use.name):
            if not resolves(version, use.name):
                gate = V.GATED_NAMES.get(use.name)
                problems.append(
                    f"{use.name} at {use.where}: TensorRT {version} lacks it "
                    f"({'gated by ' + gate if gate else 'read on every version'})"
                )
    assert not problems, "\n".join(problems)


def test_dynamic_names_exist_where_their_option_is_allowed():
    """getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPAT_API[...]) is checked through its table."""
    for option, member in V.HARDWARE_COMPAT_API.items():
        feature = V.HARDWARE_COMPAT_FEATURE[option]
        for version in FAKE_VERSIONS:
            present = surface_has(version, f"HardwareCompatibilityLevel.{member}")
            if V.has(feature, V.parse_version(version)):
                assert present, f"HardwareCompatibilityLevel.{member} is allowed on {version} but absent there"


def test_every_gate_names_a_feature():
    assert set(V.GATED_NAMES.values()) <= set(V.API)


@pytest.mark.parametrize(
    "name, feature",
    [
        ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", "strongly_typed_flag"),  # absent in 8.6, present from 10.0
        ("BuilderFlag.FP16", "weak_typing"),  # present up to 10.13, absent in 11.4
        ("ILayer.precision", "weak_typing"),
        # absent in 10.7, present in 10.13
        ("HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "hardware_compat_same_cc"),
        ("Runtime.engine_host_code_allowed", "engine_host_code_allowed"),
    ],
)
def test_versions_py_spans_agree_with_the_fixtures_at_their_edges(name, feature):
    """Where the fixtures can tell (they start at 8.6.1), a feature's span and the name's presence coincide."""
    span = V.API[feature]
    for version in FAKE_VERSIONS:
        key = version_key(version)
        if feature == "strongly_typed_flag" and key >= (11, 0):
            continue  # 11.x keeps the flag but ignores it: the span ends where we stop using it
        if key >= span.since or span.since <= (8, 6):
            assert surface_has(version, name) is span.covers(V.parse_version(version)), (name, version)


# --- the fake against the fixtures it is generated from ----------------------------------------------------


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_fake_enums_have_the_real_values(version):
    trt = make_fake_tensorrt(version)
    for qualname, spec in load_api(version)["classes"].items():
        if spec["kind"] != "enum":
            continue
        cls = trt.fake.types[qualname]
        for member, value in spec["members"].items():
            assert int(getattr(cls, member)) == value, (qualname, member)
            assert cls(value).value == value
    assert trt.BuilderFlag.TF32 != int(trt.BuilderFlag.TF32)  # members are not ints (pybind11 enum classes)


@pytest.mark.parametrize(
    "version, present, absent",
    [
        (
            "8.6.1",
            ["BuilderFlag.FP16", "Builder.build_engine", "NetworkDefinitionCreationFlag.EXPLICIT_PRECISION"],
            ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"],
        ),
        (
            "10.7.0",
            ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "ILayer.precision"],
            ["Builder.build_engine", "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "ICudaEngine.num_bindings"],
        ),
        (
            "11.4.0.106",
            ["HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "Runtime.engine_host_code_allowed"],
            [
                "BuilderFlag.FP16",
                "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
                "ILayer.precision",
                "ILayer.set_output_type",
                "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
                "IInt8EntropyCalibrator2",
            ],
        ),
    ],
)
def test_fake_lacks_exactly_what_the_version_lacks(version, present, absent):
    trt = make_fake_tensorrt(version)
    for name in present:
        head, _, member = name.partition(".")
        assert getattr(getattr(trt, head), member) is not None
    for name in absent:
        head, _, member = name.partition(".")
        with pytest.raises(AttributeError):
            getattr(getattr(trt, head), member) if member else getattr(trt, head)


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_fake_module_has_the_real_names_and_one_extra(version):
    trt = make_fake_tensorrt(version)
    api = load_api(version)
    real = {n for n in api["classes"] if "." not in n} | set(api["functions"]) | set(api["attributes"])
    public = {n for n in vars(trt) if not (n.startswith("__") and n.endswith("__"))}
    assert public - real == {"fake"} and real <= public | {"__version__"}
    for qualname, spec in api["classes"].items():
        for base in spec.get("bases", []):
            assert issubclass(trt.fake.types[qualname], trt.fake.types[base])


@pytest.mark.parametrize("version", ["8.6.1", "11.4.0.106"])
def test_fake_signatures_properties_and_constructors_are_the_real_ones(version):
    trt = make_fake_tensorrt(version)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    with pytest.raises(AttributeError):
        builder.num_DLA_cores = 2  # read-only property
    with pytest.raises(AttributeError):
        builder.not_an_attribute = 1  # no __dict__ on pybind11 objects
    config = builder.create_builder_config()
    config.DLA_core = 1  # writable
    assert config.DLA_core == 1 and trt.fake.values_set("IBuilderConfig.DLA_core") == [1]
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_flag(int(trt.BuilderFlag.TF32))  # an int is not a BuilderFlag
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)  # one argument missing
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size=1)  # the parameter is pool_size
    config.set_memory_pool_limit(pool=trt.MemoryPoolType.WORKSPACE, pool_size=1 << 20)
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 1 << 20
    with pytest.raises(TypeError, match="No constructor defined"):
        trt.ICudaEngine()
    with pytest.raises(TypeError):
        trt.Runtime()  # needs a logger
    with pytest.raises(NotImplementedError, match="no behaviour"):
        builder.get_plugin_registry()  # real, but not modelled: says so instead of returning None


def test_fake_behaviour_stays_inside_the_real_api():
    assert uncovered(()) == []


def _tiny_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_fake_parser_needs_an_explicit_batch_network_before_10(version, tmp_path):
    trt = make_fake_tensorrt(version)
    logger = trt.Logger()
    builder = trt.Builder(logger)
    parser = trt.OnnxParser(builder.create_network(0), logger)
    assert parser.parse_from_file(str(_tiny_onnx(tmp_path))) is (version_key(version) >= (10, 0))
    if version_key(version) < (10, 0):
        assert "explicit batch" in str(parser.get_error(0))


@pytest.mark.parametrize("version", ["10.0.1", "10.13.3.9"])
def test_fake_refuses_the_fp16_flag_on_a_strongly_typed_network(version, tmp_path):
    """docs/facts/tensorrt.md#weak-and-strong-typing: STRONGLY_TYPED together with the FP16 flag is an API usage
    error on 10.x."""
    trt = make_fake_tensorrt(version)
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(_tiny_onnx(tmp_path)))
    config = builder.create_builder_config()
    assert builder.build_serialized_network(network, config) is not None
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    assert any("API Usage Error" in message for _, message in trt.fake.log)
