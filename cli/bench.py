"""``clipfeed bench NAME`` (api, api-ab, tagger, ranker, ann, servelog, …): runs the scripts in ``benchmarks/``.

The scripts live in the repository (they build worlds and servers of their own and print figures,
not pass/fail); this group finds them from a checkout and passes any further arguments through, e.g.
``clipfeed bench api --seconds 3 --rates 100,200``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from clipfeed.errors import ClipfeedError

SCRIPTS = {
    "api": ("api_load.py", "Feed API under load over loopback: latency at fixed rates, ingestion, memory."),
    "api-ab": ("api_ab.py", "Two server configurations (one setting apart) under the same feed load, alternating."),
    "tagger": ("tagger_bench.py", "Teacher vs student: quality, latency, CPU time, throughput."),
    "classifier": ("classifier_real.py", "Topic classifier on real data (Magnetic, YNAT) against baselines."),
    "ranker": ("recommender_bench.py", "Offline feed quality, real-time response, speed, generality."),
    "servelog": (
        "servelog_bench.py",
        "Served-impression log: training from it vs offline, feed latency with logging off/on, clean restart.",
    ),
    "scale": ("scale_bench.py", "Local vs Ray (1 and 2 workers): tagging and ranker-training throughput."),
    "hybrid": ("hybrid_blend.py", "Can collaborative features add to the content score on warm users? (blend test)"),
    "ann": ("ann_bench.py", "ANN index (HNSW) on 1 M clip vectors: recall@100 against exact search, latency, build."),
}
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(help="Benchmarks that print measured figures (scripts in benchmarks/).", no_args_is_help=True)


def script_path(name: str, root: Path | None = None) -> Path:
    """Where a benchmark script is: the checkout this package was installed from (editable install)."""
    script = (root or Path(__file__).resolve().parent.parent) / "benchmarks" / SCRIPTS[name][0]
    if not script.is_file():
        raise ClipfeedError(f"benchmark script {script} not found: run clipfeed bench from a source checkout")
    return script


def _command(name: str) -> None:
    def run(ctx: typer.Context) -> None:
        result = subprocess.run([sys.executable, str(script_path(name)), *ctx.args], check=False)
        if result.returncode:
            raise typer.Exit(result.returncode)

    run.__doc__ = SCRIPTS[name][1] + " Extra arguments go to the script (--help shows them)."
    app.command(name, context_settings=_PASS_THROUGH, add_help_option=False)(run)


for _name in SCRIPTS:
    _command(_name)
