"""``TopicClassifier``: load a trained topic model and predict calibrated topics for tags.

>>> clf = TopicClassifier.load()  # the shipped model
>>> clf.predict_one("오타니 홈런").topics[0].id
'545'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from classifier.config import TopicModelConfig
from classifier.data import MAX_CHARS
from classifier.features import featurize
from classifier.model import HashedTopicNet, pack
from clipfeed.errors import ClipfeedError, InputError
from clipfeed.protocols import TopicScore

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# Text the model can read: Hangul, Latin letters or digits. Anything else is reported as unknown.
_READABLE = re.compile(r"[0-9A-Za-z\u00C0-\u024F\u1100-\u11FF\u3130-\u318F\uAC00-\uD7A3]")


def shipped_model_dir() -> Path:
    return Path(str(resources.files("classifier") / "shipped"))


@dataclass(frozen=True)
class TopicPrediction:
    text: str
    query: str
    topics: tuple[TopicScore, ...]  # best first, calibrated probabilities
    unknown: str | None = None  # why no prediction could be made (unreadable text)


class TopicClassifier:
    """A trained topic model and its config; ``predict`` is batched."""

    def __init__(self, net: HashedTopicNet, cfg: TopicModelConfig) -> None:
        self.net = net.eval()
        self.cfg = cfg

    @classmethod
    def load(cls, directory: str | Path | None = None) -> TopicClassifier:
        path = Path(directory) if directory is not None else shipped_model_dir()
        cfg = TopicModelConfig.load(path / CONFIG)
        try:
            state = {k: v.float() for k, v in load_file(str(path / WEIGHTS)).items()}
        except (FileNotFoundError, OSError) as e:
            raise ClipfeedError(f"{path / WEIGHTS}: cannot load topic model weights: {e}") from e
        net = HashedTopicNet(cfg.n_buckets, cfg.dim, len(cfg.labels), cfg.dropout)
        emb = state.get("emb.weight")
        if emb is None or tuple(emb.shape) != (cfg.n_buckets, cfg.dim):
            raise ClipfeedError(f"{path}: weights do not match config.json (buckets/dim/labels)")
        net.load_state_dict(state)
        return cls(net, cfg)

    def save(self, directory: str | Path) -> None:
        """Weights in float16 safetensors (half the size; predictions agree to ~1e-3) + config."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path / WEIGHTS))
        self.cfg.save(path / CONFIG)

    @staticmethod
    def check_text(text: str) -> str:
        """The text stripped; empty or over-long text is an error that names the limit."""
        stripped = text.strip()
        if not stripped:
            raise InputError("text", None, "text", "empty text")
        if len(stripped) > MAX_CHARS:
            raise InputError("text", None, "text", f"text is {len(stripped)} characters, limit {MAX_CHARS}")
        return stripped

    def predict(self, items: Sequence[tuple[str, str]], top_k: int | None = None) -> list[TopicPrediction]:
        """Predicts for ``(text, query)`` pairs; raises InputError on empty or over-long text."""
        k = min(top_k or self.cfg.filter.max_topics, len(self.cfg.labels))
        texts = [(self.check_text(t), q.strip()[:MAX_CHARS]) for t, q in items]
        readable = [bool(_READABLE.search(t)) for t, _ in texts]
        feats = [
            featurize(t, q, n_buckets=self.cfg.n_buckets, min_n=self.cfg.min_n, max_n=self.cfg.max_n) for t, q in texts
        ]
        out: list[TopicPrediction] = []
        if feats:
            with torch.inference_mode():
                probs = torch.softmax(self.net(*pack(feats)) / self.cfg.temperature, dim=1)
            top_p, top_i = probs.topk(k, dim=1)
        for n, (t, q) in enumerate(texts):
            if not readable[n]:
                out.append(TopicPrediction(t, q, (), unknown="no Korean or English text to read"))
                continue
            scores = tuple(
                TopicScore(self.cfg.labels[int(i)], round(float(p), 4)) for p, i in zip(top_p[n], top_i[n], strict=True)
            )
            out.append(TopicPrediction(t, q, scores))
        return out

    def predict_one(self, text: str, query: str = "", top_k: int | None = None) -> TopicPrediction:
        return self.predict([(text, query)], top_k)[0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sub-word embedding of each text (implements ``clipfeed.protocols.TextEncoder``)."""
        feats = [
            featurize(t, "", n_buckets=self.cfg.n_buckets, min_n=self.cfg.min_n, max_n=self.cfg.max_n) for t in texts
        ]
        if not feats:
            return np.zeros((0, self.cfg.dim), dtype=np.float32)
        with torch.inference_mode():
            vecs = self.net.emb(*pack(feats)).numpy().astype(np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        out: np.ndarray = vecs / np.maximum(norms, 1e-9)
        return out

    def probabilities(self, items: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Calibrated probabilities over all labels (for evaluation)."""
        feats = [
            featurize(t, q, n_buckets=self.cfg.n_buckets, min_n=self.cfg.min_n, max_n=self.cfg.max_n) for t, q in items
        ]
        with torch.inference_mode():
            return torch.softmax(self.net(*pack(feats)) / self.cfg.temperature, dim=1)
