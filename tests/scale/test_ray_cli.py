"""The --engine options: a clear line without Ray, a usage error for an unknown engine (no cluster)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli.main import main


def _queries(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "chile visa"}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["tagger", "label", "--queries", "{q}", "--out", "{out}", "--engine", "ray"],
        ["tagger", "tag", "--file", "{q}", "--out", "{out}", "--engine", "ray"],
        ["ranker", "train", "--world", "{out}", "--out", "{out}", "--engine", "ray"],
        ["world", "contexts", "{out}", "--redis-url", "redis://127.0.0.1:1", "--engine", "ray"],
    ],
)
def test_engine_ray_without_ray_says_which_extra_to_install(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    args = [a.format(q=_queries(tmp_path), out=tmp_path / "out") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "install the [scale] extra" in err


def test_an_unknown_engine_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tagger", "label", "--queries", str(_queries(tmp_path)), "--out", str(tmp_path), "--engine", "x"]) == 2
    assert "--engine" in capsys.readouterr().err
