"""TensorRT: build plan, engine build, trtexec command line, DLA preflight (torch-free).

TensorRT itself is imported in one place only (runtime.import_tensorrt), when a real build
starts; planning, the trtexec command and the DLA forecast work without it.

    from msla_deploy.trt import BuildOptions, load_model_input, make_plan, parse_version, trtexec_argv
    model = load_model_input("artifacts/efficientvit-seg-b1-cityscapes-1024x2048-fp16")
    plan = make_plan(BuildOptions(source=model.source, precision="fp16"), model, parse_version("8.6"))
    print(trtexec_command(trtexec_argv(plan)))
"""

from .build import BuildResult, PlannedBuild, build_for_runtime, plan_for_runtime, plan_for_trtexec, run_build
from .inputs import ModelInput, load_model_input
from .options import BuildOptions, parse_size
from .plan import BuildPlan, make_plan
from .trtexec import trtexec_argv, trtexec_command
from .versions import TrtVersion, parse_version

__all__ = [
    "BuildOptions", "BuildPlan", "BuildResult", "ModelInput", "PlannedBuild", "TrtVersion",
    "build_for_runtime", "load_model_input", "make_plan", "parse_size", "parse_version", "plan_for_runtime", "plan_for_trtexec", "run_build",
    "trtexec_argv", "trtexec_command",
]
