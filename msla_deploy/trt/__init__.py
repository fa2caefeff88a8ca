"""TensorRT: build plan, engine build, trtexec command line, DLA preflight (torch-free).

TensorRT itself is imported in one place only (runtime.import_tensorrt), when a real build
starts; planning, the trtexec command and the DLA forecast work without it.

    from msla_deploy.trt import BuildOptions, load_model_input, make_plan, parse_version, trtexec_argv
    model = load_model_input("artifacts/efficientvit-seg-b1-cityscapes-1024x2048-fp16")
    plan = make_plan(BuildOptions(source=model.source, precision="fp16"), model, parse_version("8.6"))
    print(trtexec_command(trtexec_argv(plan)))
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "build": ("BuildResult", "PlannedBuild", "build_for_runtime", "plan_for_runtime", "plan_for_trtexec", "run_build"),
    "inputs": ("ModelInput", "load_model_input"),
    "options": ("BuildOptions", "parse_size"),
    "plan": ("BuildPlan", "make_plan"),
    "trtexec": ("trtexec_argv", "trtexec_command"),
    "versions": ("TrtVersion", "parse_version"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
# loaded on first use (onnx, numpy): `msla-deploy --help` imports trt.command
__getattr__, __dir__ = lazy_exports(__name__, {name: module for module, names in _EXPORTS.items() for name in names})
