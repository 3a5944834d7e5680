from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from tests.classifier.test_topic_model import TINY


def _write(path: Path, rows: list[dict[str, str]], extra: str = "") -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n" + extra, encoding="utf-8")
    return path


def test_train_eval_predict_plain_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": t, "label": label} for t, label in TINY] * 6
    data = _write(tmp_path / "train.jsonl", rows, '{"text": "broken row", "labl": "x"}\n')
    out = tmp_path / "model"
    code = main(
        [
            "classifier",
            "train",
            "--data",
            str(data),
            "--plain-labels",
            "--out",
            str(out),
            "--buckets",
            "2048",
            "--dim",
            "16",
            "--epochs",
            "15",
            "--json",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert (
        "train.jsonl:73: field label: required field is missing" in captured.err
    )  # the bad row is named, the rest trained
    assert json.loads(captured.out)["labels"] == 3
    assert (out / "model_card.json").exists() and (out / "config.json").exists()

    assert main(["classifier", "eval", "--data", str(data), "--model", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "ece", "abstain_rate", "per_class_f1"} <= set(metrics)
    assert metrics["accuracy"] > 0.9

    assert main(["classifier", "predict", "오타니 홈런", "--model", str(out), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["topics"][0] == {
        "id": "baseball",
        "name": "baseball",
        "tier1": "baseball",
        "tier2": None,
        "p": pred["topics"][0]["p"],
    }
    assert isinstance(pred["keep"], bool) and pred["reason"]


def test_predict_contract_with_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classifier", "predict", "손흥민 골", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert set(pred) == {"text", "topics", "keep", "reason"}
    assert set(pred["topics"][0]) == {"id", "name", "tier1", "tier2", "p"}
    assert pred["topics"][0]["tier1"] == "Sports" and pred["topics"][0]["tier2"] == "Soccer"

    inputs = _write(
        tmp_path / "in.jsonl", [{"text": "아르헨티나 여행"}, {"text": "오타니 홈런"}, {"text": "naver login"}]
    )
    assert main(["classifier", "predict", "--file", str(inputs), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["keep"] for x in lines] == [True, True, False]


def test_taxonomy_training_rejects_unknown_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": "손흥민 골", "label": "533"}, {"text": "오타니 홈런", "label": "545"}] * 8
    data = _write(tmp_path / "t.jsonl", [*rows, {"text": "mystery", "label": "NOPE"}])
    assert (
        main(
            [
                "classifier",
                "train",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "m"),
                "--buckets",
                "1024",
                "--dim",
                "8",
                "--epochs",
                "2",
                "--json",
            ]
        )
        == 0
    )
    assert "field label: unknown taxonomy id 'NOPE'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classifier", "predict", "   "], "empty text"),
        (["classifier", "predict"], "give a TEXT or --file"),
        (["classifier", "train", "--out", "/tmp/x"], "exactly one of --data"),
        (["classifier", "eval", "--model", "/nonexistent"], "no topic model config"),
    ],
)
def test_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
