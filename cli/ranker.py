"""``clipfeed ranker train | eval`` and ``clipfeed feed USER_ID``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import emit_json, stdout
from cli.wiring import feed_builder, load_ranker, load_stack, train_ranker
from clipfeed.errors import InputError
from recommender import ContextUpdater, RequestContext, UserContext, evaluate, replay

app = typer.Typer(
    help="LightGBM LambdaRank ranker: train on a world's logged sessions, evaluate offline.", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
World = Annotated[Path, typer.Option("--world", help="World directory (see `clipfeed world build`).")]
Model = Annotated[Path | None, typer.Option("--model", help="Ranker directory (default: the shipped one).")]
SkipInvalid = Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows instead of failing.")]
Classifier = Annotated[Path | None, typer.Option("--classifier", help="Topic model directory (default: shipped).")]


@app.command("train")
def train_cmd(
    world: World,
    out: Annotated[Path, typer.Option("--out", help="Directory for the model.")],
    seed: Annotated[int, typer.Option(help="LightGBM seed.")] = 0,
    classifier: Classifier = None,
    skip_invalid: SkipInvalid = False,
    json_out: Json = False,
) -> None:
    """Train LambdaRank on impressions graded by reaction (engaged 3, meaningful watch 2, watch 1, skip 0),
    time-split (sessions after day 21 validate), with early stopping."""
    t0 = time.perf_counter()
    stack = load_stack(world, skip_invalid, classifier, progress=not json_out)
    cfg = stack.cfg.model_copy(update={"ranker": stack.cfg.ranker.model_copy(update={"seed": seed})})
    ranker, timing = train_ranker(stack, cfg, progress=not json_out)
    ranker.meta["seconds_features"] = timing["feature_seconds"]
    ranker.meta["seconds_total"] = round(time.perf_counter() - t0, 2)
    ranker.meta["world"] = str(world)
    ranker.save(out)
    summary = {
        k: ranker.meta[k]
        for k in (
            "train_rows",
            "train_groups",
            "valid_groups",
            "best_iteration",
            "valid_ndcg@10",
            "seconds_features",
            "seconds_total",
        )
    }
    if json_out:
        emit_json({"out": str(out), **summary})
    else:
        stdout.print(f"ranker written to {out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()), highlight=False)


@app.command("eval")
def eval_cmd(
    world: World,
    model: Model = None,
    max_users: Annotated[
        int | None, typer.Option("--max-users", min=1, help="Evaluate at most this many users per population.")
    ] = None,
    classifier: Classifier = None,
    skip_invalid: SkipInvalid = False,
    json_out: Json = False,
) -> None:
    """NDCG@10, MAP@10, Recall@50, coverage, diversity, novelty and topic-leak rate for cold-start and
    warm users, for every baseline and the full system in the same run."""
    stack = load_stack(world, skip_invalid, classifier, progress=not json_out)
    if not (world / "truth" / "users.jsonl").exists():
        raise InputError(world / "truth", None, None, "offline evaluation needs the world's truth/ folder")
    results = evaluate(
        stack.world,
        stack.catalog,
        stack.tagging,
        load_ranker(model),
        stack.cfg,
        max_users=max_users,
        progress=not json_out,
    )
    if json_out:
        emit_json(results)
        return
    for population in ("cold", "warm"):
        stdout.print(f"[bold]{population}[/] users", highlight=False)
        for system, m in results[population].items():
            stdout.print(
                f"  {system:16s} ndcg@10={m['ndcg@10']:.3f} map@10={m['map@10']:.3f} "
                f"recall@50={m['recall@50']:.3f} leak={m['topic_leak']:.3f} coverage={m['coverage']:.3f} "
                f"diversity={m['diversity']:.3f} novelty={m['novelty']:.2f}",
                highlight=False,
            )


def feed_cmd(
    user_id: Annotated[str, typer.Argument(help="The user to build a feed for.")],
    world: World,
    model: Model = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    explain: Annotated[bool, typer.Option("--explain", help="Show why each clip is there.")] = False,
    classifier: Classifier = None,
    skip_invalid: SkipInvalid = False,
    json_out: Json = False,
) -> None:
    """Build one user's feed from a world (their searches and events); unknown users get a fallback."""
    stack = load_stack(world, skip_invalid, classifier, prefetch=False)  # only this user's searches
    log = stack.world.users.get(user_id)
    ctx = replay(ContextUpdater(stack.cfg.signals), stack.catalog, stack.tagging, log) if log else None
    builder = feed_builder(stack, load_ranker(model))
    feed = builder.build(ctx or UserContext(), limit, RequestContext(), explain=True, user_key=user_id)
    if log is None:
        feed.fallback = f"unknown user {user_id!r}: popular clips"
        for it in feed.items:
            it.explanation["reason"] = feed.fallback
    out: dict[str, Any] = {
        "user_id": user_id,
        "items": [
            {
                "clip_id": it.clip_id,
                "score": it.score,
                "topics": it.topics,
                "explanation": it.explanation if explain else {"reason": it.explanation.get("reason", "")},
            }
            for it in feed.items
        ],
    }
    if feed.fallback:
        out["fallback"] = feed.fallback
    if json_out:
        emit_json(out)
        return
    titles = {c.clip_id: c.title for c in stack.world.clips}
    tax = stack.world.taxonomy
    if feed.fallback:
        stdout.print(f"[yellow]fallback:[/] {feed.fallback}", highlight=False)
    for n, it in enumerate(feed.items, 1):
        topic = tax.name(it.topics[0]) if it.topics[0] in tax else it.topics[0]
        stdout.print(f"{n:2d}. {titles[it.clip_id]}  [dim]({topic}, {it.score:.2f})[/]", highlight=False)
        if explain:
            stdout.print(f"      {it.explanation.get('reason', '')}", highlight=False)
            feats = it.explanation.get("top_features")
            if feats:
                stdout.print(
                    "      " + ", ".join(f"{f['feature']} {f['contribution']:+.2f}" for f in feats), highlight=False
                )
