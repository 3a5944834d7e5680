"""Tagger figures, teacher and student measured in the same process on the same machine.

1. Gold test split: teacher vs student F1 (fuzzy and exact), CPU ms per query, the ratios.
2. Student serving: cached lookups (ms/query) and uncached batches of 32 (queries/s) on world queries.
3. Embedded teacher labeling throughput (queries/s) on world queries, through the labeling job.
4. Real queries (../shared/data/magnetic_queries/dev.tsv): student–teacher agreement and 20 random
   examples (skipped with a reason when the data is absent).

Run: .venv/bin/python benchmarks/tagger_bench.py [--world .cache/world-42] [--real 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from cli.tagger import _gold, build_teacher, load_student
from tagger import QueryInput, agreement, evaluate_model, read_label_inputs, run_labeling, side_by_side

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def magnetic(n: int, seed: int) -> list[str]:
    path = DATA / "magnetic_queries" / "dev.tsv"
    if not path.exists():
        return []
    rows = [line.split("\t")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    rows = sorted({r for r in rows if r})
    random.Random(seed).shuffle(rows)
    return rows[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path(".cache/world-42"))
    ap.add_argument("--real", type=int, default=200, help="real Magnetic queries for agreement")
    ap.add_argument("--label", type=int, default=96, help="world queries for the labeling throughput")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    out: dict[str, object] = {"threads": torch.get_num_threads()}

    gold = _gold(None)
    test = [r for r in gold if r.split == "test"]
    student = load_student(None)
    teacher = build_teacher("embedded", "shipped", gold, "cpu", 16)

    def student_fn(items: list[QueryInput]) -> list[list[str]]:
        student.cache.clear()
        return [
            [t.tag for t in ts] for ts in student.tag_batch([i.query for i in items], [list(i.docs) for i in items])
        ]

    def teacher_fn(items: list[QueryInput]) -> list[list[str]]:
        return [[t.tag for t in lab.tags] for lab in teacher.label_batch(items)]

    s = evaluate_model(student_fn, test)
    t = evaluate_model(teacher_fn, test)
    gold_fig = side_by_side(t, s)
    out["gold_test"] = gold_fig

    # serving: world queries, uncached in batches of 32, then the same again from the cache
    inputs = [i for i, _ in read_label_inputs(args.world / "queries.jsonl")]
    random.Random(args.seed).shuffle(inputs)
    sample = inputs[:320]
    student.cache.clear()
    t0 = time.perf_counter()
    for k in range(0, len(sample), 32):
        chunk = sample[k : k + 32]
        student.tag_batch([i.query for i in chunk], [list(i.docs) for i in chunk])
    uncached = time.perf_counter() - t0
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        for i in sample:
            student.tag_batch([i.query], [list(i.docs)])
    cached = time.perf_counter() - t0
    out["student_serving"] = {
        "uncached_batch32_queries_per_s": round(len(sample) / uncached, 1),
        "cached_ms_per_query": round(1000 * cached / (reps * len(sample)), 4),
    }

    # labeling throughput of the embedded (tuned) teacher through the real job
    with tempfile.TemporaryDirectory() as tmp:
        items = [(i, 1) for i in inputs[320 : 320 + args.label]]
        report = run_labeling(items, teacher, Path(tmp), batch_size=16, progress=False).to_dict()
    out["teacher_labeling"] = {
        k: report[k] for k in ("labeled_now", "seconds", "queries_per_s", "prompt_tokens", "completion_tokens")
    }
    out["teacher_labeling"]["abstained"] = report["abstained"]["total"]  # type: ignore[index]

    real = magnetic(args.real, args.seed)
    if real:
        items_r = [QueryInput.of(q) for q in real]
        tp = teacher_fn(items_r)
        sp = student_fn(items_r)
        examples = random.Random(args.seed + 1).sample(range(len(real)), min(20, len(real)))
        out["real_magnetic"] = {
            "queries": len(real),
            "agreement_f1": agreement(tp, sp),
            "exact_same_tags": round(sum(a == b for a, b in zip(tp, sp, strict=True)) / len(real), 4),
            "examples": [{"query": real[i], "teacher": tp[i], "student": sp[i]} for i in sorted(examples)],
        }
    else:
        out["real_magnetic"] = f"skipped: {DATA / 'magnetic_queries'} not present"

    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    g = gold_fig
    print(f"gold test ({len(test)} rows), {out['threads']} threads")
    for who in ("teacher", "student"):
        m = g[who]
        print(
            f"  {who:8s} F1 {m['f1']:.3f} (exact {m['f1_exact']:.3f})  {m['ms_per_query']:.1f} ms/q wall, "
            f"{m['cpu_ms_per_query']:.1f} CPU ms/q, single {m['single_ms_per_query']:.1f} ms"
        )
    print(f"  student/teacher F1 {g['f1_ratio']}, CPU speed-up {g['cpu_speedup']}x, agreement {g['agreement']}")
    print(f"student serving: {out['student_serving']}")
    print(f"teacher labeling: {out['teacher_labeling']}")
    r = out["real_magnetic"]
    if isinstance(r, dict):
        print(
            f"real Magnetic queries: {r['queries']}, agreement F1 {r['agreement_f1']}, same tags {r['exact_same_tags']}"
        )
        for e in r["examples"]:
            print(f"  {e['query']!r}: teacher {e['teacher']} | student {e['student']}")
    else:
        print(r)


if __name__ == "__main__":
    main()
