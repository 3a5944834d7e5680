"""LoRA fine-tuning with the loss on the completion only, for the tuned teacher and the student.

Sequences are left-padded so every completion ends at the right edge; the model then computes
logits only for the last ``K`` positions (``logits_to_keep``), which matters for Gemma's 262k-token
output layer: the prompt positions would cost far more than the rest of the step and teach nothing.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from tagger.generation import Codec


class TrainConfig(BaseModel):
    """Optimisation settings; saved with every trained adapter."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(default=2.0, gt=0, le=200)
    batch_size: int = Field(default=16, ge=1, le=512)
    lr: float = Field(default=3e-4, gt=0, le=1)
    warmup: float = Field(default=0.05, ge=0, lt=1, description="share of steps with a linear warm-up")
    weight_decay: float = Field(default=0.0, ge=0)
    lora_r: int = Field(default=16, ge=1, le=256)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    max_len: int = Field(default=256, ge=8, le=4096, description="tokens per example (prompt cut from the left)")
    keep_best: bool = Field(default=True, description="keep the epoch with the lowest dev loss")
    seed: int = 0


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str  # what the model must write after the prompt, without the final newline


def encode_example(codec: Codec, ex: Example, newline_id: int, max_len: int) -> tuple[list[int], int]:
    """(ids, completion length): bos + prompt + completion + newline, the prompt cut to fit."""
    target = [*codec.encode(" " + ex.completion.strip()), newline_id]
    prompt = codec.encode(ex.prompt)
    room = max(1, max_len - len(target) - 1)
    ids = ([codec.bos_id] if codec.bos_id is not None else []) + prompt[-room:] + target
    return ids, len(target)


def lora_model(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def completion_loss(model: Any, batch: Sequence[tuple[list[int], int]], pad_id: int) -> Any:
    """Mean cross-entropy over the completion tokens of a left-padded batch."""
    import torch
    import torch.nn.functional as F

    width = max(len(ids) for ids, _ in batch)
    k = max(n for _, n in batch)
    device = next(model.parameters()).device
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    valid = torch.zeros((len(batch), k), dtype=torch.bool)
    for r, (seq, n) in enumerate(batch):
        ids[r, width - len(seq) :] = torch.tensor(seq)
        mask[r, width - len(seq) :] = 1
        valid[r, k - n :] = True
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, pos, valid = ids.to(device), mask.to(device), pos.to(device), valid.to(device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=k + 1).logits[:, :-1]
    targets = ids[:, width - k :]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (loss * valid.reshape(-1)).sum() / valid.sum()


def finetune(
    model: Any,
    codec: Codec,
    newline_id: int,
    train: Sequence[Example],
    cfg: TrainConfig,
    dev: Sequence[Example] = (),
    progress: bool = True,
    desc: str = "train",
) -> dict[str, Any]:
    """Trains ``model`` (already wrapped with LoRA) in place; returns losses and timings."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    data = [encode_example(codec, ex, newline_id, cfg.max_len) for ex in train]
    dev_data = [encode_example(codec, ex, newline_id, cfg.max_len) for ex in dev]
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = max(1, round(steps_per_epoch * cfg.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * total), total)  # type: ignore[no-untyped-call]
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
    step, running = 0, 0.0
    best: tuple[float, dict[str, Any]] | None = None  # (dev loss, trainable weights) of the best epoch
    while step < total:
        # batches of similar length (little padding), in a seeded random order
        order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        rng.shuffle(batches)
        for b in batches:
            if step >= total:
                break
            loss = completion_loss(model, [data[i] for i in b], codec.pad_id)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            running = 0.9 * running + 0.1 * value if step > 1 else value
            bar.set_postfix(loss=f"{running:.3f}")
            bar.update(1)
        epoch_stats = {"step": float(step), "train_loss": round(running, 4)}
        if dev_data:
            dev_loss = evaluate_loss(model, dev_data, codec.pad_id, cfg.batch_size)
            epoch_stats["dev_loss"] = round(dev_loss, 4)
            if cfg.keep_best and (best is None or dev_loss < best[0]):
                trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                best = (dev_loss, trainable)
        history.append(epoch_stats)
    bar.close()
    kept = len(history)
    if best is not None:  # early stopping, after the fact: the epoch with the lowest dev loss wins
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in best[1]:
                    p.copy_(best[1][n])
        kept = 1 + [h.get("dev_loss") for h in history].index(round(best[0], 4))
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - t0, 1), "history": history, "kept_epoch": kept}


def evaluate_loss(model: Any, data: Sequence[tuple[list[int], int]], pad_id: int, batch_size: int) -> float:
    import torch

    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = data[i : i + batch_size]
            total += float(completion_loss(model, batch, pad_id)) * len(batch)
            n += len(batch)
    if was_training:
        model.train()
    return total / max(1, n)
