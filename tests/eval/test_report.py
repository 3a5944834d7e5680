"""``clipfeed eval report`` on a small world: what it writes, what the numbers say, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli.evaluation import comparable, make_options
from cli.evaluation.serving_eval import load_bench, normalise
from cli.main import main
from clipfeed.errors import ConfigError
from recommender import SYSTEMS
from recommender.offline import METRICS


def test_report_files(report: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = report
    text = (out / "report.md").read_text(encoding="utf-8")
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == metrics
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert linked, "the report shows its figures"
    assert sorted(linked) == sorted(p.name for p in out.glob("*.png"))
    for section in ("## Tagger", "## Topic classifier", "## Recommender", "## Serving"):
        assert section in text


def test_recommender_metrics_behave(report: tuple[Path, dict[str, Any]]) -> None:
    rec = report[1]["recommender"]
    for population in ("cold", "warm"):
        assert set(rec[population]) == set(SYSTEMS)
        for system, row in rec[population].items():
            assert row["users"] > 0
            for metric in METRICS:
                lo, hi = row[metric]["ci95"]
                assert lo <= row[metric]["mean"] <= hi, (population, system, metric)
            assert 0.0 <= row["coverage"]["mean"] <= 1.0
        # personalised feeds beat the unpersonalised ones on the world's judgments
        assert rec[population]["full"]["ndcg@10"]["mean"] > rec[population]["random"]["ndcg@10"]["mean"]
        assert rec[population]["full"]["ndcg@10"]["mean"] > rec[population]["popularity"]["ndcg@10"]["mean"]
    cs = rec["case_study"]
    assert cs["user_id"] and cs["searches"] and cs["feed"]
    assert all(item["reason"] for item in cs["feed"])
    assert set(cs["systems"]) == set(SYSTEMS)
    assert rec["feature_importance"], "the shipped ranker explains its features"
    assert len(rec["feedback"]) == 4
    for step in rec["feedback"].values():
        assert 0.0 <= step["moved_in_direction"] <= 1.0 and 0.0 <= step["feed_changed_share"] <= 1.0


def test_tagger_and_classifier_metrics_behave(report: tuple[Path, dict[str, Any]]) -> None:
    tg, clf = report[1]["tagger"], report[1]["classifier"]
    assert set(tg["models"]) == {"copy_query", "standin"}
    for m in tg["models"].values():
        assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0
        assert min(m["precision"], m["recall"]) <= m["f1"] <= max(m["precision"], m["recall"])
        assert set(m["per_language_f1"]) == {"en", "ko"}
    assert "copy_query~standin" in tg["agreement"]
    bias = tg["pattern_bias"]
    assert bias["largest_share_after"] <= bias["largest_share_before"]
    assert bias["largest_share_after"] <= bias["max_share"] + 1e-9
    for name in ("world_heldout", "gold_test"):
        curve = clf[name]["threshold_curve"]
        kept = [c["kept_share"] for c in curve]
        assert kept == sorted(kept, reverse=True), "a higher threshold never keeps more"
        assert sum(r["n"] for r in clf[name]["reliability"]) == clf[name]["n"]
    assert clf["world_heldout"]["accuracy"] > clf["world_heldout"]["sibling_confusion"]


def test_comparable_drops_only_timings(report: tuple[Path, dict[str, Any]]) -> None:
    metrics = report[1]
    kept = json.dumps(comparable(metrics))
    assert "ms_per_query" not in kept and "section_seconds" not in kept and "samples" not in kept
    assert comparable(metrics)["recommender"]["cold"] == metrics["recommender"]["cold"]


def test_missing_world_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "report", "--world", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a world directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_options(tmp_path: Path, small_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "report", "--world", str(small_world), "--out", str(tmp_path), "--tagger-models", "gpt9"])
    err = capsys.readouterr().err
    assert code == 2 and "gpt9" in err and "Traceback" not in err
    with pytest.raises(ConfigError):
        make_options(world=small_world, users=0)


def test_world_without_truth(tmp_path: Path, small_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "w"
    world.mkdir()
    for f in small_world.iterdir():
        if f.is_file():
            (world / f.name).write_bytes(f.read_bytes())
    code = main(["eval", "report", "--world", str(world), "--out", str(tmp_path / "out"), "--skip-tagger"])
    err = capsys.readouterr().err
    assert code == 2 and "truth" in err


def test_load_benchmark_layouts(tmp_path: Path) -> None:
    missing, msg = load_bench(tmp_path / "absent.json")
    assert missing is None and "--json-out" in msg
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert load_bench(tmp_path / "bad.json")[0] is None
    old = {
        "feed": [
            {
                "rate": 50,
                "requests": 250,
                "errors": 0,
                "throughput": 49.9,
                "feed": {"p50": 5, "p95": 7, "p99": 9},
                "feed_latencies_ms": [4.0, 5.0, 9.0],
            }
        ],
        "mixed_80_20": {"rate": 200},
        "ingestion": {"events_per_s": 900},
        "redis_memory": {"bytes_per_user_context": 700, "users": 10},
        "in_process_feed_ms": {"p50": 4.0},
    }
    new = {
        "rates": [{"rate": 50, "p50_ms": 5, "p95_ms": 7, "p99_ms": 9, "throughput": 49.9, "errors": 0}],
        "mixed": {"rate": 200},
        "ingest": {"events_per_s": 900},
        "memory": {"bytes_per_user": 700},
        "in_process_ms": {"p50": 4.0},
    }
    a, b = normalise(old), normalise(new)
    assert a["rates"] == b["rates"]
    assert a["distributions"] == {"50": [4.0, 5.0, 9.0]} and "distributions" not in b
    assert a["memory"]["bytes_per_user"] == b["memory"]["bytes_per_user"] == 700
    for key in ("mixed", "ingest", "in_process_ms"):
        assert a[key] == b[key]
    partial = normalise({"rates": [{"rate": 10}]})
    assert partial["rates"][0]["p99_ms"] is None and "memory" not in partial
