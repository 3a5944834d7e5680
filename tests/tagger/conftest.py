"""Tiny models built in code (no hub downloads): a byte-fallback BPE tokenizer trained on the gold
set and a 4-layer Gemma 3 with random weights, saved as a transformers directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipfeed.jsonl import read_gold
from clipfeed.records import GoldRow
from tagger.distill import distill
from tagger.student import StudentConfig
from tagger.train import TrainConfig
from tagger.types import QueryInput, TeacherLabel

GOLD = Path(__file__).resolve().parents[2] / "clipfeed" / "data" / "gold.jsonl"


@pytest.fixture(scope="session")
def gold() -> list[GoldRow]:
    return list(read_gold(GOLD))


def build_tiny_model(out: Path, texts: list[str], layers: int = 4, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False)
    tok.train_from_iterator([*texts, "Query: Clicked: Tags: NONE, |\n"], trainer)
    # byte-fallback tokens are ordinary vocabulary entries, as in Gemma's tokenizer
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2),
        sliding_window=64,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, gold: list[GoldRow]) -> Path:
    texts = [" ".join([r.query, *r.docs, *r.tags]) for r in gold]
    return build_tiny_model(tmp_path_factory.mktemp("tiny_lm"), texts)


def _train_rows(gold: list[GoldRow], n: int) -> list[GoldRow]:
    return [r for r in gold if r.split == "train"][:n]


@pytest.fixture(scope="session")
def tiny_student(tiny_model: Path, gold: list[GoldRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student distilled end to end from teacher labels and gold rows (overfits on purpose)."""
    rows = _train_rows(gold, 12)
    labels = [(QueryInput.of("네이버 로그인"), TeacherLabel([], 0.9, reason="no clip intent"))]
    cfg = StudentConfig(
        base=str(tiny_model),
        layers=[0, 3],
        top_tokens=0,
        gold_weight=1,
        train=TrainConfig(epochs=60, batch_size=13, lr=3e-3, lora_r=8, warmup=0.0, lora_dropout=0.0, keep_best=False),
    )
    out = tmp_path_factory.mktemp("student")
    card = distill(tiny_model, labels, [*rows, *[r for r in gold if r.split == "dev"][:4]], out, cfg, progress=False)
    hist = card["training"]["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    return out
