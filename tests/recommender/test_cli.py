from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


@pytest.fixture(scope="module")
def model(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ranker") / "m"
    assert main(["ranker", "train", "--world", str(small_world), "--out", str(out), "--json"]) == 0
    return out


def test_train_writes_model_schema_and_config(model: Path) -> None:
    meta = json.loads((model / "ranker.json").read_text())
    assert meta["features"] and meta["config"]["ranker"]["early_stopping_rounds"] > 0
    assert (model / "ranker.txt").stat().st_size > 0


def test_eval_json_contract(small_world: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert (
        main(["ranker", "eval", "--world", str(small_world), "--model", str(model), "--max-users", "20", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    for population in ("cold", "warm"):
        for system in ("random", "popularity", "raw_keywords", "tags_unfiltered", "full"):
            row = out[population][system]
            for metric in ("ndcg@10", "map@10", "recall@50", "coverage", "diversity", "novelty", "topic_leak"):
                assert isinstance(row[metric], float), (population, system, metric)


def test_feed_json_and_explain(small_world: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = [json.loads(line) for line in (small_world / "truth" / "users.jsonl").read_text().splitlines()]
    cold = next(u["user_id"] for u in users if u["cold"])
    capsys.readouterr()
    assert (
        main(["feed", cold, "--world", str(small_world), "--model", str(model), "--explain", "--limit", "5", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["user_id"] == cold and len(out["items"]) == 5
    item = out["items"][0]
    assert set(item) == {"clip_id", "score", "topics", "explanation"} and item["explanation"]["reason"]


def test_unknown_user_gets_fallback_with_reason(small_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["feed", "nobody-here", "--world", str(small_world), "--limit", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "unknown user" in out["fallback"] and len(out["items"]) == 3


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], small_world: Path) -> None:
    assert main(["feed", "u1", "--world", str(tmp_path / "nope")]) == 2
    assert "not a world directory" in capsys.readouterr().err
    bad = tmp_path / "model"
    bad.mkdir()
    assert main(["ranker", "eval", "--world", str(small_world), "--model", str(bad)]) == 2
    assert "no ranker here" in capsys.readouterr().err
