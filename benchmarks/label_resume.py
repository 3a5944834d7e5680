"""A 10,000-query labeling run that is killed halfway (SIGKILL) and resumed without relabeling.

The embedded Gemma teacher labels about 2 queries/s on 2 cores (see tagger_bench.py), so a
10,000-query run would take over an hour; this run uses the shipped student as the labeling
backend (same job, same cache, same prompts' user turns) so the kill/resume behaviour is measured
at full size in minutes. Queries: the unique searches of a sample world, topped up with real
Magnetic queries when ../shared/data is present, else with a second world.

Run: .venv/bin/python benchmarks/label_resume.py [--n 10000] [--out .cache/label-resume]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

CHILD = """
import sys, json
sys.path.insert(0, {root!r})
from pathlib import Path
from cli.tagger import _gold, load_student
from tagger import StudentBackend
from tagger import read_label_inputs, run_labeling
from tagger import Teacher, TeacherConfig
inputs = read_label_inputs({queries!r})
teacher = Teacher(StudentBackend(load_student(None)), [r for r in _gold(None) if r.split == "train"],
                  TeacherConfig(shots=0, instructions=False, retries=1))
report = run_labeling(inputs, teacher, Path({out!r}), batch_size=64, progress=False)
print(json.dumps(report.to_dict()))
"""


def build_queries(path: Path, n: int) -> int:
    from clipfeed.world import WorldConfig, build_world

    lines: list[str] = []
    seen: set[str] = set()
    for seed in (42, 8, 9, 10):
        world = path.parent / f"world-{seed}"
        if not (world / "queries.jsonl").exists():
            build_world(world, WorldConfig(seed=seed), progress=False)
        for line in (world / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            key = json.dumps([d["query"].lower(), [x["title"] for x in d["clicked_docs"]]], ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                lines.append(json.dumps({"query": d["query"], "docs": [x["title"] for x in d["clicked_docs"]]}))
        magnetic = DATA / "magnetic_queries" / "dev.tsv"
        if seed == 42 and magnetic.exists():
            for row in magnetic.read_text(encoding="utf-8").splitlines():
                q = row.split("\t")[0].strip()
                if q and q.lower() not in seen and len(q) <= 200:
                    seen.add(q.lower())
                    lines.append(json.dumps({"query": q, "docs": []}))
        if len(lines) >= n:
            break
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return min(n, len(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "label-resume")
    args = ap.parse_args()
    work: Path = args.out
    shutil.rmtree(work / "job", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    queries = work / "queries.jsonl"
    n = build_queries(queries, args.n)
    script = CHILD.format(root=str(ROOT), queries=str(queries), out=str(work / "job"))
    cache = work / "job" / "cache.jsonl"

    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    while True:  # kill it once about half the labels are in the cache
        time.sleep(0.5)
        done = sum(1 for _ in cache.open(encoding="utf-8")) if cache.exists() else 0
        if done >= n // 2 or child.poll() is not None:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    first = time.perf_counter() - t0
    cached_at_kill = sum(1 for _ in cache.open(encoding="utf-8"))

    t1 = time.perf_counter()
    resumed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    second = time.perf_counter() - t1
    labels = (work / "job" / "labels.jsonl").read_text(encoding="utf-8").splitlines()
    keys = {json.dumps([json.loads(x)["query"], json.loads(x)["docs"]], ensure_ascii=False) for x in labels}
    rerun = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    again = json.loads(rerun.stdout.strip().splitlines()[-1])
    print(f"queries: {n} unique inputs ({report['unique']} after normalisation)")
    print(f"killed after {first:.1f} s with {cached_at_kill} labels cached")
    relabeled = cached_at_kill - report["from_cache"]  # labels cached before the kill but made again
    print(
        f"resumed: labeled {report['labeled_now']} new, {report['from_cache']} from cache in {second:.1f} s "
        f"({report['queries_per_s']} queries/s); relabeled: {relabeled}"
    )
    print(f"labels.jsonl: {len(labels)} lines, {len(keys)} distinct inputs; abstained {report['abstained']['total']}")
    print(f"third run: labeled {again['labeled_now']} new, {again['from_cache']} from cache")


if __name__ == "__main__":
    main()
