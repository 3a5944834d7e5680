"""Real data, to prove the topic model is not tuned to the simulator.

Trains on 80 % and evaluates on 20 % (seeded split) of ../shared/data/magnetic_queries/dev.tsv (real
English queries, top-level labels) and ../shared/data/ynat_ko_headlines/dev.tsv (real Korean
headlines, 7 topics), against two baselines fitted in the same run: the majority class and TF-IDF
+ logistic regression (scikit-learn); the code is ``cli.evaluation.classifier_eval``, shared with
``clipfeed eval report``. Then speed of the shipped model: ms per item batched and single, and load
time.

Run: .venv/bin/python benchmarks/classifier_real.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from classifier import TopicClassifier
from cli.evaluation.classifier_eval import load_magnetic, load_ynat, run_real

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def speed() -> dict[str, float]:
    t0 = time.perf_counter()
    clf = TopicClassifier.load()
    load_s = time.perf_counter() - t0
    texts = [
        ("아르헨티나 여행", "이과수 폭포"),
        ("son heung-min goal", ""),
        ("오타니 홈런", ""),
        ("easy pasta recipe", ""),
    ] * 64
    clf.predict(texts[:8])  # warm-up
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        clf.predict(texts)
        runs.append((time.perf_counter() - t) / len(texts) * 1000)
    single = []
    for text, query in texts[:200]:
        t = time.perf_counter()
        clf.predict([(text, query)])
        single.append((time.perf_counter() - t) * 1000)
    single.sort()
    return {
        "load_seconds": round(load_s, 3),
        "ms_per_item_batched_256": round(statistics.median(runs), 4),
        "ms_single_p50": round(single[len(single) // 2], 3),
        "ms_single_p99": round(single[int(len(single) * 0.99)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out: dict[str, object] = {}
    if (DATA / "magnetic_queries" / "dev.tsv").exists():
        out["magnetic_en"] = run_real(load_magnetic(DATA), args.seed)
    else:
        out["magnetic_en"] = f"skipped: {DATA / 'magnetic_queries'} not present"
    if (DATA / "ynat_ko_headlines" / "dev.tsv").exists():
        out["ynat_ko"] = run_real(load_ynat(DATA), args.seed)
    else:
        out["ynat_ko"] = f"skipped: {DATA / 'ynat_ko_headlines'} not present"
    out["speed_shipped_model"] = speed()
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
