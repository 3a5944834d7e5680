"""Feed evaluation: every baseline and the full system on cold-start and warm users, each metric
with a bootstrap interval over users; the Argentina-travel case study as a story (searches -> tags
-> filtered topics -> feed -> explanations); feature importance of the LightGBM ranker; how the feed
responds to the first feedback events.

>>> ratios({"cold": {"full": {"ndcg@10": {"mean": 0.6}}, "popularity": {"ndcg@10": {"mean": 0.2}}}})
{'cold_ndcg_full_over_popularity': 3.0}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cli.wiring import Stack, content_ranker, feed_builder, hybrid_curve, load_ranker, load_stack
from recommender import SYSTEMS, ContextUpdater, Ranker, replay
from recommender.offline import METRICS, collect, feature_importance, feedback_response, summarise_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ARGENTINA = ("655", "argentina")  # Travel Locations, the entity of the talk's example


def load(world: Path, tagger: str, model: Path | None, progress: bool = False) -> tuple[Stack, Ranker | None]:
    """The world's stack (catalog, tagging, config) with the chosen tagger, and the ranker."""
    stack = load_stack(world, tagger=tagger, progress=progress)
    return stack, load_ranker(model, stack)


def evaluate_feeds(
    stack: Stack,
    ranker: Ranker | None,
    users: int | None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
    content: Ranker | None = None,
) -> dict[str, Any]:
    """Both populations x every system: mean and bootstrap 95 % interval of each metric, coverage."""
    run = collect(
        stack.world,
        stack.catalog,
        stack.tagging,
        ranker,
        stack.cfg,
        max_users=users,
        seed=seed,
        progress=progress,
        content_ranker=content,
    )
    out = summarise_run(run, n_boot, seed)
    out["setup"] = run.setup
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float]:
    """The issue-#5 ratios: cold NDCG of full over popularity and raw keywords, leak of raw keywords over full."""
    out: dict[str, float] = {}
    cold = summary.get("cold", {})

    def mean(system: str, metric: str) -> float | None:
        v = cold.get(system, {}).get(metric)
        return v["mean"] if v else None

    for name, (a, b, metric) in {
        "cold_ndcg_full_over_popularity": ("full", "popularity", "ndcg@10"),
        "cold_ndcg_full_over_raw_keywords": ("full", "raw_keywords", "ndcg@10"),
        "cold_leak_raw_keywords_over_full": ("raw_keywords", "full", "topic_leak"),
    }.items():
        x, y = mean(a, metric), mean(b, metric)
        if x is not None and y:
            out[name] = round(x / y, 3)
    return out


def find_case_user(world: Path) -> tuple[str | None, str]:
    """A cold-start user planning a trip to Argentina (the talk's example; ``make demo`` shows the
    same user); failing that, any cold user with a travel-destination interest, then any cold user
    with a named entity. Read from the world's ground truth, for the story only."""
    users = [json.loads(line) for line in (world / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines()]
    cold = [u for u in users if u["cold"]]
    tests = (
        ("planning a trip to Argentina", lambda i: (i["topic"], i["entity"]) == ARGENTINA),
        ("planning a trip (no Argentina planner in this world)", lambda i: i["topic"] == ARGENTINA[0] and i["entity"]),
        ("interested in a named entity (no travel planner in this world)", lambda i: bool(i["entity"])),
    )
    for why, test in tests:
        for u in cold:
            if any(test(i) for i in u["interests"]):
                return str(u["user_id"]), why
    return (str(cold[0]["user_id"]), "the first cold-start user") if cold else (None, "no cold-start users")


def case_study(stack: Stack, ranker: Ranker | None, user_id: str, limit: int = 10) -> dict[str, Any]:
    """One user's path through the system, with every system's top ``limit`` and its metrics."""
    tax = stack.world.taxonomy

    def name(t: str) -> str:
        return tax.name(t) if t in tax else t

    truth = next(
        json.loads(line)
        for line in (stack.world.path / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["user_id"] == user_id
    )
    log = stack.world.users[user_id]
    searches = []
    for q in log.queries:
        docs = [d.title for d in q.clicked_docs]
        search, doc = stack.tagging.tag(q.query, docs)
        tags = [
            {
                "tag": t.tag,
                "from": src,
                "keep": t.keep,
                "topic": name(t.topics[0].id) if t.topics else None,
                "p": t.topics[0].p if t.topics else None,
                "reason": t.reason,
            }
            for src, ts in (("query", search), ("clicked", doc))
            for t in ts
        ]
        searches.append({"query": q.query, "clicked": docs, "tags": tags})
    ctx = replay(ContextUpdater(stack.cfg.signals), stack.catalog, stack.tagging, log)
    topics = sorted(ctx.topics.items(), key=lambda kv: -kv[1].positive)
    feed = feed_builder(stack, ranker).build(ctx, limit, explain=True, user_key=user_id)
    titles = {c.clip_id: c.title for c in stack.world.clips}
    items = [
        {
            "clip_id": it.clip_id,
            "title": titles[it.clip_id],
            "topic": name(it.topics[0]),
            "score": it.score,
            "reason": it.explanation.get("reason", ""),
            "top_features": [
                f"{f['feature']} {f['contribution']:+.2f}" for f in it.explanation.get("top_features", [])
            ],
        }
        for it in feed.items
    ]
    run = collect(stack.world, stack.catalog, stack.tagging, ranker, stack.cfg, only={user_id}, k=limit, progress=False)
    population = "cold" if truth["cold"] else "warm"
    systems: dict[str, Any] = {}
    if user_id in run.users.get(population, []):
        for system in SYSTEMS:
            top = run.feeds[population][system][0]
            systems[system] = {
                "metrics": {k: round(v[0], 4) for k, v in run.per_user[population][system].items()},
                "feed": [{"title": titles[c], "topic": name(stack.catalog.topic[stack.catalog.pos[c]])} for c in top],
            }
    return {
        "user_id": user_id,
        "interests": [
            {"topic": name(i["topic"]), "entity": i["entity"], "weight": round(i["weight"], 3)}
            for i in truth["interests"]
        ],
        "searches": searches,
        "filtered_topics": [
            {"topic": name(t), "search": round(a.search, 3), "doc_click": round(a.doc_click, 3)} for t, a in topics[:8]
        ],
        "feed": items,
        "fallback": feed.fallback,
        "systems": systems,
    }


def importance(stack: Stack, ranker: Ranker | None, n_users: int) -> dict[str, dict[str, float]]:
    """Feature importance over the candidates of the first ``n_users`` users (cold and warm alike)."""
    upd = ContextUpdater(stack.cfg.signals)
    ids = sorted(stack.world.users)[:n_users]
    ctxs = [replay(upd, stack.catalog, stack.tagging, stack.world.users[u]) for u in ids]
    return feature_importance(feed_builder(stack, ranker), ctxs)


def run(
    stack: Stack,
    ranker: Ranker | None,
    users: int | None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    feedback_users: int = 200,
    importance_users: int = 100,
    progress: bool = False,
) -> dict[str, Any]:
    """The whole recommender section (what the report and ``03_recommender.ipynb`` compute)."""
    content = content_ranker(ranker)
    out = evaluate_feeds(stack, ranker, users, n_boot, seed, progress, content)
    out["history_curve"] = hybrid_curve(stack, ranker, content, users, progress=progress)
    out["ratios"] = ratios(out)
    uid, why = find_case_user(stack.world.path)
    out["case_study"] = {"why": why, **case_study(stack, ranker, uid)} if uid else {"why": why}
    out["feature_importance"] = importance(stack, ranker, importance_users)
    builder = feed_builder(stack, ranker)
    out["feedback"] = feedback_response(stack.world, stack.catalog, stack.tagging, builder, feedback_users)
    return out


def figures(m: dict[str, Any]) -> dict[str, Figure]:
    """Bars with bootstrap intervals per metric and population; importance; feedback response."""
    from cli.evaluation.common import new_figure

    figs: dict[str, Figure] = {}
    for population in ("cold", "warm"):
        rows = m.get(population)
        if not rows:
            continue
        fig, grid = new_figure(13, 6.2, ncols=4, nrows=2)
        axes = list(np.ravel(grid))
        axes[-1].set_visible(False)
        systems = [s for s in SYSTEMS if s in rows]
        for ax, metric in zip(axes, [*METRICS, "coverage"], strict=False):
            means = [rows[s][metric]["mean"] if metric in rows[s] else 0.0 for s in systems]
            cis = [rows[s][metric].get("ci95") if metric in rows[s] else None for s in systems]
            err = np.array([[mu - ci[0], ci[1] - mu] if ci else [0.0, 0.0] for mu, ci in zip(means, cis, strict=True)])
            colors = ["tab:red" if s == "full" else "tab:grey" for s in systems]
            ax.bar(systems, means, yerr=err.T, capsize=3, color=colors)
            ax.set_title(metric, fontsize=9)
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        users = rows[systems[0]]["users"] if systems else 0
        fig.suptitle(f"{population} users ({users}); error bars: bootstrap 95 % over users")
        figs[f"recommender_{population}"] = fig
    imp = m.get("feature_importance")
    if imp:
        order = sorted(imp, key=lambda f: imp[f]["mean_abs_contribution"])
        fig, (ax1, ax2) = new_figure(11, 6, ncols=2)
        ax1.barh(order, [imp[f]["mean_abs_contribution"] for f in order])
        ax1.set(title="mean |contribution| to the score (prior + booster)")
        ax2.barh(order, [imp[f]["gain"] for f in order], color="tab:green")
        ax2.set(title="LightGBM gain (booster only)")
        for ax in (ax1, ax2):
            ax.tick_params(axis="y", labelsize=7)
        figs["recommender_importance"] = fig
    curve = m.get("history_curve")
    if curve:
        buckets = list(curve)
        fig, ax = new_figure(6, 3.6)
        pos = np.arange(len(buckets))
        for system, style in (("content", "s-"), ("cf", "^-"), ("full", "o-")):
            curve_means = np.array([curve[b][system]["mean"] for b in buckets])
            lo = np.array([curve[b][system]["ci95"][0] for b in buckets])
            hi = np.array([curve[b][system]["ci95"][1] for b in buckets])
            ax.plot(pos, curve_means, style, label="hybrid (full)" if system == "full" else system)
            ax.fill_between(pos, lo, hi, alpha=0.15)
        users = [curve[b]["full"]["users"] for b in buckets]
        ax.set(xticks=list(pos), xlabel="clip events before the feed", ylabel="NDCG@10", ylim=(0, 1))
        ax.set_xticklabels([f"{b}\n({n} users)" for b, n in zip(buckets, users, strict=True)], fontsize=8)
        ax.set_title("hand-over from cold to warm (held-out warm users; bands: bootstrap 95 %)", fontsize=9)
        ax.legend(fontsize=8)
        figs["recommender_history_curve"] = fig
    fb = m.get("feedback")
    if fb:
        steps = list(fb)
        fig, ax = new_figure(6, 3.4)
        xs = range(1, len(steps) + 1)
        ax.plot(xs, [fb[s]["moved_in_direction"] for s in steps], "o-", label="moved in the event's direction")
        ax.plot(xs, [fb[s]["feed_changed_share"] for s in steps], "s-", label="share of the page that changed")
        ax.set(xticks=list(xs), xlabel="feedback event", ylim=(0, 1.05), title="feed response to feedback")
        ax.legend(fontsize=8)
        figs["recommender_feedback"] = fig
    return figs
