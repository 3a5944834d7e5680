"""Command groups of the design whose stages are not built yet: they say so and exit 3.

They accept any arguments so that a call in the documented shape gets the honest answer
("not built yet") rather than a usage error.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from clipfeed.errors import NotBuiltError

_ANY_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["--help"]}

STAGES: dict[str, tuple[str, int, list[str]]] = {}
TOP_LEVEL: dict[str, tuple[str, int]] = {}


def _pending(name: str, issue: int) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        raise NotBuiltError(f"clipfeed {name}: not built yet (planned in issue #{issue})")

    command.__doc__ = f"Not built yet (issue #{issue})."
    return command


def register(app: typer.Typer) -> None:
    for group, (help_text, issue, commands) in STAGES.items():
        sub = typer.Typer(help=f"{help_text} Not built yet (issue #{issue}).", no_args_is_help=True)
        for cmd in commands:
            sub.command(cmd, context_settings=_ANY_ARGS)(_pending(f"{group} {cmd}", issue))
        app.add_typer(sub, name=group)
    for cmd, (help_text, issue) in TOP_LEVEL.items():
        app.command(cmd, context_settings=_ANY_ARGS, help=f"{help_text} Not built yet (issue #{issue}).")(
            _pending(cmd, issue)
        )
