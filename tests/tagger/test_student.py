"""The student: vocabulary trimming, parity with its teacher, distillation end to end, serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipfeed.errors import ClipfeedError
from clipfeed.protocols import IntentTag, IntentTagger
from clipfeed.records import GoldRow
from tagger.distill import student_examples
from tagger.gemma import load_causal_lm
from tagger.intent import StudentTagger
from tagger.student import StudentConfig, TrimmedCodec, build_student, select_vocab
from tagger.teacher import HFBackend, TeacherConfig
from tagger.train import TrainConfig
from tagger.tuning import train_teacher
from tagger.types import QueryInput, TeacherLabel


def test_trimmed_codec_spells_dropped_tokens_in_bytes(tiny_model: Path) -> None:
    _, tok = load_causal_lm(tiny_model)
    keep = select_vocab(tok, ["볼리비아 비자"], top_tokens=0)
    assert len(keep) < len(tok)
    codec = TrimmedCodec(tok, keep).codec()
    text = "Query: 이과수 폭포 Iguazú ЖЖ"
    ids = codec.encode(text)
    assert all(0 <= i < len(keep) for i in ids)
    assert codec.decode(ids) == tok.decode(tok(text, add_special_tokens=False)["input_ids"])
    assert codec.stop_ids and codec.bos_id is not None


def test_student_with_every_layer_and_token_matches_its_teacher(tiny_model: Path) -> None:
    teacher, tok = load_causal_lm(tiny_model)
    keep = list(range(len(tok)))
    full = build_student(teacher, keep, list(range(teacher.config.num_hidden_layers)), TrimmedCodec(tok, keep))
    ids = torch.tensor([tok("Query: 볼리비아 비자\nTags:", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(full(ids).logits, teacher(ids).logits, atol=1e-5)


def test_trimmed_student_logits_are_the_teachers_restricted_to_kept_tokens(tiny_model: Path) -> None:
    teacher, tok = load_causal_lm(tiny_model)
    text = "Query: 볼리비아 비자\nTags:"
    trimmed = TrimmedCodec(tok, select_vocab(tok, [text], top_tokens=0))
    keep = trimmed.keep.tolist()
    student = build_student(teacher, keep, list(range(teacher.config.num_hidden_layers)), trimmed)
    old = tok(text, add_special_tokens=False)["input_ids"]
    assert all(trimmed.new_id(i) is not None for i in old)
    with torch.no_grad():
        t_logits = teacher(torch.tensor([old])).logits[0, :, keep]
        s_logits = student(torch.tensor([trimmed.encode(text)])).logits[0]
    assert torch.allclose(s_logits, t_logits, atol=1e-5)
    fewer = build_student(teacher, keep, [0, 3], trimmed)
    assert fewer.config.num_hidden_layers == 2 and fewer.config.layer_types == ["sliding_attention", "full_attention"]
    with pytest.raises(ClipfeedError, match="increasing indices"):
        build_student(teacher, keep, [3, 0], trimmed)


def _train_rows(gold: list[GoldRow], n: int) -> list[GoldRow]:
    return [r for r in gold if r.split == "train"][:n]


def test_distilled_student_learns_its_training_rows(tiny_student: Path, gold: list[GoldRow], tmp_path: Path) -> None:
    card = json.loads((tiny_student / "model_card.json").read_text())
    assert card["data"]["teacher_labels_used"] == 1 and card["data"]["gold_train_rows"] == 12
    assert sum(f.stat().st_size for f in tiny_student.iterdir()) < 2_000_000
    st = StudentTagger.load(tiny_student, tmp_path)
    assert isinstance(st, IntentTagger)
    rows = _train_rows(gold, 12)
    got = st.tag_batch([r.query for r in rows], [r.docs for r in rows])
    right = sum([t.tag for t in g] == r.tags for g, r in zip(got, rows, strict=True))
    assert right >= 9, [(r.tags, [t.tag for t in g]) for g, r in zip(got, rows, strict=True)]
    assert all(0 < t.score <= 1 for g in got for t in g)
    assert st.tag_batch(["네이버 로그인"]) == [[]]


def test_student_cache_normalises_and_counts(tiny_student: Path, tmp_path: Path) -> None:
    st = StudentTagger.load(tiny_student, tmp_path, cache_size=2)
    first = st.tag_batch(["볼리비아 비자"])
    assert st.misses == 1 and st.hits == 0
    assert st.tag_batch(["  볼리비아   비자 "]) == first and st.hits == 1
    st.tag_batch(["a b", "c d", "e f"])
    assert len(st.cache) == 2  # bounded
    assert st.tag_batch(["", "x" * 500, "\x00\x01"]) == [[], [], []]


def test_merged_student_is_cached_and_reloads_identically(tiny_student: Path, tmp_path: Path) -> None:
    a = StudentTagger.load(tiny_student, tmp_path)
    merged = list((tmp_path / "models").glob("student-*"))
    assert len(merged) == 1 and (merged[0] / "model.safetensors").exists()
    b = StudentTagger.load(tiny_student, tmp_path)
    q = ["이과수 폭포", "손흥민 골"]
    assert a.tag_batch(q) == b.tag_batch(q)


def test_student_examples_drop_abstentions_low_confidence_and_gold_duplicates(gold: list[GoldRow]) -> None:
    rows = _train_rows(gold, 3)
    labels = [
        (QueryInput.of("a"), TeacherLabel([IntentTag("x", 0.9)], 0.9)),
        (QueryInput.of("b"), TeacherLabel([], 0.0, abstained=True, reason="malformed output")),
        (QueryInput.of("c"), TeacherLabel([IntentTag("y", 0.1)], 0.1)),
        (QueryInput.of(rows[0].query, rows[0].docs), TeacherLabel([IntentTag("z", 0.9)], 0.9)),
    ]
    examples, counts = student_examples(labels, rows, StudentConfig(gold_weight=2, min_teacher_confidence=0.3))
    assert counts == {"teacher_labels_used": 1, "teacher_labels_dropped": 3, "gold_train_rows": 3}
    assert len(examples) == 1 + 2 * 3 and examples[0].completion == "x"


def test_train_teacher_writes_an_adapter_the_backend_loads(
    tiny_model: Path, gold: list[GoldRow], tmp_path: Path
) -> None:
    rows = [*_train_rows(gold, 8), *[r for r in gold if r.split == "dev"][:2]]
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, lora_r=4, max_len=96)
    card = train_teacher(tiny_model, rows, tmp_path, TeacherConfig(shots=1, instructions=False), cfg, progress=False)
    assert card["data"] == {"gold_train_rows": 8, "gold_dev_rows": 2}
    assert (tmp_path / "adapter_model.safetensors").exists()
    saved = TeacherConfig.model_validate_json((tmp_path / "teacher_config.json").read_text())
    assert saved.shots == 1 and not saved.instructions
    tuned = HFBackend.load(tiny_model, tmp_path)
    assert "+lora:" in tuned.name
