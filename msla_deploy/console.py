"""Rendering for the CLI: progress on stderr, tables and JSON on stdout, errors as one line."""

from __future__ import annotations

import sys
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .progress import Steps

# off a terminal (CI logs, pipes) Rich assumes 80 columns and would cut table cells
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


#: where --json output goes while the command runs with stdout redirected to stderr (cli.py)
json_stream = None


def print_json(data) -> None:
    from .artifact.files import json_text  # hashlib, importlib.metadata: not for `--help`

    stream = json_stream or sys.stdout
    stream.write(json_text(data))
    stream.flush()


def print_json_line(data) -> None:
    """One JSON document on one line, flushed: for a command that goes on running after it (serve)."""
    import json

    stream = json_stream or sys.stdout
    stream.write(json.dumps(data, default=str) + "\n")
    stream.flush()


def error_line(message: str) -> None:
    # escape: messages quote things like 'msla-deploy[export]' that Rich would eat as markup
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def count_bar(title: str, rate_unit: str = ""):
    """A transient bar on stderr: the title, done/total, percent, the rate (with `rate_unit`, e.g.
    "images/s": a task field `rate` the caller fills) and ETA (rich.progress.Progress; add one
    task with its total, then update its `completed`). The one bar every long step shows."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    rate = [TextColumn("{task.fields[rate]}")] if rate_unit else []
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        *rate,
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


class counting_progress:
    """`with counting_progress("evaluating", "images/s") as advance:` gives `advance(done, total)`
    (None off a terminal, where logs stay short): a count_bar started on the first call."""

    def __init__(self, title: str, rate_unit: str = "", minimum: int = 1) -> None:
        self.title, self.rate_unit, self.minimum = title, rate_unit, minimum
        self.bar = None
        self.task = None

    def __enter__(self):
        if not err.is_terminal:
            return None

        def advance(done: int, total: int, description: Optional[str] = None) -> None:
            if total < self.minimum:
                return
            if self.bar is None:
                self.bar = count_bar(self.title, self.rate_unit)
                self.bar.start()
                self.task = self.bar.add_task(escape(self.title), total=total, rate="")
            speed = self.bar.tasks[0].speed if self.rate_unit else None
            rate = f"{speed:.2f} {self.rate_unit}" if speed else ""
            self.bar.update(
                self.task,
                completed=done,
                rate=rate,
                description=escape(description) if description else escape(self.title),
            )

        return advance

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def steps_with_progress(enabled: bool = True) -> Steps:
    """Steps that show a spinner on a terminal (a bar with counts and ETA once a step calls
    `steps.advance`) and one line per finished step everywhere."""
    if not enabled:
        return Steps(on_warning=lambda message: err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False))
    status = {"live": None, "bar": None, "task": None, "title": ""}

    def start(title: str) -> None:
        status["title"] = title
        if err.is_terminal:
            status["live"] = err.status(f"{title} ...")
            status["live"].start()

    def advance(done: int, total: int) -> None:
        if not err.is_terminal:
            return  # logs get the one line per step; a bar would only add redraws
        if status["bar"] is None:
            if status["live"] is not None:  # the bar takes the spinner's place
                status["live"].stop()
                status["live"] = None
            status["bar"] = count_bar(status["title"])
            status["bar"].start()
            status["task"] = status["bar"].add_task(escape(status["title"]), total=total)
        status["bar"].update(status["task"], completed=done, total=total)

    def end(title: str, seconds: float, ok: bool) -> None:
        for key in ("live", "bar"):
            if status[key] is not None:
                status[key].stop()
                status[key] = None
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        err.print(f"{title} ... {mark} ({seconds:.1f} s)", highlight=False)

    def warning(message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    return Steps(on_start=start, on_end=end, on_warning=warning, on_advance=advance)


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _agreement_label(outputs: List[Any]) -> str:
    """A classifier's label agreement is per picture: its top-1 (outputs with a top-5 overlap)."""
    return "top-1 agreement" if any(o.topk_overlap is not None for o in outputs) else "argmax agreement"


def parity_table(outputs: Iterable[Any], budget: Any, title: str) -> Table:
    """One row per metric, one column per output: stays readable in an 80-column terminal.
    `outputs` are parity.records.OutputRow, `budget` a parity.budgets.Budget."""
    outputs = list(outputs)
    agreement = _agreement_label(outputs)
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for o in outputs:
        table.add_column(o.name, justify="right")
    table.add_column("budget", style="dim")
    rel = budget.max_abs_rel
    rows = [
        (
            "max abs error",
            lambda o: _fmt(o.max_abs, ".3g"),
            f"<= {rel:.10g} x peak + {budget.max_abs_floor:.10g}" if rel is not None else "",
        ),
        ("  / peak |ref|", lambda o: _fmt(o.relative_max_abs, ".2e"), ""),
        ("mean abs error", lambda o: _fmt(o.mean_abs, ".3g"), ""),
        ("p99 abs error", lambda o: _fmt(o.p99_abs, ".3g"), ""),
        ("cosine", lambda o: _fmt(o.cosine, ".7f"), f">= {budget.min_cosine:.10g}"),
        ("NaN / Inf", lambda o: f"{o.nan_count} / {o.inf_count}", "0 / 0" if not budget.allow_nonfinite else ""),
        (
            agreement,
            lambda o: "-" if o.argmax_agreement is None else f"{100 * o.argmax_agreement:.3f}%",
            f">= {100 * budget.min_argmax_agreement:.10g}%",
        ),
        ("  near-ties left out", lambda o: "-" if o.near_ties is None else str(o.near_ties), ""),
        ("top-5 overlap", lambda o: "-" if o.topk_overlap is None else f"{100 * o.topk_overlap:.2f}%", ""),
        ("mask IoU", lambda o: _fmt(o.mask_iou, ".5f"), _limit(budget.min_mask_iou, ">= {:g}")),
        ("  worst mask", lambda o: _fmt(o.mask_iou_min, ".4f"), ""),
        ("verdict", lambda o: "[green]pass[/]" if o.passed else "[bold red]FAIL[/]", ""),
    ]
    # a metric no output has (label maps have no error or cosine) is left out, budget and all
    measured = {
        "max abs error": "max_abs",
        "  / peak |ref|": "relative_max_abs",
        "mean abs error": "mean_abs",
        "p99 abs error": "p99_abs",
        "cosine": "cosine",
        agreement: "argmax_agreement",
        "top-5 overlap": "topk_overlap",
        "  near-ties left out": "near_ties",
        "mask IoU": "mask_iou",
        "  worst mask": "mask_iou_min",
    }
    for label, cell, limit in rows:
        key = measured.get(label)
        if key is not None and all(getattr(o, key) is None for o in outputs):
            continue
        table.add_row(label, *(cell(o) for o in outputs), limit)
    return table


def _limit(value: Optional[float], template: str) -> str:
    return "" if value is None else template.format(value)


def _budget_summary(budget: Any, labels_only: bool = False, classes: bool = True) -> str:
    """The budget in a few words; a check of labels outputs only has no error or cosine to bound."""
    parts = []
    if budget.max_abs_rel is not None and not labels_only:
        parts.append(f"err <= {budget.max_abs_rel:.10g}*peak")
    if not labels_only:
        parts.append(f"cos >= {budget.min_cosine:.10g}")
    if classes:
        parts.append(f"agree >= {100 * budget.min_argmax_agreement:.10g}%")
    if budget.min_mask_iou is not None and not classes:
        parts.append(f"mask IoU >= {budget.min_mask_iou:g}")
    if budget.max_score_error is not None and not classes:
        parts.append(f"IoU-score err <= {budget.max_score_error:g}")
    return ", ".join(parts)


def checks_table(checks: List[Any], title: str) -> Table:
    """Several parity checks (parity.records.ParityCheck) of one output side by side (e.g. ONNX
    Runtime fp16, fp16 proxy, fp32)."""
    if len(checks) == 1:
        return parity_table(checks[0].outputs, checks[0].budget, f"{title}: {checks[0].label}")
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    columns = [(c, o) for c in checks for o in c.outputs]
    for check, o in columns:
        table.add_column(check.label + ("" if len(check.outputs) == 1 else f" {o.name}"), justify="right")
    rows = [
        ("max abs / peak", lambda o: _fmt(o.relative_max_abs, ".2e")),
        ("p99 abs error", lambda o: _fmt(o.p99_abs, ".3g")),
        ("cosine", lambda o: _fmt(o.cosine, ".6f")),
        ("NaN / Inf", lambda o: f"{o.nan_count} / {o.inf_count}"),
        (
            _agreement_label([o for _, o in columns]),
            lambda o: "-" if o.argmax_agreement is None else f"{100 * o.argmax_agreement:.2f}%",
        ),
        ("top-5 overlap", lambda o: "-" if o.topk_overlap is None else f"{100 * o.topk_overlap:.2f}%"),
        ("mask IoU", lambda o: _fmt(o.mask_iou, ".5f")),
        ("verdict", lambda o: "[green]pass[/]" if o.passed else "[bold red]FAIL[/]"),
    ]
    # a metric no output has is left out: top-5 overlap is a classifier's, mask IoU SAM's, and SAM's
    # outputs have no classes to agree on
    optional = {"top-5 overlap": "topk_overlap", "mask IoU": "mask_iou", rows[4][0]: "argmax_agreement"}
    for label, cell in rows:
        key = optional.get(label)
        if key is not None and all(getattr(o, key) is None for _, o in columns):
            continue
        table.add_row(label, *(cell(o) for _, o in columns))
    table.caption = "budgets: " + "; ".join(
        f"{c.label}: "
        + _budget_summary(
            c.budget, all(o.labels for o in c.outputs), any(o.argmax_agreement is not None for o in c.outputs)
        )
        for c in checks
    )
    table.caption_justify = "left"
    return table


def key_values(rows: List[tuple]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def print_next(steps: Sequence[Tuple[str, str]]) -> None:
    """What to run next, after a command's result (as yolo does): one pasteable line per step, with
    why as a shell comment. Never with --json: stdout is then the JSON document only."""
    if not steps:
        return
    width = max(len(command) for command, _ in steps)
    out.print("Next:", style="bold", highlight=False)
    for command, why in steps:
        out.print(escape(f"  {command.ljust(width)}  # {why}" if why else f"  {command}"), highlight=False)


def weights_cell(source: Optional[str], warning: Optional[str]) -> str:
    """A header's weights row (Artifact.weights_source / weights_warning): where they came from,
    and loudly when they are random."""
    if warning:
        return f"[bold red]{escape(source or '')}: {escape(warning)}[/]"
    return escape(source or "not recorded (no manifest)")


def warn_random_weights(warning: Optional[str]) -> None:
    """The random-weights warning on stderr, for commands whose output is not a header table."""
    if warning:
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
