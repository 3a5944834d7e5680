"""The shipped artifacts: small enough for git, and the real student tags fixed queries sensibly.

The slow tests load the real models (the embedded Gemma is converted from its PyPI GGUF on first
use and cached, then the student is merged once and cached).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clipfeed.text import normalize

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "classifier" / "shipped", ROOT / "recommender" / "shipped", ROOT / "tagger" / "shipped"]


def test_shipped_artifacts_are_small() -> None:
    files = [f for d in SHIPPED for f in d.rglob("*") if f.is_file()]
    assert files
    assert max(f.stat().st_size for f in files) < 10_000_000
    assert sum(f.stat().st_size for f in files) < 40_000_000
    for d in (ROOT / "tagger" / "shipped" / "student", ROOT / "tagger" / "shipped" / "teacher"):
        card = json.loads((d / "model_card.json").read_text(encoding="utf-8"))
        assert "seed" in card and "reproduce" in card


@pytest.fixture(scope="module")
def student() -> Any:
    from cli.tagger import load_student

    return load_student(None)


def _tags(student: Any, query: str, docs: list[str] | None = None) -> list[str]:
    student.cache.clear()
    return [normalize(t.tag) for t in student.tag_batch([query], [docs or []])[0]]


@pytest.mark.slow
def test_shipped_student_argentina_trip_gets_travel_tags(student: Any) -> None:
    tags = _tags(student, "볼리비아 비자", ["이과수 폭포 투어 후기"])
    assert tags and any("여행" in t or "이과수" in t for t in tags), tags
    assert not any(w in t for t in tags for w in ("축구", "정치", "선거", "football"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "docs", "words"),
    [
        ("이과수 폭포", [], ("이과수", "아르헨티나", "여행")),
        ("손흥민 골", [], ("손흥민", "축구", "토트넘")),
        ("iguazu falls tour", [], ("iguazu", "argentina", "travel")),
        ("how to make sourdough starter", [], ("sourdough", "baking", "bread")),
    ],
)
def test_shipped_student_fixed_queries(student: Any, query: str, docs: list[str], words: tuple[str, ...]) -> None:
    tags = _tags(student, query, docs)
    assert any(w in t for t in tags for w in words), tags


@pytest.mark.slow
def test_shipped_student_says_none_to_navigation(student: Any) -> None:
    assert _tags(student, "네이버 로그인") == []
    assert _tags(student, "여권 재발급 서류") == []


@pytest.mark.slow
def test_clicked_titles_change_the_tags(student: Any) -> None:
    """A bare query ("비자", "하이라이트") says little; the clicked title carries the intent."""
    assert _tags(student, "비자") == []
    visa = _tags(student, "비자", ["볼리비아 비자 발급 후기 (황열병 접종 증명서 포함)"])
    assert any("볼리비아" in t or "여행" in t for t in visa), visa
    alone = _tags(student, "하이라이트")
    with_doc = _tags(student, "하이라이트", ["토트넘 vs 맨시티 하이라이트 | 손흥민 결승골"])
    assert alone != with_doc and any("손흥민" in t or "토트넘" in t for t in with_doc), (alone, with_doc)


@pytest.mark.slow
def test_shipped_teacher_adapter_labels_with_the_embedded_base() -> None:
    from cli.tagger import _gold, build_teacher
    from tagger.types import QueryInput

    teacher = build_teacher("embedded", "shipped", _gold(None), "cpu", 4)
    assert "+lora:" in teacher.backend.name and teacher.cfg.shots == 2
    (label,) = teacher.label_batch([QueryInput.of("이과수 폭포 투어")])
    assert not label.abstained and label.tags, label
    assert 0 < label.confidence <= 1
