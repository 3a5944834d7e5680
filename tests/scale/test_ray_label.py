"""Labeling and tagging on a local Ray cluster: the same output as the local job, and no label lost or
duplicated when a worker is killed mid-job or the driver fails and is run again."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from scale.labeling import label_on_ray as ray_label
from scale.labeling import tag_on_ray
from tagger.label import LabelJob, read_label_inputs, run_labeling
from tests.scale.fakes import rule_labeler, word_tagger

pytestmark = pytest.mark.slow  # each Ray job costs seconds of start-up on 2 cores

PLACES = [f"place{i}" for i in range(50)] + ["파타고니아", "이과수", "볼리비아", "Chile", "Lisbon"]
THINGS = ["travel", "visa", "food", "hotel", "hiking", "login", "weather", "festival", "tour", "beach"]


def make_shards(tmp: Path, n: int) -> tuple[list[Path], Path]:
    """``n`` distinct searches (with repeats and spelling variants) in two JSONL shards and one
    Parquet shard, and the same lines concatenated into one file for the local job."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for i in range(n):
        q = f"{PLACES[i % len(PLACES)]} {THINGS[(i // len(PLACES)) % len(THINGS)]} {i // (len(PLACES) * len(THINGS))}"
        rows.append({"query": q, "docs": [f"doc {i % 7}"] if i % 3 else []})
    rows += [{"query": r["query"].upper() + "  ", "docs": r["docs"]} for r in rows[::5]]  # normalised repeats
    a, b, c = rows[: len(rows) // 3], rows[len(rows) // 3 : 2 * len(rows) // 3], rows[2 * len(rows) // 3 :]
    tmp.mkdir(parents=True, exist_ok=True)
    shards = [tmp / "s0.jsonl", tmp / "s1.parquet", tmp / "s2.jsonl"]
    shards[0].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in a), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(b), shards[1])
    shards[2].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in c), encoding="utf-8")
    whole = tmp / "all.jsonl"
    whole.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return shards, whole


def local_labels(whole: Path, out: Path, **job: Any) -> tuple[dict[str, Any], bytes]:
    report = run_labeling(read_label_inputs(whole), rule_labeler(), out, progress=False, **job)
    return report.to_dict(), (out / "labels.jsonl").read_bytes()


SAME = ("queries", "unique", "after_cap", "kept", "patterns", "abstained", "fingerprint", "teacher")


def test_2000_queries_through_actors_match_the_local_job(ray_cluster: Any, tmp_path: Path) -> None:
    shards, whole = make_shards(tmp_path / "in", 2000)
    want_report, want = local_labels(whole, tmp_path / "local", batch_size=32)
    report = ray_label(shards, LabelJob(tmp_path / "ray", batch_size=32, progress=False), rule_labeler, workers=2)
    got = report.to_dict()
    assert got["kept"] == 2000 and got["labeled_now"] == 2000
    assert {k: got[k] for k in SAME} == {k: want_report[k] for k in SAME}
    assert (tmp_path / "ray" / "labels.jsonl").read_bytes() == want
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ray" / "labels")
    assert table.num_rows == 2000 and len(set(table.column("key").to_pylist())) == 2000
    engine = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert engine["engine"] == "ray" and engine["workers"] == 2
    # the actors' cache shards are folded into the local job's cache: each label once
    assert not list((tmp_path / "ray" / "cache.d").glob("*.jsonl"))
    cache = _lines(tmp_path / "ray" / "cache.jsonl")
    assert len({c["key"] for c in cache}) == len(cache) == 2000


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(ray_cluster: Any, tmp_path: Path) -> None:
    shards, whole = make_shards(tmp_path / "in", 600)
    job = {"batch_size": 16, "max_share": 0.2}
    _, want = local_labels(whole, tmp_path / "local", **job)
    marker = tmp_path / "killed"
    factory = partial(rule_labeler, die_at=4, marker=str(marker))
    report = ray_label(shards, LabelJob(tmp_path / "ray", progress=False, **job), factory, workers=2)
    assert marker.exists(), "the worker was never killed"
    rows = _lines(tmp_path / "ray" / "labels.jsonl")
    assert len({(r["query"], tuple(r["docs"])) for r in rows}) == len(rows) == report.kept
    assert (tmp_path / "ray" / "labels.jsonl").read_bytes() == want
    cache = _lines(tmp_path / "ray" / "cache.jsonl")
    assert len({c["key"] for c in cache}) == len(cache) == report.kept  # compacted: each key once


def test_a_failed_driver_run_resumes_from_the_cache(ray_cluster: Any, tmp_path: Path) -> None:
    shards, whole = make_shards(tmp_path / "in", 600)
    _, want = local_labels(whole, tmp_path / "local", batch_size=16)
    out = tmp_path / "ray"
    with pytest.raises(Exception, match="teacher went away"):
        ray_label(shards, LabelJob(out, batch_size=16, progress=False), partial(rule_labeler, raise_at=4), workers=2)
    # (Ray may leave one of the failed run's actors holding its CPU for a while, its kill RPC having
    # failed: the rerun must not wait for it, so actor pools start with what is free)
    done = sum(len(p.read_text().splitlines()) for p in (out / "cache.d").glob("*.jsonl"))
    assert 0 < done < 600
    report = ray_label(shards, LabelJob(out, batch_size=16, progress=False), rule_labeler, workers=2)
    assert report.from_cache == done and report.labeled_now == 600 - done
    assert (out / "labels.jsonl").read_bytes() == want


def test_tagging_a_file_on_ray_matches_the_local_tagger(ray_cluster: Any, tmp_path: Path) -> None:
    shards, whole = make_shards(tmp_path / "in", 300)
    items = [i for i, _ in read_label_inputs(whole)]
    tags = word_tagger().tag_batch([i.query for i in items], [list(i.docs) for i in items])
    want = [[{"tag": t.tag, "score": t.score} for t in ts] for ts in tags]
    summary = tag_on_ray(shards, tmp_path / "ray", word_tagger, "words-v1", workers=2, progress=False)
    assert summary["unique"] == summary["tagged_now"] == 300
    rows = _lines(tmp_path / "ray" / "tags.jsonl")
    assert [r["query"] for r in rows] == [i.query for i in items]
    assert [r["tags"] for r in rows] == want
