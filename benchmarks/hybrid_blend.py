"""Is there anything for the collaborative signals to add? A direct blend test on warm users.

For each warm user (context before the evaluation split), the candidates are ranked by the
content-only ranker's score plus λ x one standardised collaborative feature (``cf_score``,
``coengage``, ``liked_sim``), λ in a grid; NDCG@10 against the world's ground truth is printed per
(feature, λ). If no λ > 0 beats λ = 0, no blend of that feature can help on this world, whatever the
ranker learns. The ranking is the raw score order (no diversity caps or exploration), so the
absolute NDCG is higher than the feed's; compare rows with each other.

Run: .venv/bin/python benchmarks/hybrid_blend.py [--world .cache/world] [--users 400] [--json-out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cli.wiring import fit_collab, load_stack, train_ranker
from recommender.candidates import TagVectorCache, generate
from recommender.evaluate import Truth, user_gains
from recommender.features import COL, compute
from recommender.metrics import ndcg_at_k
from recommender.pipeline import replay
from recommender.ranker import COLLAB_FEATURES
from recommender.signals import ContextUpdater

LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path(".cache/world"))
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    stack = load_stack(args.world, progress=True)
    content, _ = train_ranker(stack, collab=False, progress=True)
    collab = fit_collab(stack)
    truth = Truth.load(stack.world)
    upd = ContextUpdater(stack.cfg.signals)
    vectors = TagVectorCache(stack.catalog)
    warm = sorted(u for u, t in truth.users.items() if not t["cold"] and u in stack.world.users)[: args.users]
    ndcg: dict[tuple[str, float], list[float]] = {}
    for uid in warm:
        ctx = stack.catalog.view(replay(upd, stack.catalog, stack.tagging, stack.world.users[uid], until=stack.split))
        gains = user_gains(stack.catalog, truth, truth.users[uid], set(ctx.seen))
        if not any(g >= 2 for g in gains.values()):
            continue
        idx = generate(ctx, stack.catalog, stack.cfg.candidates, vectors, collab=collab).index
        x = compute(ctx, stack.catalog, vectors, idx, None, collab)
        base = content.predict(x)  # the content ranker ignores the collaborative columns
        for name in COLLAB_FEATURES:
            z = x[:, COL[name]]
            z = (z - z.mean()) / (z.std() + 1e-9)
            for lam in LAMBDAS:
                order = np.argsort(-(base + lam * z), kind="stable")
                ranked = [stack.catalog.ids[idx[j]] for j in order]
                ndcg.setdefault((name, lam), []).append(ndcg_at_k(ranked, gains, 10))
    users = len(next(iter(ndcg.values()), []))
    print(f"warm users judged: {users}; NDCG@10 of content score + λ x standardised feature (raw score order)")
    print("| feature | " + " | ".join(f"λ={lam:g}" for lam in LAMBDAS) + " |")
    print("|---|" + "---|" * len(LAMBDAS))
    table = {}
    for name in COLLAB_FEATURES:
        row = [float(np.mean(ndcg[(name, lam)])) for lam in LAMBDAS]
        table[name] = dict(zip([str(lam) for lam in LAMBDAS], row, strict=True))
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"users": users, "ndcg@10": table}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
