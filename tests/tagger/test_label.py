"""The labeling job: dedup, pattern capping, the content-hash cache and resuming after a crash or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clipfeed.errors import InputError
from clipfeed.protocols import IntentTag
from clipfeed.text import tokens
from tagger.label import LabelJob, read_label_inputs, run_labeling
from tagger.patterns import PatternModel, cap_patterns
from tagger.types import ChatPrompt, Generation, Labeler, QueryInput, TeacherBackend, TeacherLabel

REPO = Path(__file__).resolve().parents[2]


@dataclass
class FakeBackend:
    """Only the fields the job reads: name and price; generating is the labeler's business."""

    name: str = "fake-teacher"
    price_per_1k: tuple[float, float] = (0.5, 1.5)

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        raise NotImplementedError


@dataclass
class RuleLabeler:
    """Deterministic teacher: the query's words are its tags; "login" queries have no clip intent."""

    fingerprint: str = "rules-v1"
    backend: TeacherBackend = field(default_factory=FakeBackend)
    fail: frozenset[str] = frozenset()  # queries whose backend call "fails"
    crash_after: int | None = None  # raise on the batch after this many batches
    sleep_s: float = 0.0
    calls: int = 0  # inputs asked for
    batches: int = 0
    seen: list[str] = field(default_factory=list)

    def label_batch(self, items: Sequence[QueryInput]) -> list[TeacherLabel]:
        if self.crash_after is not None and self.batches >= self.crash_after:
            raise RuntimeError("teacher went away")
        self.batches += 1
        self.calls += len(items)
        self.seen.extend(q.query for q in items)
        time.sleep(self.sleep_s)
        return [self._one(q) for q in items]

    def _one(self, q: QueryInput) -> TeacherLabel:
        if q.query in self.fail:
            return TeacherLabel([], 0.0, abstained=True, reason="backend: 500", prompt_tokens=10)
        if "login" in q.query:
            return TeacherLabel([], 0.0, abstained=True, reason="no clip intent", prompt_tokens=10, completion_tokens=5)
        tags = [IntentTag(w, 0.9) for w in tokens(q.query)]
        return TeacherLabel(tags, 0.9, prompt_tokens=10, completion_tokens=5)


def make_inputs(n: int) -> list[tuple[QueryInput, int]]:
    return [(QueryInput.of(f"query{i} travel", [f"doc {i}"]), 1) for i in range(n)]


def write_lines(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_rule_labeler_is_a_labeler() -> None:
    assert isinstance(RuleLabeler(), Labeler)


def test_dedup_and_normalisation_adds_counts(tmp_path: Path) -> None:
    rows: list[object] = [
        {"query": "Chile Visa", "docs": ["Iguazu  Falls"]},
        {"query": "  chile   visa ", "docs": ["iguazu falls"]},
        {"query": "ＣＨＩＬＥ visa", "docs": ["IGUAZU FALLS"]},  # full-width letters: NFKC
        {"user_id": "u1", "ts": 0, "query": "Chile visa", "clicked_docs": [{"title": "Iguazu Falls", "snippet": "x"}]},
        {"query": "chile visa"},  # no docs: a different input
        {"query": "볼리비아 비자"},
        "",
    ]
    inputs = read_label_inputs(write_lines(tmp_path / "q.jsonl", rows))
    assert inputs == [
        (QueryInput("chile visa", ("iguazu falls",)), 4),
        (QueryInput("chile visa", ()), 1),
        (QueryInput("볼리비아 비자", ()), 1),
    ]
    assert inputs.report.rows == 6 and inputs.report.rejected == 0


def test_invalid_lines_name_file_line_field(tmp_path: Path) -> None:
    rows: list[object] = [
        {"query": "ok one"},
        {"query": "   "},
        {"query": "x", "docs": "not a list"},
        {"user_id": "u1", "query": "no ts", "clicked_docs": []},
        "{not json",
        {"query": "ok two", "topics": ["1"]},
        {"query": "ok three", "docs": ["d"]},
    ]
    path = write_lines(tmp_path / "q.jsonl", rows)
    with pytest.raises(InputError) as exc:
        read_label_inputs(path)
    assert (exc.value.line, exc.value.field) == (2, "query")
    assert str(exc.value) == f"{path}:2: field query: query is empty or whitespace-only"

    inputs = read_label_inputs(path, skip_invalid=True)
    assert [q.query for q, _ in inputs] == ["ok one", "ok three"]
    assert inputs.report.rejected == 5
    assert [(e.line, e.field) for e in inputs.report.errors] == [
        (2, "query"),
        (3, "docs"),
        (4, "ts"),
        (5, None),
        (6, "topics"),
    ]
    report = run_labeling(inputs, RuleLabeler(), tmp_path / "out", progress=False)
    assert (report.queries, report.invalid, report.unique) == (7, 5, 2)
    assert len(report.invalid_examples) == 5


def test_pattern_keys() -> None:
    queries = [f"나라{i} 비자" for i in range(20)] + [f"도시{i} 맛집 추천" for i in range(20)] + ["희귀한 질문 하나"]
    model = PatternModel.fit(queries)
    assert model.key("볼리비아 비자") == model.key("칠레 비자") == "* 비자"
    assert model.key("부산 해운대 맛집 추천") == "* 맛집 추천"
    assert model.key("비자 비자") == "비자 비자"
    assert model.key("희귀한 질문 하나") == "*x3" and model.key("희귀") == "*x1"


def _head_and_tail() -> tuple[list[str], list[int]]:
    queries = (
        [f"x{i} 비자" for i in range(1000)]
        + [f"y{i} 맛집" for i in range(100)]
        + [f"z{i} 호텔 추천" for i in range(100)]
        + [f"r{i}a r{i}b r{i}c" for i in range(50)]
    )
    counts = [5 if i in (7, 500, 999) else 1 for i in range(len(queries))]
    return queries, counts


def test_cap_patterns_caps_the_head_deterministically() -> None:
    queries, counts = _head_and_tail()
    model = PatternModel.fit(queries)
    keys = [model.key(q) for q in queries]
    assert keys.count("* 비자") == 1000 and keys.count("*x3") == 50
    kept, stats = cap_patterns(queries, keys, cap=100, seed=1, counts=counts)
    assert sum(keys[i] == "* 비자" for i in kept) == 100
    assert len(kept) == 350 and kept == sorted(kept)
    assert {7, 500, 999} <= set(kept)  # frequent raw queries are kept first
    assert stats.top["* 비자"] == (1000, 100) and stats.top["*x3"] == (50, 50)
    assert stats.largest_share_before == pytest.approx(1000 / 1250)
    assert stats.largest_share_after == pytest.approx(100 / 350)
    again, _ = cap_patterns(queries, keys, cap=100, seed=1, counts=counts)
    other, _ = cap_patterns(queries, keys, cap=100, seed=2, counts=counts)
    assert again == kept and other != kept

    by_share, share_stats = cap_patterns(queries, keys, max_share=0.4, seed=1)
    head = sum(keys[i] == "* 비자" for i in by_share)
    assert head / len(by_share) <= 0.4 and share_stats.largest_share_after <= 0.4
    assert head >= 100  # the share is met without throwing away more of the head than needed


def test_job_caps_patterns_and_reports_them(tmp_path: Path) -> None:
    queries, counts = _head_and_tail()
    inputs = [(QueryInput.of(q), n) for q, n in zip(queries, counts, strict=True)]
    labeler = RuleLabeler()
    report = run_labeling(inputs, labeler, tmp_path, pattern_cap=100, batch_size=64, progress=False)
    assert (report.unique, report.after_cap, report.kept, labeler.calls) == (1250, 350, 350, 350)
    patterns = report.to_dict()["patterns"]
    assert isinstance(patterns, dict)
    assert patterns["largest_share_before"] == 0.8 and patterns["top"][0] == {
        "pattern": "* 비자",
        "before": 1000,
        "after": 100,
    }
    rows = read_jsonl(tmp_path / "labels.jsonl")
    assert len(rows) == 350 and rows[0]["pattern"] == "* 비자"
    limited = run_labeling(inputs, RuleLabeler(), tmp_path / "lim", pattern_cap=100, limit=10, progress=False)
    assert (limited.after_cap, limited.kept, limited.labeled_now) == (350, 10, 10)


def test_rerun_calls_the_labeler_zero_times(tmp_path: Path) -> None:
    inputs = make_inputs(40)
    first = RuleLabeler()
    run_labeling(inputs, first, tmp_path, batch_size=8, progress=False)
    assert (first.calls, first.batches) == (40, 5)
    labels_before = (tmp_path / "labels.jsonl").read_text()
    second = RuleLabeler()
    report = run_labeling(inputs, second, tmp_path, batch_size=8, progress=False)
    assert second.calls == 0 and (report.labeled_now, report.from_cache) == (0, 40)
    assert (tmp_path / "labels.jsonl").read_text() == labels_before
    changed = RuleLabeler(fingerprint="rules-v2")  # a new prompt or model invalidates the cache
    run_labeling(inputs, changed, tmp_path, batch_size=8, progress=False)
    assert changed.calls == 40


def test_resume_after_exception_labels_only_the_rest(tmp_path: Path) -> None:
    inputs = make_inputs(50)
    crashing = RuleLabeler(crash_after=3)
    with pytest.raises(RuntimeError, match="teacher went away"):
        run_labeling(inputs, crashing, tmp_path, batch_size=10, progress=False)
    assert len(read_jsonl(tmp_path / "cache.jsonl")) == 30
    assert not (tmp_path / "labels.jsonl").exists()
    rest = RuleLabeler()
    report = run_labeling(inputs, rest, tmp_path, batch_size=10, progress=False)
    assert rest.calls == 20 and rest.seen == [q.query for q, _ in inputs[30:]]
    assert (report.from_cache, report.labeled_now) == (30, 20)
    assert [r["query"] for r in read_jsonl(tmp_path / "labels.jsonl")] == [q.query for q, _ in inputs]


KILL_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.tagger.test_label import RuleLabeler, make_inputs
from tagger.label import run_labeling
run_labeling(make_inputs({n}), RuleLabeler(sleep_s=0.05), Path({out!r}), batch_size=8, progress=False)
"""


def test_sigkill_mid_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    n, out = 400, tmp_path / "out"
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), n=n, out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cache = out / "cache.jsonl"
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"job ended before it was killed: {proc.stderr.read() if proc.stderr else ''}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    done = 0
    for line in cache.read_text(encoding="utf-8").splitlines():
        try:
            json.loads(line)
            done += 1
        except ValueError:
            pass
    assert 40 <= done < n and not (out / "labels.jsonl").exists()

    rest = RuleLabeler()
    report = run_labeling(make_inputs(n), rest, out, batch_size=8, progress=False)
    assert rest.calls == n - done and report.from_cache == done
    queries = [r["query"] for r in read_jsonl(out / "labels.jsonl")]
    assert queries == [q.query for q, _ in make_inputs(n)]


def test_torn_last_cache_line_is_tolerated(tmp_path: Path) -> None:
    inputs = make_inputs(20)
    run_labeling(inputs[:12], RuleLabeler(), tmp_path, batch_size=4, progress=False)
    cache = tmp_path / "cache.jsonl"
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) - 30])  # the 12th line is cut mid-way, no newline
    labeler = RuleLabeler()
    run_labeling(inputs, labeler, tmp_path, batch_size=4, progress=False)
    assert labeler.calls == 9  # the torn input and the 8 new ones
    entries = read_jsonl(cache)  # every line parses again: the torn one was dropped, not glued to
    assert len(entries) == 20 and len({e["key"] for e in entries}) == 20


def test_backend_errors_are_reported_and_retried(tmp_path: Path) -> None:
    inputs = [*make_inputs(10), (QueryInput.of("netflix login"), 3)]
    failing = {inputs[2][0].query, inputs[5][0].query}
    first = RuleLabeler(fail=frozenset(failing))
    report = run_labeling(inputs, first, tmp_path, batch_size=4, progress=False)
    assert report.backend_errors == 2 and report.abstained == 3
    assert report.abstained_by_reason == {"backend: 500": 2, "no clip intent": 1}
    rows = read_jsonl(tmp_path / "labels.jsonl")
    assert [r["reason"] for r in rows if r["abstained"]] == ["backend: 500", "backend: 500", "no clip intent"]
    assert rows[-1]["count"] == 3 and rows[0]["tags"] == [
        {"tag": "query0", "score": 0.9},
        {"tag": "travel", "score": 0.9},
    ]

    second = RuleLabeler()
    report = run_labeling(inputs, second, tmp_path, batch_size=4, progress=False)
    assert sorted(second.seen) == sorted(failing)
    assert report.backend_errors == 0 and report.abstained_by_reason == {"no clip intent": 1}
    third = RuleLabeler()
    run_labeling(inputs, third, tmp_path, batch_size=4, progress=False)
    assert third.calls == 0


def test_report_fields_and_cost(tmp_path: Path) -> None:
    inputs = [*make_inputs(9), (QueryInput.of("bank login"), 2)]
    report = run_labeling(inputs, RuleLabeler(), tmp_path, batch_size=4, progress=False)
    # 10 inputs x (10 prompt, 5 completion) tokens at $0.5 / $1.5 per 1k
    assert (report.prompt_tokens, report.completion_tokens) == (100, 50)
    assert report.estimated_cost_usd == pytest.approx(100 / 1000 * 0.5 + 50 / 1000 * 1.5)
    on_disk = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(report.to_dict()))
    assert on_disk["queries"] == 11 and on_disk["unique"] == 10 and on_disk["invalid"] == 0
    assert on_disk["abstained"] == {"total": 1, "by_reason": {"no clip intent": 1}}
    assert on_disk["teacher"] == "fake-teacher" and on_disk["fingerprint"] == "rules-v1"
    assert on_disk["estimated_cost_usd"] == 0.125 and on_disk["labeled_now"] == 10
    assert report.seconds > 0 and report.queries_per_s == pytest.approx(10 / report.seconds)
    cached = run_labeling(inputs, RuleLabeler(), tmp_path, progress=False)
    assert cached.estimated_cost_usd == 0.0 and cached.from_cache == 10


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    from clipfeed.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        LabelJob(tmp_path, batch_size=0)
    with pytest.raises(ConfigError, match="max_share"):
        LabelJob(tmp_path, max_share=1.5)
