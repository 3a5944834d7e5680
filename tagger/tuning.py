"""``clipfeed tagger train-teacher``: LoRA-tune a local teacher on the gold train split.

The tuned teacher is prompted exactly as it was trained (its :class:`TeacherConfig` is saved
beside the adapter), with exemplars chosen for each row from the *other* gold rows so it learns to
use exemplars rather than to recall its own answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipfeed.records import GoldRow
from tagger.format import render_tags
from tagger.generation import tokenizer_codec
from tagger.teacher import HFBackend, Teacher, TeacherConfig, render_text_prompt
from tagger.train import Example, TrainConfig, finetune, lora_model
from tagger.types import QueryInput

TUNED_TEACHER = TeacherConfig(shots=2, instructions=False)
TEACHER_TRAIN = TrainConfig(epochs=3, batch_size=8, lr=3e-4, lora_r=8, lora_alpha=16, max_len=192)


def gold_examples(teacher: Teacher, rows: Sequence[GoldRow], exclude_self: bool) -> list[Example]:
    out = []
    for r in rows:
        item = QueryInput.of(r.query, r.docs)
        out.append(Example(render_text_prompt(teacher.prompt(item, exclude_self=exclude_self)), render_tags(r.tags)))
    return out


def train_teacher(
    model_dir: Path,
    gold: Sequence[GoldRow],
    out: Path,
    teacher_cfg: TeacherConfig = TUNED_TEACHER,
    train_cfg: TrainConfig = TEACHER_TRAIN,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a LoRA adapter for the model in ``model_dir``; writes it, its configs and a card to ``out``."""
    from tagger.gemma import load_causal_lm

    model, tokenizer = load_causal_lm(model_dir, device)
    codec = tokenizer_codec(tokenizer)
    train_rows = [r for r in gold if r.split == "train"]
    dev_rows = [r for r in gold if r.split == "dev"]
    teacher = Teacher(HFBackend(model, tokenizer, f"hf:{model_dir.name}"), train_rows, teacher_cfg)
    train = gold_examples(teacher, train_rows, exclude_self=True)
    dev = gold_examples(teacher, dev_rows, exclude_self=False)
    peft_model = lora_model(model, train_cfg)
    stats = finetune(peft_model, codec, codec.newline_id(), train, train_cfg, dev, progress, "train-teacher")
    out.mkdir(parents=True, exist_ok=True)
    peft_model.peft_config["default"].base_model_name_or_path = "gemma-3-270m"  # not a local path
    peft_model.save_pretrained(str(out))
    (out / "teacher_config.json").write_text(teacher_cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out / "train_config.json").write_text(train_cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
    card = {
        "kind": "clipfeed tuned teacher (LoRA adapter)",
        "base": model_dir.name,
        "data": {"gold_train_rows": len(train), "gold_dev_rows": len(dev)},
        "seed": train_cfg.seed,
        "training": stats,
        "reproduce": "clipfeed tagger train-teacher --out DIR --seed SEED",
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return card
