"""``clipfeed tagger distill``: train the student on teacher labels plus the gold train rows.

Teacher labels below ``min_teacher_confidence`` and abstentions are left out (a student trained on
its teacher's guesses learns the guesses); ``NONE`` answers stay in, so the student learns to say
no to navigation and paperwork. Gold train rows are repeated ``gold_weight`` times because they
are the only labels a person checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clipfeed.records import GoldRow
from clipfeed.text import normalize
from tagger.format import render_tags
from tagger.student import StudentConfig, TrimmedCodec, build_student, select_vocab, student_prompt
from tagger.train import Example, finetune, lora_model
from tagger.types import QueryInput, TeacherLabel

STUDENT_FILES = ("student_config.json", "vocab.json", "adapter_config.json", "adapter_model.safetensors")


def student_examples(
    labels: Sequence[tuple[QueryInput, TeacherLabel]], gold: Sequence[GoldRow], cfg: StudentConfig
) -> tuple[list[Example], dict[str, int]]:
    """Training examples and how many came from where."""
    out: list[Example] = []
    gold_keys = {QueryInput.of(r.query, r.docs) for r in gold}
    used = dropped = 0
    for item, label in labels:
        if label.abstained or label.confidence < cfg.min_teacher_confidence or item in gold_keys:
            dropped += 1
            continue
        out.append(Example(student_prompt(item.query, item.docs), render_tags([t.tag for t in label.tags])))
        used += 1
    rows = [r for r in gold if r.split == "train"]
    for _ in range(cfg.gold_weight):
        for r in rows:
            docs = [normalize(d) for d in r.docs]
            out.append(Example(student_prompt(normalize(r.query), docs), render_tags(r.tags)))
    return out, {"teacher_labels_used": used, "teacher_labels_dropped": dropped, "gold_train_rows": len(rows)}


def distill(
    base_dir: Path,
    labels: Sequence[tuple[QueryInput, TeacherLabel]],
    gold: Sequence[GoldRow],
    out: Path,
    cfg: StudentConfig | None = None,
    extra_texts: Iterable[str] = (),
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Builds, trains and saves the student in ``out``; returns its model card."""
    import torch

    from tagger.gemma import load_causal_lm

    cfg = cfg or StudentConfig()
    torch.manual_seed(cfg.train.seed)
    base, tokenizer = load_causal_lm(base_dir, device)
    train, counts = student_examples(labels, gold, cfg)
    dev_rows = [r for r in gold if r.split == "dev"]
    dev = [
        Example(student_prompt(normalize(r.query), [normalize(d) for d in r.docs]), render_tags(r.tags))
        for r in dev_rows
    ]
    texts = [e.prompt + " " + e.completion for e in [*train, *dev]]
    keep = select_vocab(tokenizer, [*texts, *extra_texts], cfg.top_tokens)
    trimmed = TrimmedCodec(tokenizer, keep)
    codec = trimmed.codec()
    student = build_student(base, keep, cfg.layers, trimmed).to(device)
    del base
    model = lora_model(student, cfg.train)
    stats = finetune(model, codec, codec.newline_id(), train, cfg.train, dev, progress, "distill")
    out.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = "clipfeed-student-skeleton"  # not a local path
    _save_fp16(model, out)
    (out / "README.md").unlink(missing_ok=True)  # peft's hub card template; model_card.json is ours
    (out / "vocab.json").write_text(json.dumps(keep) + "\n", encoding="utf-8")
    (out / "student_config.json").write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
    params = sum(p.numel() for p in student.parameters())
    card = {
        "kind": "clipfeed student tagger (trimmed-vocabulary, layer-reduced copy of the base + LoRA adapter)",
        "base": cfg.base,
        "layers": cfg.layers or list(range(student.config.num_hidden_layers)),
        "vocab_size": len(keep),
        "parameters": params,
        "data": {**counts, "examples": len(train), "gold_dev_rows": len(dev)},
        "seed": cfg.train.seed,
        "training": stats,
        "reproduce": "make tagger-model (see README: clipfeed tagger label + distill with --seed 0)",
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return card


def artifact_hash(path: Path) -> str:
    """Changes whenever any file that defines the student changes (keys the merged-model cache)."""
    h = hashlib.sha256()
    for name in STUDENT_FILES:
        f = path / name
        h.update(name.encode())
        h.update(f.read_bytes() if f.exists() else b"")
    return h.hexdigest()[:16]


def _save_fp16(model: Any, out: Path) -> None:
    """The adapter in float16: half the bytes in git, and LoRA deltas lose nothing that matters."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(str(out), save_embedding_layers=False)  # embeddings come from the base
    path = out / "adapter_model.safetensors"
    tensors = {k: v.to(torch.float16) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
