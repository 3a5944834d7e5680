from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from classifier import FilterConfig, TopicClassifier, TopicFilter, TopicModelConfig, TopicRow, read_rows, train
from classifier.metrics import expected_calibration_error, sibling_confusion
from classifier.train import fit_temperature
from clipfeed.errors import InputError
from clipfeed.protocols import IntentTag
from clipfeed.taxonomy import Taxonomy

TINY = [
    ("penalty kick goal", "soccer"),
    ("offside rule", "soccer"),
    ("손흥민 골", "soccer"),
    ("프리킥 골", "soccer"),
    ("home run swing", "baseball"),
    ("오타니 홈런", "baseball"),
    ("pitcher strikeout", "baseball"),
    ("투수 삼진", "baseball"),
    ("sourdough bread", "baking"),
    ("케이크 굽기", "baking"),
    ("croissant dough", "baking"),
    ("마카롱 만들기", "baking"),
]


def tiny_rows(times: int = 8) -> list[TopicRow]:
    return [TopicRow(text=t, label=label) for t, label in TINY] * times


def tiny_model() -> TopicClassifier:
    cfg = TopicModelConfig(taxonomy_labels=False, n_buckets=4096, dim=16, epochs=15, lr=0.05, seed=1)
    net, cfg, _ = train(tiny_rows(), cfg, tiny_rows(1), progress=False)
    return TopicClassifier(net, cfg)


def test_tiny_model_learns_and_round_trips(tmp_path: Path) -> None:
    clf = tiny_model()
    preds = clf.predict([(t, "") for t, _ in TINY], top_k=2)
    assert [p.topics[0].id for p in preds] == [label for _, label in TINY]
    assert all(len(p.topics) == 2 and p.topics[0].p >= p.topics[1].p for p in preds)
    clf.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["labels"] == ["baking", "baseball", "soccer"] and saved["taxonomy_labels"] is False
    again = TopicClassifier.load(tmp_path / "m")
    a = clf.probabilities([("손흥민 프리킥", "")])
    b = again.probabilities([("손흥민 프리킥", "")])
    assert torch.allclose(a, b, atol=5e-3)  # float16 weights on disk


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    clf = tiny_model()
    clf.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["buckets_typo"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="buckets_typo"):
        TopicClassifier.load(tmp_path / "m")


def test_temperature_scaling_fixes_overconfidence() -> None:
    torch.manual_seed(0)
    targets = torch.randint(0, 4, (2000,))
    logits = torch.randn(2000, 4)
    logits[torch.arange(2000), targets] += 1.0  # somewhat informative ...
    logits *= 6.0  # ... but far too confident
    before = torch.softmax(logits, 1).max(1)
    t = fit_temperature(logits, targets)
    after = torch.softmax(logits / t, 1).max(1)
    correct = (before.indices == targets).tolist()
    assert t > 2.0
    ece_before = expected_calibration_error(before.values.tolist(), correct)
    ece_after = expected_calibration_error(after.values.tolist(), correct)
    assert ece_after < 0.05 < ece_before


def test_bad_rows_are_named_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"text": "손흥민 골", "label": "533"}\n{"text": "", "label": "533"}\n'
        '{"text": "오타니 홈런", "label": "99999"}\n{"txt": "x", "label": "545"}\n'
        '{"text": "이과수 폭포", "label": "662", "query": "볼리비아 비자"}\n',
        encoding="utf-8",
    )
    rows, report = read_rows(path, Taxonomy.load())
    assert [r.label for r in rows] == ["533", "655"]  # tier-3 662 maps to its tier-2 ancestor
    assert report.rejected == 3
    assert [(e.line, e.field) for e in report.errors] == [(2, "text"), (3, "label"), (4, "text")]


def test_empty_and_overlong_text_errors_unknown_script_result() -> None:
    clf = tiny_model()
    with pytest.raises(InputError, match="empty text"):
        clf.predict_one("   ")
    with pytest.raises(InputError, match="limit 512"):
        clf.predict_one("x" * 600)
    pred = clf.predict_one("🙂🙂 ???")
    assert pred.unknown and pred.topics == ()


def _filter(min_confidence: float = 0.45) -> TopicFilter:
    return TopicFilter(TopicClassifier.load(), config=FilterConfig(min_confidence=min_confidence))


def test_filter_rules_on_the_shipped_model() -> None:
    f = _filter()
    keep, reason = f.decide(f.classifier.predict_one("네이버 로그인"))
    assert not keep and reason.startswith("not clip-worthy")
    keep, reason = f.decide(f.classifier.predict_one("🙂🙂"))
    assert not keep and reason.startswith("unknown")
    keep, reason = f.decide(f.classifier.predict_one("x"))
    assert not keep and reason.startswith("too short")
    strict = _filter(min_confidence=0.999999)
    keep, reason = strict.decide(strict.classifier.predict_one("여행 영상 추천"))
    assert not keep and reason.startswith("low confidence")


def test_filter_merges_duplicates_and_keeps_siblings_apart() -> None:
    f = _filter()
    tags = [
        IntentTag("손흥민 골", 0.7),
        IntentTag(" 손흥민  골 ", 0.9),
        IntentTag("오타니 홈런", 0.8),
        IntentTag("네이버 로그인", 0.95),
    ]
    out = f.filter_tags(tags, "스포츠 하이라이트")
    assert len(out) == 3
    kept = {o.tag.strip(): o for o in out if o.keep}
    assert kept["손흥민  골"].score == 0.9 if "손흥민  골" in kept else kept["손흥민 골"].score == 0.9
    topics = {o.topics[0].id for o in out if o.keep}
    assert topics == {"533", "545"}
    assert [o.keep for o in out] == [True, True, False]  # kept first


def test_filter_batch_decides_each_search_as_alone() -> None:
    """One classifier call for many searches (how a world's searches are loaded) gives every search
    the tags, order and decisions it gets alone; probabilities agree up to their 4-decimal rounding."""
    f = _filter()
    searches: list[tuple[list[IntentTag], str]] = [
        ([IntentTag("손흥민 골", 0.7), IntentTag(" 손흥민  골 ", 0.9), IntentTag("네이버 로그인", 0.95)], "손흥민"),
        ([], "빈 검색"),
        ([IntentTag("아르헨티나 여행", 0.8)], "아르헨티나 여행"),  # the tag is the query: no query context
        ([IntentTag("오타니 홈런", 0.6), IntentTag("x", 0.5)], "야구"),
    ]
    batch = f.filter_tags_batch(searches)
    assert len(batch) == len(searches) and batch[1] == []
    for (tags, query), got in zip(searches, batch, strict=True):
        alone = f.filter_tags(tags, query)
        assert [(o.tag, o.score, o.keep, o.reason) for o in got] == [(o.tag, o.score, o.keep, o.reason) for o in alone]
        for a, b in zip(got, alone, strict=True):
            assert [t.id for t in a.topics] == [t.id for t in b.topics]
            assert all(abs(x.p - y.p) <= 1e-4 + 1e-9 for x, y in zip(a.topics, b.topics, strict=True))
    assert [o.keep for o in batch[0]] == [True, False] and batch[2][0].topics[0].id == "655"
    assert f.filter_tags_batch([]) == []


@pytest.mark.parametrize(
    ("text", "query", "topic", "keep"),
    [
        ("아르헨티나 여행", "", "655", True),
        ("볼리비아 비자 신청 서류", "", "CF101", False),
        ("손흥민 골", "", "533", True),
        ("오타니 홈런", "", "545", True),
        ("이과수 폭포", "볼리비아 비자", "655", True),
        ("gmail login", "", "CF103", False),
        ("sourdough starter", "", "217", True),
    ],
)
def test_shipped_model_on_fixed_inputs(text: str, query: str, topic: str, keep: bool) -> None:
    f = _filter()
    result = f.explain(f.classifier.predict_one(text, query))
    assert result["topics"][0]["id"] == topic  # type: ignore[index]
    assert result["keep"] is keep


def test_sibling_confusion_metric() -> None:
    tax = Taxonomy.load()
    assert sibling_confusion(["533", "533", "655", "533"], ["545", "533", "533", "533"], tax) == 0.25


def test_shipped_model_is_small_and_loads_fast() -> None:
    import time

    t0 = time.perf_counter()
    clf = TopicClassifier.load()
    assert time.perf_counter() - t0 < 5.0  # generous: the benchmark reports the real figure
    assert sum(p.numel() for p in clf.net.parameters()) <= 10_000_000
