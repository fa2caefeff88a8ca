"""The `models` command: the zoo as a table or JSON. Registered in cli.py."""

from __future__ import annotations

from pathlib import Path

import typer

from ..console import out, print_json
from ..torch_side import torch_side


def models_command(
    models_dir: Path = typer.Option(Path("models"), "--models-dir", envvar="MSLA_DEPLOY_MODELS", help="Where checkpoints are looked up."),
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
) -> None:
    """List the EfficientViT-Seg zoo: size, cost at the default resolution, checkpoint status."""
    rows = torch_side("msla_deploy.zoo.listing", "zoo_rows")(models_dir)
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
            r["name"], str(r["num_classes"]), f"{r['params'] / 1e6:.2f}M", f"{r['gmacs']:.1f}",
            "x".join(map(str, r["resolution"])), "[green]found[/]" if r["present"] else "[dim]missing[/]",
        )
    out.print(table)
    out.print(f"Checkpoints are looked up as {models_dir}/efficientvit_seg_<variant>_<dataset>.pt (see models/README.md).", highlight=False)
