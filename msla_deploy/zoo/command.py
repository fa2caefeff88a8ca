"""The `models` command: the zoo as a table or JSON. Registered in cli.py."""

from __future__ import annotations

from pathlib import Path

from ..cli_options import json_option, models_dir_option
from ..console import out, print_json


def models_command(
    models_dir: Path = models_dir_option("Where checkpoints are looked up."),
    json_out: bool = json_option("the list"),
) -> None:
    """List the EfficientViT-Seg zoo: size, cost at the default resolution, checkpoint status."""
    from .listing import zoo_rows

    rows = zoo_rows(models_dir)
    if json_out:
        print_json(rows)
        return
    from rich import box
    from rich.table import Table

    table = Table(title="EfficientViT-Seg zoo", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    for column in ("classes", "params", "GMACs", "at HxW"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("checkpoint", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["num_classes"]),
            f"{r['params'] / 1e6:.2f}M",
            f"{r['gmacs']:.1f}",
            "x".join(map(str, r["resolution"])),
            "[green]found[/]" if r["present"] else "[dim]missing[/]",
        )
    out.print(table)
    out.print(
        f"Checkpoints are looked up as {models_dir}/efficientvit_seg_<variant>_<dataset>.pt (see models/README.md).",
        highlight=False,
    )
