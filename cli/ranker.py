"""``clipfeed ranker train | eval`` and ``clipfeed feed USER_ID``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import ann
from cli.output import emit_json, stderr, stdout
from cli.scale import Address, Engine, Workers, use_ray
from cli.wiring import content_ranker, feed_builder, hybrid_curve, load_ranker, load_stack, train_ranker
from clipfeed.errors import ClipfeedError, InputError
from recommender import ContextUpdater, RecommenderConfig, RequestContext, UserContext, evaluate, replay
from recommender.from_log import train_from_log

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
    out: Annotated[Path, typer.Option("--out", help="Directory for the model.")],
    world: Annotated[Path | None, typer.Option("--world", help="World directory (see `clipfeed world build`).")] = None,
    seed: Annotated[int, typer.Option(help="LightGBM seed.")] = 0,
    classifier: Classifier = None,
    skip_invalid: SkipInvalid = False,
    json_out: Json = False,
    from_log: Annotated[
        Path | None,
        typer.Option(
            "--from-log",
            help="Train on a served-impression log directory (CLIPFEED_SERVELOG_DIR) instead of a world: "
            "the features as served, one group per served feed, positions for position-bias handling "
            "(binds the collaborative model of --model, the ranker that served it; default: shipped).",
        ),
    ] = None,
    model: Model = None,
    engine: Engine = "local",
    address: Address = None,
    workers: Workers = None,
) -> None:
    """Train LambdaRank on impressions graded by reaction (engaged 3, meaningful watch 2, watch 1, skip 0),
    time-split (sessions after day 21 validate, or the latest fifth of a log's feeds), with early stopping."""
    if from_log is not None:
        if world is not None:
            raise ClipfeedError("--world and --from-log exclude each other: train on a world or on a served log")
        _train_from_log(from_log, out, seed, model, json_out)
        return
    if world is None:
        raise ClipfeedError("give --world DIR (a world's logged sessions) or --from-log DIR (a served-impression log)")
    t0 = time.perf_counter()
    if use_ray(engine):  # features on Ray actors, LightGBM data-parallel on Ray Train (cli/scale.py)
        from cli.scale import train_on_ray

        ray = {"workers": workers, "address": address}
        ranker, timing = train_on_ray(world, seed, classifier, skip_invalid, not json_out, **ray)
    else:
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


def _train_from_log(from_log: Path, out: Path, seed: int, model: Path | None, json_out: bool) -> None:
    """``ranker train --from-log``: no world replay, the rows as the API served them."""
    t0 = time.perf_counter()
    try:  # the ranker that served the log: its collaborative model is kept with the new one
        served = load_ranker(model)
    except ClipfeedError as e:
        if model is not None:
            raise
        # A shipped ranker of another feature schema cannot have served a log of this code version.
        stderr.print(f"warning: no collaborative model bound ({e})", highlight=False)
        served = None
    cfg = RecommenderConfig()
    cfg = cfg.model_copy(update={"ranker": cfg.ranker.model_copy(update={"seed": seed})})
    ranker, lt = train_from_log(from_log, cfg, served.collab if served is not None else None)
    if lt.read.torn_lines:
        stderr.print(f"warning: {lt.read.torn_lines} torn last line(s) skipped in {from_log}", highlight=False)
    ranker.meta["seconds_total"] = round(time.perf_counter() - t0, 2)
    ranker.save(out)
    keys = ("train_rows", "train_groups", "valid_groups", "best_iteration", "valid_ndcg@10", "log_feeds")
    summary = {k: ranker.meta[k] for k in (*keys, "events_joined", "feeds_skipped", "position_bias", "seconds_total")}
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
    curve: Annotated[
        bool, typer.Option("--curve/--no-curve", help="NDCG@10 by prior clip events (0, 1-4, 5-20, 20+).")
    ] = True,
    classifier: Classifier = None,
    skip_invalid: SkipInvalid = False,
    json_out: Json = False,
) -> None:
    """NDCG@10, MAP@10, Recall@50, coverage, diversity, novelty and topic-leak rate for cold-start and
    warm users, for every baseline and the full system in the same run (``cf``: collaborative only;
    ``content``: the full system trained without collaborative signals; ``full``: the hybrid), and
    the hand-over from cold to warm: NDCG@10 by the number of prior clip events."""
    stack = load_stack(world, skip_invalid, classifier, progress=not json_out)
    if not (world / "truth" / "users.jsonl").exists():
        raise InputError(world / "truth", None, None, "offline evaluation needs the world's truth/ folder")
    ranker = load_ranker(model, stack)
    content = content_ranker(ranker)  # the hybrid without its collaborative residual
    results = evaluate(
        stack.world,
        stack.catalog,
        stack.tagging,
        ranker,
        stack.cfg,
        max_users=max_users,
        progress=not json_out,
        content_ranker=content,
    )
    if curve:
        results["history_curve"] = hybrid_curve(stack, ranker, content, max_users, progress=not json_out)
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
    curve_rows = results.get("history_curve") or {}
    if curve_rows:
        stdout.print("[bold]NDCG@10 by prior clip events[/] (held-out warm users)", highlight=False)
        for bucket, systems in curve_rows.items():
            cells = " ".join(f"{s}={v['mean']:.3f}" for s, v in systems.items())
            stdout.print(f"  {bucket:5s} users={next(iter(systems.values()))['users']:4d} {cells}", highlight=False)


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
    builder = feed_builder(stack, load_ranker(model, stack))
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


app.command("index")(ann.index_cmd)
