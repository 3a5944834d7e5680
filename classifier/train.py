"""Training with early stopping on a dev split, then temperature scaling for calibration."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from classifier.config import TopicModelConfig
from classifier.data import TopicRow
from classifier.features import featurize
from classifier.model import HashedTopicNet, pack


def encode(rows: Sequence[TopicRow], cfg: TopicModelConfig) -> list[list[int]]:
    return [featurize(r.text, r.query, n_buckets=cfg.n_buckets, min_n=cfg.min_n, max_n=cfg.max_n) for r in rows]


def logits_of(net: HashedTopicNet, feats: Sequence[Sequence[int]], batch: int = 512) -> torch.Tensor:
    net.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(feats), batch):
            outs.append(net(*pack(feats[i : i + batch])))
    return torch.cat(outs) if outs else torch.empty(0, net.out.out_features)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature that minimises dev NLL (grid search in log space, then a finer grid)."""
    if len(targets) == 0:
        return 1.0
    loss = nn.CrossEntropyLoss()

    def nll(t: float) -> float:
        return float(loss(logits / t, targets))

    grid = np.exp(np.linspace(math.log(0.2), math.log(10.0), 60))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.9, best * 1.1, 21)
    return float(min(fine, key=nll))


def split_dev(rows: list[TopicRow], share: float, seed: int) -> tuple[list[TopicRow], list[TopicRow]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(len(rows) * share)) if len(rows) >= 10 else 0
    dev_idx = set(order[:n_dev])
    return [r for i, r in enumerate(rows) if i not in dev_idx], [r for i, r in enumerate(rows) if i in dev_idx]


def train(
    rows: list[TopicRow],
    cfg: TopicModelConfig,
    dev: list[TopicRow] | None = None,
    *,
    progress: bool = True,
) -> tuple[HashedTopicNet, TopicModelConfig, dict[str, float]]:
    """Trains a model on ``rows``; returns the net (best dev epoch), the config with labels and the
    calibrated temperature, and training figures."""
    if dev is None:
        rows, dev = split_dev(rows, 0.1, cfg.seed)
    labels = sorted({r.label for r in rows} | {r.label for r in dev})
    cfg = cfg.model_copy(update={"labels": labels})
    index = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    net = HashedTopicNet(cfg.n_buckets, cfg.dim, len(labels), cfg.dropout)
    x_train, y_train = encode(rows, cfg), [index[r.label] for r in rows]
    x_dev = encode(dev, cfg)
    y_dev = torch.tensor([index[r.label] for r in dev], dtype=torch.long)
    sparse_opt = torch.optim.SparseAdam(list(net.emb.parameters()), lr=cfg.lr)
    dense_opt = torch.optim.AdamW(list(net.out.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    best_epoch, patience = 0, 3
    order = list(range(len(x_train)))
    steps = math.ceil(len(order) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps, desc="classifier: train", unit="batch", disable=not progress)
    for epoch in range(cfg.epochs):
        net.train()
        rng.shuffle(order)
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            logits = net(*pack([x_train[i] for i in idx]))
            loss = loss_fn(logits, torch.tensor([y_train[i] for i in idx], dtype=torch.long))
            sparse_opt.zero_grad()
            dense_opt.zero_grad()
            loss.backward()
            sparse_opt.step()  # type: ignore[no-untyped-call]
            dense_opt.step()
            bar.update(1)
        dev_logits = logits_of(net, x_dev)
        dev_loss = float(loss_fn(dev_logits, y_dev)) if len(y_dev) else 0.0
        # Select by dev accuracy, not loss: the loss turns up as soon as the model grows
        # over-confident, which temperature scaling corrects afterwards anyway.
        dev_err = float((dev_logits.argmax(1) != y_dev).float().mean()) if len(y_dev) else -epoch
        bar.set_postfix(epoch=epoch + 1, dev_loss=f"{dev_loss:.3f}", dev_err=f"{dev_err:.3f}")
        if best is None or dev_err < best[0]:
            best = (dev_err, {k: v.clone() for k, v in net.state_dict().items()})
            best_epoch = epoch
        elif epoch - best_epoch >= patience:
            break  # early stopping: the dev loss has not improved for `patience` epochs
    bar.close()
    assert best is not None
    net.load_state_dict(best[1])
    dev_logits = logits_of(net, x_dev)
    temperature = fit_temperature(dev_logits, y_dev)
    cfg = cfg.model_copy(update={"temperature": temperature})
    dev_acc = float((dev_logits.argmax(1) == y_dev).float().mean()) if len(y_dev) else float("nan")
    figures = {
        "train_rows": len(rows),
        "dev_rows": len(dev),
        "best_epoch": best_epoch + 1,
        "dev_error": best[0],
        "dev_accuracy": dev_acc,
        "temperature": temperature,
        "parameters": net.n_parameters(),
    }
    return net, cfg, figures
