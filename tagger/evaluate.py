"""``clipfeed tagger eval``: teacher and student side by side on the gold test split.

Quality (exact and fuzzy tag P/R/F1, per pattern, hard cases), agreement, and cost (wall and CPU
milliseconds per query, single and batched; parameters; disk size), all measured in one run on the
same machine so the ratios mean something.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipfeed.records import GoldRow
from clipfeed.text import normalize
from tagger.metrics import agreement, prf
from tagger.types import QueryInput

TagFn = Callable[[Sequence[QueryInput]], list[list[str]]]
TRAVEL_WORDS = ("여행", "travel")


def is_argentina_family(r: GoldRow) -> bool:
    return r.pattern == "entity_travel" and any("아르헨티나" in t or "argentina" in t.lower() for t in r.tags)


def _timed(fn: TagFn, items: Sequence[QueryInput]) -> tuple[list[list[str]], float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(items)
    return out, time.perf_counter() - w0, time.process_time() - c0


def evaluate_model(fn: TagFn, rows: Sequence[GoldRow], single: int = 16) -> dict[str, Any]:
    """Metrics of one tagger (``fn`` maps a batch of inputs to tag lists) on gold rows."""
    items = [QueryInput.of(r.query, r.docs) for r in rows]
    fn(items[:2])  # warm-up: first-call allocations are not per-query cost
    preds, wall, cpu = _timed(fn, items)
    singles_wall = singles_cpu = 0.0
    for it in items[:single]:
        _, w, c = _timed(fn, [it])
        singles_wall += w
        singles_cpu += c
    gold = [r.tags for r in rows]
    fuzzy = prf(gold, preds, fuzzy=True)
    exact = prf(gold, preds, fuzzy=False)
    by_pattern: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_pattern[r.pattern or "?"].append(i)
    per_pattern = {
        p: prf([gold[i] for i in ix], [preds[i] for i in ix], fuzzy=True)["f1"] for p, ix in sorted(by_pattern.items())
    }
    arg = [i for i, r in enumerate(rows) if is_argentina_family(r)]
    nav = [i for i, r in enumerate(rows) if not r.tags]
    n_single = max(1, min(single, len(items)))
    return {
        "f1": fuzzy["f1"],
        "precision": fuzzy["precision"],
        "recall": fuzzy["recall"],
        "f1_exact": exact["f1"],
        "precision_exact": exact["precision"],
        "recall_exact": exact["recall"],
        "per_pattern_f1": per_pattern,
        "hard_cases": {
            "argentina_travel_rows": len(arg),
            "argentina_travel_intent_rate": _share(
                [any(w in normalize(t) for t in preds[i] for w in TRAVEL_WORDS) for i in arg]
            ),
            "navigational_rows": len(nav),
            "navigational_no_tags_rate": _share([not preds[i] for i in nav]),
        },
        "ms_per_query": round(1000 * wall / max(1, len(items)), 3),
        "cpu_ms_per_query": round(1000 * cpu / max(1, len(items)), 3),
        "single_ms_per_query": round(1000 * singles_wall / n_single, 3),
        "single_cpu_ms_per_query": round(1000 * singles_cpu / n_single, 3),
        "rows": len(rows),
        "predictions": preds,
    }


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def dir_size_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return round(total / 1e6, 2)


def side_by_side(teacher: dict[str, Any] | None, student: dict[str, Any] | None) -> dict[str, Any]:
    """The contract JSON: both models, their agreement, and the ratios the issue asks about."""
    out: dict[str, Any] = {}
    if teacher is not None:
        out["teacher"] = {k: v for k, v in teacher.items() if k != "predictions"}
    if student is not None:
        out["student"] = {k: v for k, v in student.items() if k != "predictions"}
    if teacher is not None and student is not None:
        out["agreement"] = agreement(teacher["predictions"], student["predictions"])
        out["f1_ratio"] = round(student["f1"] / teacher["f1"], 4) if teacher["f1"] else None
        out["cpu_speedup"] = (
            round(teacher["cpu_ms_per_query"] / student["cpu_ms_per_query"], 2) if student["cpu_ms_per_query"] else None
        )
        out["wall_speedup"] = (
            round(teacher["ms_per_query"] / student["ms_per_query"], 2) if student["ms_per_query"] else None
        )
    return out
