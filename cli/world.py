"""``clipfeed world build | validate``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cli.output import emit_json, fail, stderr, stdout
from clipfeed.errors import ConfigError
from clipfeed.world import WorldConfig, build_world
from clipfeed.world.validate import validate_world

app = typer.Typer(
    help="Build and check sample worlds (catalog, queries, events, gold, taxonomy).", no_args_is_help=True
)

Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the world into.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 42,
    clips: Annotated[int, typer.Option(help="Number of clips.")] = 3200,
    users: Annotated[int, typer.Option(help="Number of users.")] = 2000,
    creators: Annotated[int, typer.Option(help="Number of creators.")] = 320,
    cold_share: Annotated[float, typer.Option(help="Share of users with no clip events.")] = 0.3,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    json_out: Json = False,
) -> None:
    """Write a deterministic sample world into OUT (documented in docs/world.md)."""
    try:
        cfg = WorldConfig(seed=seed, n_clips=clips, n_users=users, n_creators=creators, cold_share=cold_share)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('n_', '').replace('_', '-')}: {err['msg']}") from e
    t0 = time.perf_counter()
    stats = build_world(out, cfg, progress=not (quiet or json_out))
    seconds = time.perf_counter() - t0
    if json_out:
        emit_json({"out": str(out), "seconds": round(seconds, 2), "stats": stats})
        return
    stdout.print(
        f"world written to [bold]{out}[/] in {seconds:.1f}s: {stats['clips']} clips over "
        f"{stats['tier2_topics']} tier-2 topics, {stats['users']} users ({stats['cold_users']} cold), "
        f"{stats['queries']} queries, {sum(stats['events'].values())} events, "
        f"{stats['gold_rows']} gold rows",
        highlight=False,
    )


@app.command("validate")
def validate(
    world: Annotated[Path, typer.Argument(help="World directory to check.")],
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Bad rows are reported but tolerated: exit 0 if every file keeps valid rows."
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Check every file of a world; report each bad row by file, line and field (exit 1 if any)."""
    if not world.is_dir():
        raise fail(f"{world}: not a directory")
    report = validate_world(world)
    empty = [name for name, r in report.files.items() if r.rows == 0]
    ok = report.ok or (skip_invalid and not empty)
    if json_out:
        emit_json({**report.to_dict(), "skip_invalid": skip_invalid, "empty_files": empty})
    else:
        for name, r in report.files.items():
            stdout.print(f"{name}: {r.rows} valid, {r.rejected} rejected", highlight=False)
            for err in r.errors:
                stderr.print(f"  {err}", highlight=False, markup=False)
            if r.rejected > len(r.errors):
                stderr.print(f"  ... and {r.rejected - len(r.errors)} more", highlight=False)
        verdict = "ok" if report.ok else ("usable with --skip-invalid" if ok else "invalid")
        stdout.print(f"{world}: {verdict}", highlight=False)
    if not ok:
        raise typer.Exit(1)


def _register_contexts() -> None:
    from cli.scale import contexts_cmd

    app.command("contexts")(contexts_cmd)


_register_contexts()
