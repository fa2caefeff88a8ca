"""The budget a validation runs under: flags > pyproject.toml > the precision's default.

A team pins its tolerances once, in `[tool.msla-deploy.validate]` of its pyproject.toml (found
from the current directory upward, like other tools' settings), with optional per-precision
tables (`[tool.msla-deploy.validate.fp16]`) that win over the plain table; a flag wins over both.
Every field of the resulting budget records where its value came from, for the report.

Fractions (agreement, mIoU drop, mask IoU) are written as 0.995 or as "99.5%"; a bare number above 1 is
refused rather than guessed at, so 99.5 never silently means 9950%.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import BadInput
from .budgets import DEFAULT_BUDGETS, Budget, default_budget

TABLE = "[tool.msla-deploy.validate]"

# setting name (flag without dashes, pyproject key) -> Budget field
SETTINGS = {
    "atol": "max_abs_floor",
    "rtol": "max_abs_rel",
    "min-cosine": "min_cosine",
    "min-argmax-agreement": "min_argmax_agreement",
    "max-miou-drop": "max_miou_drop",
    "near-tie": "near_tie",
    "min-mask-iou": "min_mask_iou",  # SAM's masks
    "max-score-error": "max_score_error",  # SAM's predicted IoUs
}
_FRACTIONS = {"min-argmax-agreement", "max-miou-drop", "near-tie", "min-mask-iou"}
#: settings only a SAM artifact's budget has (validate refuses them as flags for other tasks)
SAM_SETTINGS = ("min-mask-iou", "max-score-error")


@dataclass
class BudgetChoice:
    """The budget in force and where each of its values came from (validate's report "budget")."""

    precision: str
    values: Budget
    sources: Dict[str, str]  # Budget field -> "default (fp32)" | "pyproject.toml: PATH ..." | "flag --x"
    pyproject: Optional[str] = None  # the file that was read, if any
    notes: List[str] = field(default_factory=list)

    @property
    def budget(self) -> Budget:
        return self.values


def parse_setting(key: str, value: Union[str, float, int], where: str) -> float:
    """One budget number from a flag or a pyproject value; BadInput names `where` it came from."""
    text = str(value).strip()
    percent = text.endswith("%")
    if percent and key not in _FRACTIONS:
        raise BadInput(f"{where} = {text!r}: a percentage makes no sense here", "give a plain number like 1e-4")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise BadInput(f"{where} = {text!r} is not a number", "write e.g. 1e-4, 0.995 or 99.5%") from None
    if isinstance(value, bool) or number != number:
        raise BadInput(f"{where} = {text!r} is not a number", "write e.g. 1e-4, 0.995 or 99.5%")
    if percent:
        number /= 100.0
    if key in _FRACTIONS and not 0.0 <= number <= 1.0:
        if not percent and 1.0 < number <= 100.0:  # most likely a percentage without its sign
            raise BadInput(
                f"{where} = {text!r} is not a fraction in [0, 1]",
                f"write {number / 100:g} or {number:g}% for {number:g} percent",
            )
        # out of range either way: a rescaled number would be a guess at what was meant
        raise BadInput(f"{where} = {text!r} is out of range", "the fraction must be within 0..1, or 0..100%")
    if key == "min-cosine" and not -1.0 <= number <= 1.0:
        raise BadInput(f"{where} = {text!r}: cosine similarity lies in [-1, 1]", "use e.g. 0.999")
    if key in ("atol", "rtol", "max-score-error") and number < 0:
        raise BadInput(f"{where} = {text!r} is negative", "tolerances are >= 0")
    return number


def find_pyproject(start: Path) -> Optional[Path]:
    """The nearest pyproject.toml from `start` upward (the project root, as other tools see it)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _load_toml(path: Path) -> Optional[Dict[str, Any]]:
    try:
        import tomllib  # novm (Python >= 3.11; tomli below on older ones)
    except ImportError:
        try:
            import tomli as tomllib  # the same parser, for older Pythons
        except ImportError:
            return None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}", "fix the TOML syntax, or run from another directory") from None


def pyproject_settings(path: Path, precision: str) -> Tuple[Dict[str, Tuple[Any, str]], List[str]]:
    """{setting: (value, table name)} from the table (precision sub-table last) and notes for the report."""
    data = _load_toml(path)
    if data is None:
        text = path.read_text(errors="replace")
        if "msla-deploy" in text:
            return {}, [
                f"{path} has msla-deploy settings but this Python has neither tomllib nor tomli: not read (pip "
                "install tomli)"
            ]
        return {}, []
    table = data.get("tool", {}).get("msla-deploy", {}).get("validate")
    if table is None:
        return {}, []
    if not isinstance(table, dict):
        raise BadInput(f"{path}: tool.msla-deploy.validate is not a table", "write it as a table (a section header)")
    found: Dict[str, Tuple[Any, str]] = {}
    layers = [(table, TABLE)]
    sub = table.get(precision)
    if isinstance(sub, dict):
        layers.append((sub, TABLE[:-1] + f".{precision}]"))
    # error messages name tables without brackets: the terminal renderer reads [x] as markup
    for layer, name in layers:
        for raw_key, value in layer.items():
            if isinstance(value, dict) and raw_key in DEFAULT_BUDGETS:
                continue  # a per-precision table; read only for its own precision
            key = raw_key.replace("_", "-")
            if key not in SETTINGS:
                raise BadInput(
                    f"{path}: unknown key {raw_key!r} in table {name.strip('[]')}",
                    f"use {', '.join(SETTINGS)} or a per-precision table ({', '.join(DEFAULT_BUDGETS)})",
                )
            found[key] = (value, name)
    return found, []


def resolve_budget(
    precision: str, flags: Dict[str, Optional[str]], cwd: Path, task: Optional[str] = None
) -> BudgetChoice:
    """The budget for `precision` of `task`'s outputs (None: segmentation) with pyproject settings
    and then `flags` ({setting: text|None}) on top."""
    try:
        base = default_budget(precision, task)
    except ValueError:
        raise BadInput(
            f"the artifact's precision {precision!r} has no default budget", f"known: {', '.join(DEFAULT_BUDGETS)}"
        ) from None
    values = dataclasses.asdict(base)
    sources = {name: f"default ({precision})" for name in values}
    pyproject = find_pyproject(cwd)
    notes: List[str] = []
    # setting -> (value, how an error names it, what the report says about it)
    layered: Dict[str, Tuple[Any, str, str]] = {}
    if pyproject is not None:
        from_file, notes = pyproject_settings(pyproject, precision)
        for key, (value, table) in from_file.items():
            layered[key] = (value, f"{pyproject} {table.strip('[]')}.{key}", f"pyproject.toml {table} ({pyproject})")
    used_pyproject = bool(layered) or bool(notes)
    for key, value in flags.items():
        if value is not None:
            layered[key] = (value, f"--{key}", f"flag --{key}")
    for key, (value, where, source) in layered.items():
        name = SETTINGS[key]
        values[name] = parse_setting(key, value, where)
        sources[name] = source
    # an absolute tolerance alone (on a precision whose default has no max-abs check) means
    # "max abs error <= atol": the peak-relative part is then zero, and the report says so
    if values["max_abs_rel"] is None and sources["max_abs_floor"] != f"default ({precision})":
        values["max_abs_rel"] = 0.0
        sources["max_abs_rel"] = f"0 because {sources['max_abs_floor']} set atol"
    return BudgetChoice(precision, Budget(**values), sources, str(pyproject) if used_pyproject else None, notes)
