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
from recommender.evaluate import DEPTH, SYSTEMS, EvalRun, Truth, cf_feed, collect, split_time, user_gains
from recommender.features import FEATURES, RequestContext, compute
from recommender.feed import FeedBuilder
from recommender.metrics import bootstrap_ci, coverage, ndcg_at_k
from recommender.pipeline import SearchTagging, WorldData, replay
from recommender.ranker import RESIDUAL_FEATURES
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
    if ranker.residual is not None:  # the hybrid's collaborative residual booster
        res_gain = ranker.residual.feature_importance(importance_type="gain")
        for f, g in zip(RESIDUAL_FEATURES, res_gain, strict=True):
            gain[FEATURES.index(f)] += float(g)
    total = np.zeros(len(FEATURES))
    rows = 0
    for raw in contexts:
        ctx = builder.catalog.view(raw)
        idx = generate(ctx, builder.catalog, builder.cfg.candidates, builder.vectors, collab=builder.collab).index
        if not idx:
            continue
        x = compute(ctx, builder.catalog, builder.vectors, idx, RequestContext(), builder.collab)
        total += np.abs(ranker.contributions(x)[:, :-1]).sum(axis=0)
        rows += len(idx)
    mean_abs = total / max(rows, 1)
    return {
        f: {"gain": round(float(gain[j]), 3), "mean_abs_contribution": round(float(mean_abs[j]), 5)}
        for j, f in enumerate(FEATURES)
    }


HISTORY_BUCKETS = ("0", "1-4", "5-20", "20+")
# how many clip events each bucket's replay keeps (None: all before the split)
_CUTS: dict[str, int | None] = {"0": 0, "1-4": 3, "5-20": 12, "20+": None}
CURVE_SYSTEMS = ("content", "cf", "full")


def history_bucket(clip_events: int) -> str:
    """The history-length bucket of a user with ``clip_events`` clip events.

    >>> [history_bucket(n) for n in (0, 1, 4, 5, 20, 21)]
    ['0', '1-4', '1-4', '5-20', '5-20', '20+']
    """
    return "0" if clip_events == 0 else "1-4" if clip_events <= 4 else "5-20" if clip_events <= 20 else "20+"


def history_curve(
    world: WorldData,
    catalog: CatalogIndex,
    tagging: SearchTagging,
    full: FeedBuilder,
    content: FeedBuilder,
    users: Sequence[str],
    k: int = 10,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """NDCG@k of the content-only, collaborative-only and hybrid systems by the number of clip
    events the user had before the feed (0, 1-4, 5-20, 20+): each warm user in ``users`` is replayed
    as they were after their first 0, 3 and 12 clip events and after all of them before the split
    (searches before the split always count), and judged on the clips they had not seen. ``full``'s
    collaborative model must not have been fitted on ``users`` (a model that saw their later likes
    would flatter the early buckets)."""
    from tqdm import tqdm

    truth = Truth.load(world)
    upd = ContextUpdater(full.cfg.signals)
    split = split_time(world, full.cfg)
    values: dict[str, dict[str, list[float]]] = {b: {s: [] for s in CURVE_SYSTEMS} for b in HISTORY_BUCKETS}
    for uid in tqdm(users, desc="eval: history curve", unit="user", disable=not progress):
        log = world.users.get(uid)
        if log is None:
            continue
        for cut in _CUTS.values():
            ctx = replay(upd, catalog, tagging, log, until=split, max_clip_events=cut)
            bucket = history_bucket(ctx.clip_events)
            if cut is None and bucket != "20+":
                continue  # a short history is already in its own bucket through the cuts
            seen = set(ctx.seen)
            gains = user_gains(catalog, truth, truth.users[uid], seen)
            if not any(g >= 2.0 for g in gains.values()):
                continue
            feeds = {
                "content": [it.clip_id for it in content.build(ctx, DEPTH, explain=False, user_key=uid).items],
                "cf": cf_feed(full.collab, catalog, ctx.liked, seen, DEPTH),
                "full": [it.clip_id for it in full.build(ctx, DEPTH, explain=False, user_key=uid).items],
            }
            for system, feed in feeds.items():
                values[bucket][system].append(ndcg_at_k(feed, gains, k))
    return {
        b: {s: {"users": len(v), **metric_intervals({"ndcg@10": v})["ndcg@10"]} for s, v in values[b].items()}
        for b in HISTORY_BUCKETS
    }


__all__ = [
    "CURVE_SYSTEMS",
    "HISTORY_BUCKETS",
    "METRICS",
    "EvalRun",
    "Truth",
    "collect",
    "feature_importance",
    "feedback_response",
    "history_curve",
    "metric_intervals",
    "split_time",
    "summarise_run",
    "user_gains",
]
