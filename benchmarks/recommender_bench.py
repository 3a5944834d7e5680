"""Recommender figures: offline quality against every baseline, the real-time bar, feed latency,
training time, and the same CLI path on real YouTube titles.

Run: .venv/bin/python benchmarks/recommender_bench.py [--parts eval,realtime,speed,youtube,big,composition] [--users N]
Every part builds what it needs into a temporary directory (worlds with fixed seeds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from classifier import TopicClassifier, TopicModelConfig, TopicRow, world_training_rows
from classifier import train as train_topic_model
from cli.wiring import Stack, load_stack, train_ranker
from clipfeed.taxonomy import Taxonomy
from clipfeed.world import WorldConfig, build_world
from recommender import ContextUpdater, FeedBuilder, Ranker, UserContext, evaluate, replay
from recommender.candidates import generate
from recommender.config import CandidateConfig, RecommenderConfig
from recommender.evaluate import ratio
from recommender.features import compute
from recommender.offline import feedback_response

HERE = Path(__file__).resolve().parent


def train(stack: Stack) -> tuple[Ranker, dict[str, float]]:
    return train_ranker(stack)


def quality(stack: Stack, ranker: Ranker, max_users: int | None) -> dict[str, Any]:
    res = evaluate(stack.world, stack.catalog, stack.tagging, ranker, stack.cfg, max_users=max_users, progress=False)
    summary: dict[str, Any] = {
        p: {s: {k: v for k, v in m.items() if k != "ndcg@10_ci95"} for s, m in res[p].items()} for p in ("cold", "warm")
    }
    summary["ci95_ndcg@10"] = {p: {s: m["ndcg@10_ci95"] for s, m in res[p].items()} for p in ("cold", "warm")}
    summary["ratios"] = {
        "cold_ndcg_full_over_popularity": round(ratio(res, "cold", "ndcg@10", "full", "popularity"), 2),
        "cold_ndcg_full_over_raw_keywords": round(ratio(res, "cold", "ndcg@10", "full", "raw_keywords"), 3),
        "cold_leak_raw_keywords_over_full": round(ratio(res, "cold", "topic_leak", "raw_keywords", "full"), 2),
        "warm_full_beats_every_baseline": all(
            res["warm"]["full"]["ndcg@10"] > m["ndcg@10"] for s, m in res["warm"].items() if s != "full"
        ),
    }
    summary["setup"] = res["setup"]
    return summary


def realtime(stack: Stack, ranker: Ranker, users: int) -> dict[str, Any]:
    """Does the next feed move in the direction of each of a cold user's first four events?
    (``recommender.offline.feedback_response``, shared with ``clipfeed eval report``.)"""
    builder = FeedBuilder(stack.catalog, ranker, stack.cfg)
    return feedback_response(stack.world, stack.catalog, stack.tagging, builder, users)


def gain_composition(stack: Stack, ranker: Ranker, k: int = 10) -> dict[str, Any]:
    """What the cold users' top-k are made of, by true gain (``clipfeed.world.events.oracle_relevance``:
    3 same topic and entity, 2 same topic, 1.2 same topic and another entity, 1.5 / 0.4 same tier 1,
    x 0.6 in the other language), against the ideal top-k of the same users: where NDCG is lost.
    Two pages: the first k of a 50-deep feed (what ``ranker eval``'s NDCG@10 judges) and a page of
    k alone (its topic cap and exploration slot count against k items, as an app's first page)."""
    from collections import Counter

    from recommender.evaluate import DEPTH, Truth, user_gains
    from recommender.metrics import ndcg_at_k

    truth = Truth.load(stack.world)
    builder = FeedBuilder(stack.catalog, ranker, stack.cfg)
    upd = ContextUpdater(stack.cfg.signals)
    pages: dict[str, Counter[float]] = {"top_of_50": Counter(), f"page_of_{k}": Counter(), "ideal": Counter()}
    ndcg: dict[str, list[float]] = {"top_of_50": [], f"page_of_{k}": []}
    cold = sorted(u for u, t in truth.users.items() if t["cold"] and u in stack.world.users)
    for uid in cold:
        ctx = replay(upd, stack.catalog, stack.tagging, stack.world.users[uid])
        gains = user_gains(stack.catalog, truth, truth.users[uid], set())
        for name, depth in (("top_of_50", DEPTH), (f"page_of_{k}", k)):
            feed = builder.build(ctx, depth, explain=False, user_key=uid).items[:k]
            pages[name].update(round(gains.get(it.clip_id, 0.0), 2) for it in feed)
            ndcg[name].append(ndcg_at_k([it.clip_id for it in feed], gains, k))
        pages["ideal"].update(round(g, 2) for g in sorted(gains.values(), reverse=True)[:k])
    every = sorted(set().union(*pages.values()), reverse=True)
    return {
        "users": len(cold),
        "slots": sum(pages["ideal"].values()),
        f"ndcg@{k}": {name: round(float(np.mean(v)), 4) for name, v in ndcg.items()},
        "by_gain": {str(g): {name: c.get(g, 0) for name, c in pages.items()} for g in every},
    }


def speed(stack: Stack, ranker: Ranker, users: int, cache: Path) -> dict[str, Any]:
    """In-process, 300 candidates per feed, two ways of getting the context: replayed from the
    user's whole log (a user the process has not seen), and parsed from its stored form (what a
    serving process does per request: contexts are updated per event and kept in the store).
    Each then generates the candidates, ranks them and diversifies the page.

    Measured twice in the same process, alternating: the trees walked by LightGBM, and compiled to
    native code by lleaves (what the API serves, ``Ranker.compile``); the feeds are the same."""
    cfg = RecommenderConfig(candidates=CandidateConfig(min_candidates=300, max_candidates=300))
    builder = FeedBuilder(stack.catalog, ranker, cfg)
    upd = ContextUpdater(cfg.signals)
    ids = sorted(stack.world.users)[:users]
    ranker.compile(cache)
    compiled = (ranker.compiled, ranker.compiled_residual)
    times: dict[str, dict[str, list[float]]] = {e: {"replayed": [], "stored": []} for e in ("lightgbm", "compiled")}
    n_cands: list[int] = []
    contexts: dict[str, dict[str, Any]] = {}
    pages: dict[str, list[list[str]]] = {"lightgbm": [], "compiled": []}
    for rep in range(5):  # first pass: warm caches, like a serving process (not counted)
        # the order alternates so that the machine's drift hits both alike
        for engine in ("lightgbm", "compiled") if rep % 2 else ("compiled", "lightgbm"):
            ranker.compiled, ranker.compiled_residual = compiled if engine == "compiled" else (None, None)
            t = times[engine]
            for uid in ids:
                t0 = time.perf_counter()
                ctx = replay(upd, stack.catalog, stack.tagging, stack.world.users[uid])
                feed = builder.build(ctx, 20, explain=False, user_key=uid)
                if rep:
                    t["replayed"].append((time.perf_counter() - t0) * 1000)
                if rep == 1:  # one pass of pages per engine
                    pages[engine].append([it.clip_id for it in feed.items])
                n_cands.append(feed.candidates)
                contexts[uid] = ctx.to_dict()
            for uid in ids:
                t0 = time.perf_counter()
                builder.build(UserContext.from_dict(contexts[uid]), 20, explain=False, user_key=uid)
                if rep:
                    t["stored"].append((time.perf_counter() - t0) * 1000)
    ranker.compiled, ranker.compiled_residual = compiled
    per_call = _predict_call_us(stack, builder, ranker, contexts[ids[0]])

    def figures(values: list[float]) -> dict[str, float]:
        v = sorted(values)
        return {"p50": round(statistics.median(v), 2), "p99": round(v[int(0.99 * (len(v) - 1))], 2)}

    return {
        "feeds": len(times["compiled"]["replayed"]),
        "candidates_mean": round(float(np.mean(n_cands)), 1),
        "compiled_trees": compiled[0] is not None,
        "same_pages": pages["lightgbm"] == pages["compiled"],
        "content_booster_call_us": per_call,
        **{f"{engine}_{how}_ms": figures(t[how]) for engine, t in times.items() for how in ("replayed", "stored")},
    }


def _predict_call_us(stack: Stack, builder: FeedBuilder, ranker: Ranker, raw: dict[str, Any]) -> dict[str, float]:
    """One content-booster call on a real 300-row feature matrix: LightGBM vs the compiled forest
    (best of 5 x 200 calls each, alternating)."""
    ctx = UserContext.from_dict(raw)
    cands = generate(ctx, stack.catalog, builder.cfg.candidates, builder.vectors, collab=builder.collab)
    x = ranker.booster_input(compute(ctx, stack.catalog, builder.vectors, cands.index, collab=builder.collab))
    assert ranker.compiled is not None
    fast = ranker.compiled
    calls: dict[str, Callable[[], Any]] = {
        "lightgbm": lambda: ranker.booster.predict(x, num_threads=1),
        "compiled": lambda: fast.predict(x),
    }
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(5):
        for name, call in calls.items():
            t0 = time.perf_counter()
            for _ in range(200):
                call()
            best[name] = min(best[name], (time.perf_counter() - t0) / 200 * 1e6)
    return {
        "rows": len(x),
        **{k: round(v, 1) for k, v in best.items()},
        "ratio": round(best["lightgbm"] / best["compiled"], 1),
    }


def youtube(tmp: Path, max_users: int | None) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("youtube_world", HERE / "youtube_world.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["youtube_world"] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    out = tmp / "youtube"
    stats = mod.build(out)
    # The shipped topic model knows the sample world's topics; a catalog with its own topics gets
    # its own topic model, trained by the same code on its titles and hashtags.
    tax = Taxonomy.load(out / "taxonomy.tsv")
    rows = [TopicRow(**r) for r in world_training_rows(out, tax, catalog_only=True)]
    net, cfg, figures = train_topic_model(rows, TopicModelConfig(seed=0), None, progress=False)
    TopicClassifier(net, cfg).save(tmp / "youtube_classifier")
    stack = load_stack(out, classifier_dir=tmp / "youtube_classifier")
    ranker, timing = train(stack)
    return {
        "world": {k: stats[k] for k in ("clips", "users", "queries")},
        "training": timing,
        "topic_model_dev_accuracy": round(figures["dev_accuracy"], 3),
        "quality": quality(stack, ranker, max_users),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="eval,realtime,speed,youtube")
    parser.add_argument("--users", type=int, default=None, help="Users per population in the evaluation.")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if parts & {"eval", "realtime", "speed", "composition"}:
            build_world(tmp / "world", WorldConfig(seed=args.seed), progress=False)
            t0 = time.perf_counter()
            stack = load_stack(tmp / "world")
            load_seconds = round(time.perf_counter() - t0, 2)
            ranker, out["training"] = train(stack)
            out["training"]["load_stack_seconds"] = load_seconds
            if "eval" in parts:
                out["quality"] = quality(stack, ranker, args.users)
            if "composition" in parts:
                out["cold_top10_composition"] = gain_composition(stack, ranker)
            if "realtime" in parts:
                out["realtime"] = realtime(stack, ranker, 200)
            if "speed" in parts:
                out["speed"] = speed(stack, ranker, 300, tmp / "compiled")
        if "youtube" in parts:
            out["youtube"] = youtube(tmp, args.users)
        if "big" in parts:
            cfg = WorldConfig(seed=args.seed, n_users=26_000, n_clips=20_000, n_creators=2000)
            t0 = time.perf_counter()
            build_world(tmp / "big", cfg, progress=False)
            t1 = time.perf_counter()
            big = load_stack(tmp / "big")  # validating every record, tagging and filtering every search
            t2 = time.perf_counter()
            _, timing = train(big)
            out["big_training"] = {
                "world_build_seconds": round(t1 - t0, 1),
                "load_stack_seconds": round(t2 - t1, 1),
                **timing,
            }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
