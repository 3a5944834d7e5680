"""Evaluation of a topic model: accuracy, macro-F1, per-class F1, calibration, abstention, siblings.

>>> round(expected_calibration_error([0.9, 0.9], [True, False]), 2)
0.4
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipfeed.taxonomy import Taxonomy


def f1_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Per-class F1 over the classes that occur in ``gold``."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    out = {}
    for c in sorted(set(gold)):
        denom = 2 * tp[c] + fp[c] + fn[c]
        out[c] = 2 * tp[c] / denom if denom else 0.0
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - ok[mask].mean())
    return float(ece)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            rows.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(mask.sum()),
                    "confidence": float(conf[mask].mean()),
                    "accuracy": float(ok[mask].mean()),
                }
            )
    return rows


def sibling_confusion(gold: Sequence[str], pred: Sequence[str], taxonomy: Taxonomy) -> float:
    """Share of items predicted as a sibling of their gold topic (same tier 1, other tier 2)."""
    n = wrong = 0
    for g, p in zip(gold, pred, strict=True):
        if g not in taxonomy or p not in taxonomy:
            continue
        n += 1
        if g != p and taxonomy.tier1_of(g) == taxonomy.tier1_of(p):
            wrong += 1
    return wrong / n if n else 0.0


def evaluate(
    gold: Sequence[str],
    pred: Sequence[str],
    confidence: Sequence[float],
    min_confidence: float,
    taxonomy: Taxonomy | None = None,
) -> dict[str, Any]:
    correct = [g == p for g, p in zip(gold, pred, strict=True)]
    per_class = f1_scores(gold, pred)
    out: dict[str, Any] = {
        "n": len(gold),
        "accuracy": float(np.mean(correct)) if correct else 0.0,
        "macro_f1": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "ece": expected_calibration_error(confidence, correct),
        "abstain_rate": float(np.mean([c < min_confidence for c in confidence])) if confidence else 0.0,
        "per_class_f1": {k: round(v, 4) for k, v in per_class.items()},
        "reliability": reliability(confidence, correct),
    }
    if taxonomy is not None:
        out["sibling_confusion"] = sibling_confusion(gold, pred, taxonomy)
    return out


def plot_reliability(rows: list[dict[str, float]], path: Path, title: str) -> None:
    """A reliability diagram (confidence vs accuracy per bin, bar width ~ count) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar([r["confidence"] for r in rows], [r["accuracy"] for r in rows], width=0.08, alpha=0.7, label="accuracy")
    for r in rows:
        ax.annotate(str(r["n"]), (r["confidence"], r["accuracy"]), ha="center", va="bottom", fontsize=7)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.05), title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
