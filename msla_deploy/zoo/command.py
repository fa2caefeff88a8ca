"""The `models` command: the zoo of both tasks as a table or JSON. Registered in cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..choices import TaskName
from ..cli_options import json_option, models_dir_option
from ..console import out, print_json


def models_command(
    models_dir: Path = models_dir_option("Where checkpoints are looked up."),
    task: Optional[TaskName] = typer.Option(None, "--task", help="List only this task's models [default: all]."),
    json_out: bool = json_option("the list"),
) -> None:
    """List the EfficientViT zoo (segmentation and classification): size, cost at the default
    resolution, checkpoint status."""
    from .listing import checkpoint_patterns, zoo_rows

    task_name = task.value if task is not None else None
    rows = zoo_rows(models_dir, task_name)
    if json_out:
        print_json(rows)
        return
    from rich import box
    from rich.table import Table

    table = Table(title="EfficientViT zoo", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    for column in ("classes", "params", "GMACs", "at HxW"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("checkpoint", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            r["task"],
            str(r["num_classes"]),
            f"{r['params'] / 1e6:.2f}M",
            f"{r['gmacs']:.2f}" if r["gmacs"] < 10 else f"{r['gmacs']:.1f}",
            "x".join(map(str, r["resolution"])),
            "[green]found[/]" if r["present"] else "[dim]missing[/]",
        )
    out.print(table)
    files = " or ".join(f"{models_dir}/{pattern}" for pattern in checkpoint_patterns(task_name))
    out.print(f"Checkpoints are looked up as {files} (see models/README.md).", highlight=False)
