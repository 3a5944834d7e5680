"""``clipfeed eval report``: the offline evaluation of every stage, headless (see ``cli/evaluation``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import emit_json, stderr, stdout
from clipfeed.errors import ClipfeedError

app = typer.Typer(help="Offline evaluation: the notebooks' numbers and figures as a report.", no_args_is_help=True)


@app.command("report")
def report_cmd(
    world: Annotated[Path, typer.Option("--world", help="World directory (see `clipfeed world build`).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for report.md, metrics.json and the figures.")],
    users: Annotated[
        int | None, typer.Option("--users", min=1, help="Users per population in the feed evaluation (default 300).")
    ] = 300,
    all_users: Annotated[bool, typer.Option("--all-users", help="Evaluate every user (overrides --users).")] = False,
    tagger: Annotated[str, typer.Option("--tagger", help="Tagger the feeds use: standin | student.")] = "standin",
    tagger_models: Annotated[
        str,
        typer.Option(
            "--tagger-models", help="Models compared on the gold test split: teacher, student, standin, copy_query."
        ),
    ] = "teacher,student,copy_query",
    skip_tagger: Annotated[bool, typer.Option("--skip-tagger", help="Leave out the tagger section.")] = False,
    skip_classifier: Annotated[bool, typer.Option("--skip-classifier", help="Leave out the classifier.")] = False,
    skip_recommender: Annotated[bool, typer.Option("--skip-recommender", help="Leave out the feeds.")] = False,
    skip_serving: Annotated[bool, typer.Option("--skip-serving", help="Leave out the serving figures.")] = False,
    real_queries: Annotated[int, typer.Option("--real-queries", min=0, help="Real Magnetic queries to tag.")] = 100,
    real_rows: Annotated[
        int | None, typer.Option("--real-rows", min=1, help="Rows per real classifier data set (default 10000).")
    ] = 10_000,
    feedback_users: Annotated[
        int, typer.Option("--feedback-users", min=0, help="Cold users in the feedback-response check.")
    ] = 200,
    importance_users: Annotated[
        int, typer.Option("--importance-users", min=0, help="Users whose candidates feature importance averages.")
    ] = 100,
    latency_users: Annotated[int, typer.Option("--latency-users", min=0, help="Feeds timed in process.")] = 200,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples of users.")] = 1000,
    model: Annotated[Path | None, typer.Option("--model", help="Ranker directory (default: the shipped one).")] = None,
    api_load: Annotated[
        Path | None,
        typer.Option("--api-load", help="benchmarks/api_load.py JSON (default .cache/bench/api_load.json)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of samples and bootstraps.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Run the tagger, classifier, recommender and serving evaluations and write OUT/report.md
    (with PNG figures beside it) and OUT/metrics.json: the notebooks' numbers, without Jupyter."""
    from cli.evaluation import make_options
    from cli.evaluation.report import SECTIONS, run_sections, write_report

    if tagger not in ("standin", "student"):
        raise ClipfeedError(f"--tagger {tagger}: expected standin or student")
    skipped = {"tagger": skip_tagger, "classifier": skip_classifier, "recommender": skip_recommender}
    skipped["serving"] = skip_serving
    sections = tuple(s for s in SECTIONS if not skipped[s])
    if not sections:
        raise ClipfeedError("every section is skipped: nothing to report")
    opts = make_options(
        world=world,
        users=None if all_users else users,
        tagger=tagger,
        tagger_models=tuple(m.strip() for m in tagger_models.split(",") if m.strip()),
        real_queries=real_queries,
        real_rows=real_rows,
        feedback_users=feedback_users,
        importance_users=importance_users,
        latency_users=latency_users,
        bootstrap=bootstrap,
        model=model,
        api_load=api_load,
        seed=seed,
        progress=not json_out,
    )
    metrics = run_sections(opts, sections, log=stderr)
    path = write_report(metrics, out)
    if json_out:
        emit_json(metrics)
    else:
        stdout.print(f"report written to {path} (numbers in {out / 'metrics.json'})", highlight=False)
