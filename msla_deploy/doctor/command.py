"""The `doctor` command: parse, diagnose, render. Registered in cli.py. Exits 0 whatever it finds."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..cli_options import json_option
from ..console import out, print_json

if TYPE_CHECKING:
    from .report import DoctorReport


def registered_commands(ctx: typer.Context) -> List[str]:
    """The commands of the app doctor runs in, read from the click group it is part of."""
    root = ctx.find_root()
    return list(root.command.list_commands(root)) if hasattr(root.command, "list_commands") else []


def doctor_command(
    ctx: typer.Context,
    json_out: bool = json_option(help="Print the report as JSON on stdout (paste it into a bug report)."),
) -> None:
    """What this machine has (Python, torch, ONNX Runtime providers that really start, TensorRT, GPU, Jetson),
    and which commands can run here."""
    from .report import diagnose  # the probes import the runtimes: not for `--help`

    report = diagnose(registered_commands(ctx))
    if json_out:
        print_json(report.to_dict())
    else:
        render(report)


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]no[/]"


def render(report: DoctorReport) -> None:
    table = Table(title="This machine", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("component", "", "version", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    for c in report.components:
        fix = f" [dim]-> {escape(c.fix)}[/]" if c.fix else ""
        table.add_row(c.name, _mark(c.ok), escape(c.version or "-"), escape(c.detail) + fix)
    if report.cpu:
        table.add_row("cpu", "", "", escape(report.cpu))
    if report.jetson is not None:
        table.add_row(
            "jetson", _mark(report.jetson.ok), escape(report.jetson.version or "-"), escape(report.jetson.detail)
        )
    out.print(table)
    out.print(
        "backends that run here: "
        + (", ".join(f"[green]{n}[/]" for n, b in report.backends.items() if b.ready) or "[red]none[/]"),
        highlight=False,
    )

    commands = Table(title="Commands", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    commands.add_column("command", no_wrap=True)
    commands.add_column("runs here", no_wrap=True)
    commands.add_column("why not / fix / note")
    for c in report.commands:
        if c.ready:
            text = escape(", ".join(c.backends)) if c.backends else ""
            if c.note:
                text = (text + "; " if text else "") + f"[yellow]{escape(c.note)}[/]"
            commands.add_row(c.name, "[green]yes[/]", text)
        else:
            commands.add_row(c.name, "[red]no[/]", escape(c.reason) + (f" [dim]-> {escape(c.fix)}[/]" if c.fix else ""))
    out.print(commands)
    out.print(f"[dim]({report.seconds:.1f} s; `msla-deploy doctor --json` for a bug report)[/]", highlight=False)
