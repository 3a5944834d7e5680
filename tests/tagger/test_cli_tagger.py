"""The tagger CLI contract: tag (one query / a file), label (resumable), distill, eval side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_tag_one_query_json_contract(tiny_student: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "tagger",
                "tag",
                "볼리비아 비자",
                "--doc",
                "이과수 폭포 투어 후기",
                "--student",
                str(tiny_student),
                "--json",
            ]
        )
        == 0
    )
    (obj,) = _json_lines(capsys.readouterr().out)
    assert obj["query"] == "볼리비아 비자"
    assert isinstance(obj["tags"], list)
    for t in obj["tags"]:
        assert set(t) == {"tag", "score"} and isinstance(t["tag"], str) and 0 <= t["score"] <= 1


def test_tag_file_gives_one_object_per_line(
    tiny_student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(x, ensure_ascii=False)
            for x in [
                {"query": "이과수 폭포", "docs": []},
                {"query": "손흥민 골"},
                {"query": "tent", "docs": ["Camping"]},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert main(["tagger", "tag", "--file", str(f), "--student", str(tiny_student), "--json"]) == 0
    out = _json_lines(capsys.readouterr().out)
    assert [o["query"] for o in out] == ["이과수 폭포", "손흥민 골", "tent"]


@pytest.mark.parametrize("query", ["   ", "x" * 300, "Привет мир"])
def test_tag_bad_input_gets_a_clear_result(tiny_student: Path, query: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tagger", "tag", query, "--student", str(tiny_student), "--json"]) == 0
    (obj,) = _json_lines(capsys.readouterr().out)
    assert obj["tags"] == [] and obj["reason"]


def test_label_then_resume_then_distill_then_eval(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "queries.jsonl"
    rows = [{"user_id": "u1", "ts": 0, "query": f"이과수 폭포 {i}", "clicked_docs": []} for i in range(6)]
    rows.append({"user_id": "u1", "ts": 1, "query": "이과수 폭포 0", "clicked_docs": []})  # a duplicate
    q.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    labels = tmp_path / "labels"
    argv = ["tagger", "label", "--queries", str(q), "--out", str(labels), "--teacher", str(tiny_model)]
    argv += ["--adapter", "none", "--shots", "1", "--device", "cpu", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["unique"] == 6 and first["labeled_now"] == 6 and first["from_cache"] == 0
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["labeled_now"] == 0 and again["from_cache"] == 6
    assert len((labels / "labels.jsonl").read_text(encoding="utf-8").splitlines()) == 6

    student = tmp_path / "student"
    argv = ["tagger", "distill", "--labels", str(labels), "--out", str(student), "--base", str(tiny_model)]
    argv += ["--layers", "0,3", "--epochs", "1", "--device", "cpu", "--json"]
    assert main(argv) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["layers"] == [0, 3] and (student / "adapter_model.safetensors").exists()

    argv = ["tagger", "eval", "--student", str(student), "--teacher", str(tiny_model), "--adapter", "none", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for who in ("teacher", "student"):
        assert isinstance(result[who]["f1"], float) and result[who]["ms_per_query"] > 0
        assert set(result[who]["hard_cases"]) >= {"argentina_travel_intent_rate", "navigational_no_tags_rate"}
    assert 0.0 <= result["agreement"] <= 1.0 and result["cpu_speedup"] > 0


def test_distill_rejects_bad_layers(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"query": "a", "docs": [], "tags": [], "confidence": 1.0}) + "\n", encoding="utf-8")
    argv = ["tagger", "distill", "--labels", str(labels), "--out", str(tmp_path / "s"), "--base", str(tiny_model)]
    assert main([*argv, "--layers", "3,1", "--device", "cpu"]) == 2
    assert "increasing indices" in capsys.readouterr().err
    assert main([*argv, "--layers", "a,b"]) == 2
    assert "--layers" in capsys.readouterr().err
