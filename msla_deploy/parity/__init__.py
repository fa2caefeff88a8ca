"""The verdict: is a deployed artifact still computing what the PyTorch reference computed?

torch-free by design (a Jetson validates against a reference bundle with numpy and a runtime);
what runs the artifact is msla_deploy.runtime, what is on disk is msla_deploy.artifact.

    metrics, budgets      numbers and verdicts (numpy; export uses them too)
    config                the budget in force: flags > pyproject.toml > precision default
    records               parity.json and validate's report.json as typed records
    polygraphy_compare    Polygraphy's comparators on the artifact's and the reference's outputs
    localize              probe tensors vs PyTorch hooks (torch_reference: the torch side, lazy)
    pictures              disagreement and error pictures (drawn with msla_deploy.drawing)
    reports               report.json, report.md, junit.xml
    validate              the pipeline; command: the CLI commands (validate, reference)
    images, reference_images   real pictures into a reference bundle
"""

from ..lazy import lazy_exports

__all__ = ["Budget", "default_budget", "OutputParity", "compare_outputs"]
# loaded on first use (numpy): `msla-deploy --help` imports parity.command
__getattr__, __dir__ = lazy_exports(
    __name__,
    {"Budget": "budgets", "default_budget": "budgets", "OutputParity": "metrics", "compare_outputs": "metrics"},
)
