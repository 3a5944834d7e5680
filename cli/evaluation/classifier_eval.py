"""Topic classifier evaluation: per-class F1, confusion among sibling topics, calibration
(reliability), the keep/drop trade-off of the confidence threshold, and real data (Magnetic
queries, KLUE-YNAT headlines) against baselines fitted in the same run.

>>> curve = threshold_curve([0.9, 0.6, 0.3], [True, False, True], [0.5])
>>> curve[0]["kept_share"], curve[0]["accuracy_kept"], curve[0]["correct_dropped_share"]
(0.6667, 0.5, 0.5)
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import TopicClassifier, TopicModelConfig, TopicRow, train, world_eval_rows
from classifier.data import gold_rows
from classifier.metrics import evaluate
from clipfeed.taxonomy import Taxonomy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 0.95, 20))


def eval_sets(world: Path, taxonomy: Taxonomy) -> dict[str, list[TopicRow]]:
    """The world's held-out searches (tier-2 labels from its truth) and its gold test split."""
    return {
        "world_heldout": [TopicRow(**r) for r in world_eval_rows(world, taxonomy)],
        "gold_test": [TopicRow(**r) for r in gold_rows(world / "gold.jsonl", taxonomy, {"test"})],
    }


def predict(clf: TopicClassifier, rows: Sequence[TopicRow]) -> tuple[list[str], list[float]]:
    probs = clf.probabilities([(r.text, r.query) for r in rows])
    conf, idx = probs.max(dim=1)
    return [clf.cfg.labels[int(i)] for i in idx], [float(c) for c in conf]


def sibling_confusions(
    gold: Sequence[str], pred: Sequence[str], taxonomy: Taxonomy, top: int = 12
) -> list[dict[str, Any]]:
    """The most frequent gold -> predicted pairs that are siblings (same tier 1, other tier 2)."""
    pairs = Counter(
        (g, p)
        for g, p in zip(gold, pred, strict=True)
        if g != p and g in taxonomy and p in taxonomy and taxonomy.tier1_of(g) == taxonomy.tier1_of(p)
    )
    n_gold = Counter(gold)
    return [
        {
            "tier1": taxonomy.name(taxonomy.tier1_of(g)),
            "gold": taxonomy.name(g),
            "predicted": taxonomy.name(p),
            "count": n,
            "share_of_gold": round(n / n_gold[g], 4),
        }
        for (g, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ]


def sibling_matrix(gold: Sequence[str], pred: Sequence[str], taxonomy: Taxonomy, tier1: str) -> dict[str, Any]:
    """Confusion matrix among the tier-2 topics of ``tier1`` (rows: gold, columns: predicted;
    the last column counts predictions outside the tier-1 group)."""
    labels = sorted({g for g in gold if g in taxonomy and taxonomy.tier1_of(g) == tier1})
    ix = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        if g in ix:
            m[ix[g], ix.get(p, len(labels))] += 1
    return {"tier1": taxonomy.name(tier1), "labels": [taxonomy.name(lab) for lab in labels], "matrix": m.tolist()}


def most_confused_tier1(gold: Sequence[str], pred: Sequence[str], taxonomy: Taxonomy) -> str | None:
    """The tier-1 topic with the most sibling confusions (None when there are none)."""
    c = Counter(
        taxonomy.tier1_of(g)
        for g, p in zip(gold, pred, strict=True)
        if g != p and g in taxonomy and p in taxonomy and taxonomy.tier1_of(g) == taxonomy.tier1_of(p)
    )
    return c.most_common(1)[0][0] if c else None


def threshold_curve(
    confidence: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, float]]:
    """For each confidence threshold of the filter: the share of tags kept, the accuracy of the kept
    ones, and the share of correctly classified tags that would be dropped."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    out = []
    for t in thresholds:
        keep = conf >= t
        out.append(
            {
                "threshold": float(t),
                "kept_share": round(float(keep.mean()) if len(conf) else 0.0, 4),
                "accuracy_kept": round(float(ok[keep].mean()) if keep.any() else 0.0, 4),
                "correct_dropped_share": round(float((~keep & ok).sum() / max(1, ok.sum())), 4),
            }
        )
    return out


def score(clf: TopicClassifier, rows: Sequence[TopicRow], taxonomy: Taxonomy) -> dict[str, Any]:
    """Accuracy, macro/per-class F1, ECE, reliability, abstention, sibling confusion, threshold curve."""
    preds, conf = predict(clf, rows)
    gold = [r.label for r in rows]
    m = evaluate(gold, preds, conf, clf.cfg.filter.min_confidence, taxonomy)
    m["per_class_f1"] = {f"{k} {taxonomy.name(k)}" if k in taxonomy else k: v for k, v in m["per_class_f1"].items()}
    m["sibling_pairs"] = sibling_confusions(gold, preds, taxonomy)
    worst = most_confused_tier1(gold, preds, taxonomy)
    m["sibling_matrix"] = sibling_matrix(gold, preds, taxonomy, worst) if worst else None
    m["threshold_curve"] = threshold_curve(conf, [g == p for g, p in zip(gold, preds, strict=True)])
    m["min_confidence"] = clf.cfg.filter.min_confidence
    return m


# Real data ------------------------------------------------------------------------------------


def load_magnetic(shared_data: Path) -> list[TopicRow]:
    """Real English web queries with their top-level category (Magnetic, ``dev.tsv``)."""
    rows = []
    for line in (shared_data / "magnetic_queries" / "dev.tsv").read_text(encoding="utf-8").splitlines():
        cells = line.split("\t")
        if len(cells) >= 3 and cells[0].strip():
            rows.append(TopicRow(text=cells[0][:512], label=cells[2].split("\\")[0].strip()))
    return rows


def load_ynat(shared_data: Path) -> list[TopicRow]:
    """Real Korean news headlines with their topic (KLUE-YNAT, ``dev.tsv``)."""
    rows = []
    for line in (shared_data / "ynat_ko_headlines" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) == 2 and cells[0].strip():
            rows.append(TopicRow(text=cells[0][:512], label=cells[1].strip()))
    return rows


REAL_SETS = {"magnetic_en": ("magnetic_queries", load_magnetic), "ynat_ko": ("ynat_ko_headlines", load_ynat)}


def _quick(gold: list[str], pred: list[str]) -> dict[str, float]:
    m = evaluate(gold, pred, [1.0] * len(gold), 0.0)
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}


def baselines(train_rows: list[TopicRow], test_rows: list[TopicRow]) -> dict[str, dict[str, float]]:
    """The majority class and TF-IDF (word 1-2-grams) + logistic regression (scikit-learn)."""
    gold = [r.label for r in test_rows]
    majority = Counter(r.label for r in train_rows).most_common(1)[0][0]
    out = {"majority": _quick(gold, [majority] * len(gold))}
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # scikit-learn comes with the test extra
        return out
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform([r.text for r in train_rows])
    lr = LogisticRegression(max_iter=2000, C=10.0)
    lr.fit(x, [r.label for r in train_rows])
    out["tfidf_logreg"] = _quick(gold, list(lr.predict(vec.transform([r.text for r in test_rows]))))
    return out


def run_real(rows: list[TopicRow], seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    """80/20 seeded split; the baselines and a clipfeed topic model trained on the same 80 %."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    cut = int(0.8 * len(rows))
    train_rows, test_rows = rows[:cut], rows[cut:]
    result: dict[str, Any] = {"train": len(train_rows), "test": len(test_rows), "labels": len({r.label for r in rows})}
    result.update(baselines(train_rows, test_rows))
    cfg = TopicModelConfig(taxonomy_labels=False, seed=seed, n_buckets=1 << 17, dim=64)
    t0 = time.perf_counter()
    net, cfg, figures = train(train_rows, cfg, None, progress=False)
    clf = TopicClassifier(net, cfg)
    preds, conf = predict(clf, test_rows)
    m = evaluate([r.label for r in test_rows], preds, conf, 0.0)
    result["clipfeed"] = {
        "accuracy": round(m["accuracy"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "ece": round(m["ece"], 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "parameters": figures["parameters"],
    }
    return result


def real_data(shared_data: Path, seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (folder, loader) in REAL_SETS.items():
        if (shared_data / folder / "dev.tsv").exists():
            out[name] = run_real(loader(shared_data), seed, limit)
        else:
            out[name] = {"skipped": f"{shared_data / folder} not present"}
    return out


def run(
    world: Path, shared_data: Path, seed: int = 0, real_rows: int | None = None, real: bool = True
) -> dict[str, Any]:
    """The whole classifier section (what the report and ``02_classifier.ipynb`` compute)."""
    clf = TopicClassifier.load()
    tax = Taxonomy.load(world / "taxonomy.tsv")
    out: dict[str, Any] = {name: score(clf, rows, tax) for name, rows in eval_sets(world, tax).items()}
    out["real"] = real_data(shared_data, seed, real_rows) if real else {"skipped": "not asked for"}
    return out


def figures(m: dict[str, Any]) -> dict[str, Figure]:
    """Per-class F1, the sibling confusion matrix, reliability diagrams, threshold trade-off, real data."""
    from cli.evaluation.common import new_figure

    figs: dict[str, Figure] = {}
    sets = [s for s in ("world_heldout", "gold_test") if s in m]
    for s in sets:
        per = m[s]["per_class_f1"]
        fig, ax = new_figure(7, max(3.0, 0.18 * len(per)))
        names = sorted(per, key=per.__getitem__)
        ax.barh(names, [per[n] for n in names])
        ax.tick_params(axis="y", labelsize=6)
        ax.set(xlim=(0, 1), xlabel="F1", title=f"per-class F1: {s}")
        figs[f"classifier_f1_{s}"] = fig
        sib = m[s].get("sibling_matrix")
        if sib:
            mat = np.asarray(sib["matrix"], dtype=float)
            fig, ax = new_figure(5.5, 4.5)
            ax.imshow(mat / np.maximum(mat.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, int(v), ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(sib["labels"]) + 1), [*sib["labels"], "(other)"], rotation=40, ha="right")
            ax.set_yticks(range(len(sib["labels"])), sib["labels"])
            ax.set(xlabel="predicted", ylabel="gold", title=f"siblings in {sib['tier1']}: {s}")
            figs[f"classifier_siblings_{s}"] = fig
    if sets:
        fig, axes = new_figure(4.5 * len(sets), 4.2, ncols=len(sets))
        axes = np.atleast_1d(axes)
        for ax, s in zip(axes, sets, strict=True):
            rows = m[s]["reliability"]
            ax.plot([0, 1], [0, 1], "--", color="grey")
            ax.bar([r["confidence"] for r in rows], [r["accuracy"] for r in rows], width=0.08, alpha=0.7)
            ax.set(
                xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.05), title=f"{s}: ECE {m[s]['ece']:.3f}"
            )
        figs["classifier_reliability"] = fig
        fig, axes = new_figure(4.5 * len(sets), 3.6, ncols=len(sets))
        axes = np.atleast_1d(axes)
        for ax, s in zip(axes, sets, strict=True):
            curve = m[s]["threshold_curve"]
            ts = [c["threshold"] for c in curve]
            for key in ("kept_share", "accuracy_kept", "correct_dropped_share"):
                ax.plot(ts, [c[key] for c in curve], label=key)
            ax.axvline(m[s]["min_confidence"], color="grey", ls=":", label="configured")
            ax.set(xlabel="min confidence", ylim=(0, 1.02), title=f"keep/drop trade-off: {s}")
            ax.legend(fontsize=7)
        figs["classifier_thresholds"] = fig
    real = {k: v for k, v in m.get("real", {}).items() if isinstance(v, dict) and "clipfeed" in v}
    if real:
        fig, ax = new_figure(6, 3.4)
        systems = ("majority", "tfidf_logreg", "clipfeed")
        for k, sysname in enumerate(systems):
            vals = [real[d].get(sysname, {}).get("macro_f1", 0.0) for d in real]
            ax.bar([i + (k - 1) * 0.27 for i in range(len(real))], vals, 0.27, label=sysname)
        ax.set(xticks=range(len(real)), xticklabels=list(real), ylim=(0, 1), ylabel="macro-F1", title="real data")
        ax.legend()
        figs["classifier_real"] = fig
    return figs
