"""Teacher prompting: input checks, strict parsing, exemplar selection, retries, confidence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from clipfeed.records import GoldRow
from tagger.exemplars import ExemplarSelector
from tagger.format import MAX_QUERY_CHARS, check_query, parse_tags
from tagger.metrics import fuzzy_equal, prf
from tagger.openai_backend import OpenAIBackend
from tagger.openai_server import create_openai_app, serve_in_thread
from tagger.teacher import HFBackend, Teacher, TeacherConfig, render_text_prompt
from tagger.types import ChatPrompt, Generation, QueryInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 아르헨티나 여행, 이과수 폭포", ["아르헨티나 여행", "이과수 폭포"]),
        ("Argentina travel\nQuery: next one", ["Argentina travel"]),
        ("NONE", []),
        ("none.", []),
        ("a, a, A", ["a"]),
        ("", None),
        ("   \n", None),
        ("Tags: x", None),
        ("Query: 볼리비아", None),
        ("a, b, c, d, e", None),
        ("x" * 41, None),
        (", , ,", None),
        ("!!!, ???", None),
    ],
)
def test_parse_tags_accepts_only_the_strict_format(text: str, expected: list[str] | None) -> None:
    assert parse_tags(text) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "empty query"),
        ("   \t ", "empty query"),
        ("x" * (MAX_QUERY_CHARS + 1), f"query longer than {MAX_QUERY_CHARS} characters"),
        ("abc\x00def", "binary or control characters"),
        ("\ufffd\ufffd", "binary or control characters"),
        ("Привет мир путешествие", "unsupported script"),
        ("!!! ???", "no letters or digits"),
        ("손흥민 goal", None),
        ("아이폰 15 pro", None),
        ("2024", None),
    ],
)
def test_check_query_names_the_problem(query: str, reason: str | None) -> None:
    got = check_query(query)
    assert (got is None) if reason is None else (got is not None and got.startswith(reason))


def test_fuzzy_matching_and_empty_answers() -> None:
    assert fuzzy_equal("아르헨티나 여행", "아르헨티나여행")
    assert fuzzy_equal("Argentina travel", "argentina travel vlog")
    assert not fuzzy_equal("아르헨티나 여행", "아르헨티나 축구")
    assert prf([[]], [["x"]])["f1"] == 0.0
    assert prf([["a", "b"]], [["a"]])["recall"] == 0.5


def _row(q: str, tags: list[str], pattern: str, docs: list[str] | None = None) -> GoldRow:
    return GoldRow(query=q, docs=docs or [], tags=tags, topics=["655"], pattern=pattern, split="train")


def test_exemplars_are_similar_but_diverse() -> None:
    rows = [
        _row("칠레 여행 비자", ["칠레 여행"], "travel"),
        _row("칠레 여행 비자 발급", ["칠레 여행"], "travel"),
        _row("칠레 비자 서류", [], "navigational"),
        _row("손흥민 골", ["손흥민"], "sports"),
    ]
    picked = ExemplarSelector(rows, diversity=0.8).select("칠레 여행 비자 신청", (), k=2)
    assert picked[0].query.startswith("칠레 여행 비자")
    # the second-most similar row teaches the same answer: diversity picks the NONE example instead
    assert picked[1].query == "칠레 비자 서류"
    no_div = ExemplarSelector(rows, diversity=0.0).select("칠레 여행 비자 신청", (), k=2)
    assert [r.tags for r in no_div] == [["칠레 여행"], ["칠레 여행"]]
    assert all(
        r.query != "칠레 여행 비자"
        for r in ExemplarSelector(rows).select("칠레 여행 비자", (), 3, exclude="칠레 여행 비자")
    )


class ScriptedBackend:
    """Answers from a script: each call pops the next answer for each prompt's query."""

    name = "scripted"
    price_per_1k = (0.0, 0.0)

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls = 0
        self.prompts: list[ChatPrompt] = []

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        self.calls += 1
        out = []
        for p in prompts:
            self.prompts.append(p)
            q = p.user.split("\n")[0].removeprefix("Query: ")
            script = self.answers[q]
            text = script.pop(0) if len(script) > 1 else script[0]
            if text.startswith("ERROR"):
                out.append(Generation("", 10, 0, error="HTTP 500"))
            else:
                out.append(Generation(text, 10, 3))
        return out


def test_teacher_retries_malformed_then_abstains(gold: list[GoldRow]) -> None:
    backend = ScriptedBackend(
        {
            "good": [" 아르헨티나 여행"],
            "fixed": ["Tags: Tags:", " Argentina travel"],
            "broken": ["Query: Query:"],
            "down": ["ERROR"],
            "nav": [" NONE"],
        }
    )
    teacher = Teacher(backend, gold[:50], TeacherConfig(shots=2, retries=2))
    items = [QueryInput.of(q) for q in ("good", "fixed", "broken", "down", "nav", "   ")]
    good, fixed, broken, down, nav, empty = teacher.label_batch(items)
    assert [t.tag for t in good.tags] == ["아르헨티나 여행"] and good.attempts == 1
    assert [t.tag for t in fixed.tags] == ["Argentina travel"] and fixed.attempts == 2
    assert broken.abstained and broken.reason == "malformed output" and broken.attempts == 3 and not broken.tags
    assert down.abstained and down.reason.startswith("backend: HTTP 500")
    assert not nav.abstained and nav.tags == [] and nav.reason == "no clip intent"
    assert empty.abstained and "empty query" in empty.reason and empty.attempts == 0
    assert backend.calls == 3  # one greedy pass and two retry passes; the empty query never reached it
    assert all(len(p.shots) == 2 for p in backend.prompts)


def test_agreement_confidence_and_threshold(gold: list[GoldRow]) -> None:
    backend = ScriptedBackend({"q": ["a, b", "a", "a, b", "c"], "r": ["x"]})
    teacher = Teacher(backend, gold[:10], TeacherConfig(shots=0, samples=4, min_confidence=0.7))
    q, r = teacher.label_batch([QueryInput.of("q"), QueryInput.of("r")])
    scores = {t.tag: t.score for t in q.tags}
    assert scores == {"a": 0.75, "b": 0.5}  # 'a' in 3 of 4 samples, 'b' in 2 of 4
    assert q.abstained and q.reason.startswith("low confidence")
    assert not r.abstained and r.confidence == 1.0


def test_fingerprint_changes_with_the_prompt_settings(gold: list[GoldRow]) -> None:
    b = ScriptedBackend({})
    assert Teacher(b, gold, TeacherConfig(shots=2)).fingerprint != Teacher(b, gold, TeacherConfig(shots=3)).fingerprint
    assert Teacher(b, gold, TeacherConfig()).fingerprint == Teacher(b, gold, TeacherConfig()).fingerprint


def test_text_prompt_ends_where_the_answer_starts() -> None:
    p = ChatPrompt("sys", (("Query: a", "x, y"),), "Query: b\nClicked: t")
    assert render_text_prompt(p) == "sys\n\nQuery: a\nTags: x, y\n\nQuery: b\nClicked: t\nTags:"


def test_hf_backend_batched_equals_single_with_logprobs(tiny_model: Path) -> None:
    backend = HFBackend.load(tiny_model, batch_size=4)
    prompts = [
        ChatPrompt("", (), f"Query: {q}")
        for q in ("볼리비아 비자", "손흥민 골 모음 하이라이트", "how to make sourdough")
    ]
    batched = backend.generate(prompts, max_new_tokens=6, temperature=0.0, seed=0)
    singles = [backend.generate([p], max_new_tokens=6, temperature=0.0, seed=0)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in singles]  # left padding changes nothing
    for g in batched:
        assert g.logprobs is not None and g.tokens is not None and len(g.logprobs) == len(g.tokens)
        assert all(lp <= 0 for lp in g.logprobs) and g.prompt_tokens > 3


def test_openai_backend_against_a_local_model_served_over_http(tiny_model: Path, gold: list[GoldRow]) -> None:
    local = HFBackend.load(tiny_model)
    url, stop = serve_in_thread(create_openai_app(local, "tiny"))
    try:
        remote = OpenAIBackend(base_url=url, model="tiny", backoff_s=0.01)
        prompts = [ChatPrompt("sys", (("Query: a", "x"),), f"Query: {q}") for q in ("볼리비아 비자", "이과수 폭포")]
        over_http = remote.generate(prompts, max_new_tokens=5, temperature=0.0, seed=0)
        direct = local.generate(prompts, max_new_tokens=5, temperature=0.0, seed=0)
        assert [g.text for g in over_http] == [g.text for g in direct]
        assert all(g.error is None and g.completion_tokens > 0 for g in over_http)
        labels = Teacher(remote, gold[:40], TeacherConfig(shots=2, retries=1)).label_batch(
            [QueryInput.of("이과수 폭포")]
        )
        assert labels[0].attempts >= 1 and labels[0].prompt_tokens > 0
    finally:
        stop()
