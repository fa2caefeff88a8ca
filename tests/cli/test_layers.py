"""The import graph keeps its floors: artifact at the bottom, runtime below the stages, no cycle.

Read from the source with ast (every import, lazy ones inside functions included), so a new
command that reaches down past the layers, or a layer that reaches up into a stage, fails here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, Set

from tests.fixtures import REPO

PACKAGE = REPO / "msla_deploy"

# floor of each top-level part of msla_deploy; an import may go to the same floor or below
FLOORS = {
    "errors": 0,
    "choices": 0,
    "progress": 0,
    "limits": 0,
    "torch_side": 0,
    "__init__": 0,
    "__main__": 9,
    "console": 1,
    "lazy": 0,  # PEP 562 helper of the package __init__s
    "cli_options": 1,  # the commands' shared options: typer, choices, artifact names
    "tasks": 0,  # what each task's outputs are: data only (every stage asks it)
    "classes": 0,  # dataset label sets: data only (evaluate, predict, reports)
    "atomic": 0,
    "rle": 0,  # COCO RLE of masks (pycocotools): predict, segment-everything, evaluate
    "everything_params": 0,  # segment-everything's parameters: read by the CLI at start-up, no numpy
    "records": 0,  # atomic writes and typed JSON documents: every floor writes files
    "reporting": 1,  # report.json/md/junit.xml of the stages that judge
    "iou": 1,  # the one confusion matrix / IoU (parity and evaluate both score labels with it)
    "drawing": 0,  # every picture (Pillow): used by the stages that report
    "artifact": 1,
    "nn": 2,
    "zoo": 2,
    "convert": 2,
    "user_model": 2,
    "timm_models": 2,  # --model timm:NAME (timm imported only when one is built)
    "loading": 2,
    "inspect": 2,
    "trt": 2,
    "runtime": 3,
    "parity": 4,
    "bench": 4,
    "export": 4,
    "evaluate": 4,
    "predict": 4,
    "serve": 4,
    "doctor": 4,
    "cli": 9,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> Set[str]:
    """msla_deploy modules imported by the file (absolute names)."""
    here = list(path.relative_to(PACKAGE.parent).parts[:-1])  # the package the file is in
    found = set()
    tree = ast.parse(path.read_text())
    if path == PACKAGE / "__init__.py":
        # the package's lazy public names (PEP 562 __getattr__: msla_deploy.Segmenter) load on
        # first use, from the top: they are the API's front door, not a dependency of floor 0
        tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found.update(n for n in names if n.startswith("msla_deploy"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("msla_deploy"))
    return found


def _part_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
        for target in _imports(path):
            part = _part(target)
            if part != source:
                graph[source].add(part)
    return graph


def test_every_part_has_a_floor():
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    }
    assert parts <= set(FLOORS), f"give these a floor in FLOORS: {sorted(parts - set(FLOORS))}"


def test_nothing_is_imported_from_a_higher_floor():
    upward = sorted(
        f"{source} (floor {FLOORS[source]}) imports {target} (floor {FLOORS[target]})"
        for source, targets in _part_graph().items()
        for target in targets
        if target in FLOORS and FLOORS[target] > FLOORS[source]
    )
    assert not upward, "\n".join(upward)


def test_artifact_imports_no_stage_and_runtime_no_stage():
    graph = _part_graph()
    assert graph["artifact"] <= {"errors", "choices", "__init__", "atomic", "records", "limits", "tasks"}, graph[
        "artifact"
    ]
    assert not graph["runtime"] & {"parity", "bench", "export", "evaluate", "predict", "serve", "doctor", "cli"}, graph[
        "runtime"
    ]


def test_no_cycle_between_parts():
    graph = _part_graph()
    state: Dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [node, nxt]))
            if not state.get(nxt):
                visit(nxt, path + [node])
        state[node] = 2

    for node in list(graph):
        if not state.get(node):
            visit(node, [])


def test_parity_verdict_modules_do_not_import_each_other_in_a_cycle():
    metrics = _imports(PACKAGE / "parity" / "metrics.py")
    budgets = _imports(PACKAGE / "parity" / "budgets.py")
    assert not ("msla_deploy.parity.metrics" in budgets and "msla_deploy.parity.budgets" in metrics)
