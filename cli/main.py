"""The ``clipfeed`` entry point.

Exit codes: 0 success; 1 the command ran and found problems (e.g. ``world validate``) or an
internal error; 2 bad input or usage; 3 the command's stage is not built yet.
"""

from __future__ import annotations

import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from cli import bench, classifier, pending, ranker, report, serve, tagger, world
from cli.output import stderr
from clipfeed.errors import ClipfeedError, NotBuiltError
from clipfeed.settings import check_environment

app = typer.Typer(
    name="clipfeed",
    help="Cold-start clip feeds from search intent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(world.app, name="world")
app.add_typer(tagger.app, name="tagger")
app.add_typer(classifier.app, name="classifier")
app.add_typer(ranker.app, name="ranker")
app.add_typer(report.app, name="eval")
app.add_typer(bench.app, name="bench")
app.command("feed")(ranker.feed_cmd)
app.command("serve")(serve.serve_cmd)
pending.register(app)


def _version() -> str:
    try:
        return version("clipfeed")
    except PackageNotFoundError:
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"clipfeed {_version()}")
        raise typer.Exit()


@app.callback()
def root(
    _version_flag: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """clipfeed: intent tags from searches -> topic filter -> LightGBM LambdaRank -> clip feeds."""
    check_environment()


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; bad input becomes one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    try:
        # standalone mode: the CLI framework prints usage errors itself and exits (code 2)
        command.main(args=argv, prog_name="clipfeed", standalone_mode=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except NotBuiltError as e:
        stderr.print(f"{e}", highlight=False, markup=False)
        code = 3
    except ClipfeedError as e:
        stderr.print(f"error: {e}", highlight=False, markup=False)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # the last line of defence: no traceback unless asked for
        if os.environ.get("CLIPFEED_DEBUG"):
            traceback.print_exc()
        stderr.print(
            f"internal error: {type(e).__name__}: {e} (set CLIPFEED_DEBUG=1 for the traceback)",
            highlight=False,
            markup=False,
        )
        code = 1
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
