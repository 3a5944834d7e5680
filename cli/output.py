"""Output helpers: JSON to stdout for machines, rich text for people, one-line errors on stderr."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Prints ``error: message`` on stderr and returns the exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)
