"""Real data, to prove the topic model is not tuned to the simulator.

Trains on 80 % and evaluates on 20 % (seeded split) of ../shared/data/magnetic_queries/dev.tsv (real
English queries, top-level labels) and ../shared/data/ynat_ko_headlines/dev.tsv (real Korean
headlines, 7 topics), against two baselines fitted in the same run: the majority class and TF-IDF
+ logistic regression (scikit-learn). Then speed of the shipped model: ms per item batched and
single, and load time.

Run: .venv/bin/python benchmarks/classifier_real.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from classifier import TopicClassifier, TopicModelConfig, TopicRow, train
from classifier.metrics import evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_magnetic() -> list[TopicRow]:
    rows = []
    for line in (DATA / "magnetic_queries" / "dev.tsv").read_text(encoding="utf-8").splitlines():
        cells = line.split("\t")
        if len(cells) >= 3 and cells[0].strip():
            rows.append(TopicRow(text=cells[0][:512], label=cells[2].split("\\")[0].strip()))
    return rows


def load_ynat() -> list[TopicRow]:
    rows = []
    for line in (DATA / "ynat_ko_headlines" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) == 2 and cells[0].strip():
            rows.append(TopicRow(text=cells[0][:512], label=cells[1].strip()))
    return rows


def baselines(train_rows: list[TopicRow], test_rows: list[TopicRow]) -> dict[str, dict[str, float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    gold = [r.label for r in test_rows]
    majority = Counter(r.label for r in train_rows).most_common(1)[0][0]
    out = {"majority": _score(gold, [majority] * len(gold))}
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform([r.text for r in train_rows])
    lr = LogisticRegression(max_iter=2000, C=10.0)
    lr.fit(x, [r.label for r in train_rows])
    out["tfidf_logreg"] = _score(gold, list(lr.predict(vec.transform([r.text for r in test_rows]))))
    return out


def _score(gold: list[str], pred: list[str]) -> dict[str, float]:
    m = evaluate(gold, pred, [1.0] * len(gold), 0.0)
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def run_dataset(name: str, rows: list[TopicRow], seed: int) -> dict[str, object]:
    random.Random(seed).shuffle(rows)
    cut = int(0.8 * len(rows))
    train_rows, test_rows = rows[:cut], rows[cut:]
    result: dict[str, object] = {"train": len(train_rows), "test": len(test_rows)}
    result.update(baselines(train_rows, test_rows))
    cfg = TopicModelConfig(taxonomy_labels=False, seed=seed, n_buckets=1 << 17, dim=64)
    t0 = time.perf_counter()
    net, cfg, figures = train(train_rows, cfg, None, progress=False)
    clf = TopicClassifier(net, cfg)
    probs = clf.probabilities([(r.text, "") for r in test_rows])
    conf, idx = probs.max(dim=1)
    m = evaluate([r.label for r in test_rows], [cfg.labels[int(i)] for i in idx], conf.tolist(), 0.0)
    result["clipfeed"] = {
        "accuracy": round(m["accuracy"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "ece": round(m["ece"], 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "parameters": figures["parameters"],
    }
    return result


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
        out["magnetic_en"] = run_dataset("magnetic", load_magnetic(), args.seed)
    else:
        out["magnetic_en"] = f"skipped: {DATA / 'magnetic_queries'} not present"
    if (DATA / "ynat_ko_headlines" / "dev.tsv").exists():
        out["ynat_ko"] = run_dataset("ynat", load_ynat(), args.seed)
    else:
        out["ynat_ko"] = f"skipped: {DATA / 'ynat_ko_headlines'} not present"
    out["speed_shipped_model"] = speed()
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
