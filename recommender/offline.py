"""Offline diagnostics beyond the mean metrics: per-user values with bootstrap intervals, how a feed
responds to the first feedback events, and which features drive the ranker's scores.

The functions read the world's ground truth (``truth/``) through :class:`~recommender.evaluate.Truth`
only to simulate reactions and judge feeds; the feeds themselves never see it.

>>> ci = metric_intervals({"ndcg@10": [0.5, 0.7, 0.9]})
>>> ci["ndcg@10"]["mean"], ci["ndcg@10"]["ci95"][0] <= 0.7 <= ci["ndcg@10"]["ci95"][1]
(0.7, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recommender.candidates import generate
from recommender.catalog import CatalogIndex
from recommender.evaluate import SYSTEMS, EvalRun, Truth, collect, split_time, user_gains
from recommender.features import FEATURES, RequestContext, compute
from recommender.feed import FeedBuilder
from recommender.metrics import bootstrap_ci, coverage
from recommender.pipeline import SearchTagging, WorldData, replay
from recommender.signals import ContextUpdater, UserContext

METRICS = ("ndcg@10", "map@10", "recall@50", "diversity", "novelty", "topic_leak")


def metric_intervals(
    values: Mapping[str, Sequence[float]], n: int = 1000, seed: int = 0, digits: int = 4
) -> dict[str, dict[str, Any]]:
    """Mean and percentile-bootstrap 95 % interval (resampling users) of each per-user metric."""
    out: dict[str, dict[str, Any]] = {}
    for name, vals in values.items():
        lo, hi = bootstrap_ci(vals, n=n, seed=seed)
        mean = float(np.mean(vals)) if len(vals) else 0.0
        out[name] = {"mean": round(mean, digits), "ci95": [round(lo, digits), round(hi, digits)]}
    return out


def summarise_run(run: EvalRun, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every population x system: each metric's mean and bootstrap interval, coverage, user count."""
    out: dict[str, Any] = {}
    for population, systems in run.per_user.items():
        rows: dict[str, Any] = {}
        for system in SYSTEMS:
            per = systems.get(system, {})
            row: dict[str, Any] = {"users": len(per.get("ndcg@10", []))}
            row.update(metric_intervals(per, n_boot, seed))
            row["coverage"] = {"mean": round(coverage(run.feeds[population][system], run.catalog_size), 4)}
            rows[system] = row
        out[population] = rows
    return out


def feedback_response(
    world: WorldData,
    catalog: CatalogIndex,
    tagging: SearchTagging,
    builder: FeedBuilder,
    users: int = 200,
    steps: int = 4,
    limit: int = 10,
) -> dict[str, dict[str, float]]:
    """Cold users react to the top clips of their feed like the world's users would (a meaningful
    watch when the clip is relevant to their latent interests, a skip otherwise); after each of the
    first ``steps`` events, does the next feed move in that direction (the clip is gone and its
    topic's share rose after a watch, did not rise after a skip), and how much of the page changed?"""
    truth = Truth.load(world)
    upd = ContextUpdater(builder.cfg.signals)
    cold = sorted(u for u, t in truth.users.items() if t["cold"] and u in world.users)[:users]
    moved = [[0, 0] for _ in range(steps)]
    changed = [0.0] * steps
    for uid in cold:
        ctx = replay(upd, catalog, tagging, world.users[uid])
        gains = user_gains(catalog, truth, truth.users[uid], set())
        feed = builder.build(ctx, limit, explain=False, user_key=uid)
        if not feed.items:
            continue
        ts = ctx.updated_at + 60
        for step in range(steps):
            top = feed.items[step % len(feed.items)]
            i = catalog.pos[top.clip_id]
            topic = catalog.topic[i]
            liked = gains.get(top.clip_id, 0.0) >= 2.0
            share_before = sum(it.topics[0] == topic for it in feed.items)
            upd.on_clip_event(ctx, "impression", top.clip_id, topic, catalog.creator[i], ts)
            if liked:
                upd.on_clip_event(ctx, "watch", top.clip_id, topic, catalog.creator[i], ts + 1, 0.9)
            else:
                upd.on_clip_event(ctx, "skip", top.clip_id, topic, catalog.creator[i], ts + 1)
            new = builder.build(ctx, limit, explain=False, user_key=uid)
            share_after = sum(it.topics[0] == topic for it in new.items)
            gone = top.clip_id not in {it.clip_id for it in new.items}
            ok = gone and (share_after >= share_before - 1 if liked else share_after <= share_before)
            moved[step][0] += int(ok)
            moved[step][1] += 1
            before_ids = {it.clip_id for it in feed.items}
            changed[step] += 1 - len(before_ids & {it.clip_id for it in new.items}) / limit
            feed, ts = new, ts + 60
    return {
        f"after_event_{s + 1}": {
            "moved_in_direction": round(m[0] / max(m[1], 1), 3),
            "feed_changed_share": round(changed[s] / max(m[1], 1), 3),
        }
        for s, m in enumerate(moved)
    }


def feature_importance(builder: FeedBuilder, contexts: Sequence[UserContext]) -> dict[str, dict[str, float]]:
    """Per feature: LightGBM gain importance of the booster, and the mean absolute contribution to
    the final score (the prior's weight x value plus the booster's ``pred_contrib``) over every
    candidate of ``contexts``. Empty without a trained ranker."""
    ranker = builder.ranker
    if ranker is None:
        return {}
    gain = np.asarray(ranker.booster.feature_importance(importance_type="gain"), dtype=float)
    total = np.zeros(len(FEATURES))
    rows = 0
    for raw in contexts:
        ctx = builder.catalog.view(raw)
        idx = generate(ctx, builder.catalog, builder.cfg.candidates, builder.vectors).index
        if not idx:
            continue
        x = compute(ctx, builder.catalog, builder.vectors, idx, RequestContext())
        total += np.abs(ranker.contributions(x)[:, :-1]).sum(axis=0)
        rows += len(idx)
    mean_abs = total / max(rows, 1)
    return {
        f: {"gain": round(float(gain[j]), 3), "mean_abs_contribution": round(float(mean_abs[j]), 5)}
        for j, f in enumerate(FEATURES)
    }


__all__ = [
    "METRICS",
    "EvalRun",
    "Truth",
    "collect",
    "feature_importance",
    "feedback_response",
    "metric_intervals",
    "split_time",
    "summarise_run",
    "user_gains",
]
