"""The teacher: few-shot prompts from the gold set, strict parsing, retries, confidence, abstention.

A small teacher is only useful if its mistakes are caught: every generation is parsed against
the strict format of :mod:`tagger.format`; a malformed one is re-sampled (up to ``retries``
times) and then abstained, never accepted. Confidence is the token probability of the answer, or,
with ``samples > 1``, how often independent samples agree with it.

>>> TeacherConfig(shots=2).shots
2
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clipfeed.errors import ClipfeedError
from clipfeed.protocols import IntentTag
from clipfeed.records import GoldRow
from clipfeed.text import normalize
from tagger.exemplars import ExemplarSelector
from tagger.format import SYSTEM, check_query, parse_tags, render_input, render_tags
from tagger.generation import Codec, generate_texts, tag_scores, tokenizer_codec
from tagger.types import ChatPrompt, Generation, QueryInput, TeacherBackend, TeacherLabel


class TeacherConfig(BaseModel):
    """How the teacher is prompted and checked; saved next to a tuned teacher's adapter."""

    model_config = ConfigDict(extra="forbid")

    shots: int = Field(default=4, ge=0, le=16, description="gold exemplars per prompt")
    instructions: bool = Field(default=True, description="prepend the task description (a tuned teacher needs none)")
    diversity: float = Field(default=0.5, ge=0, le=2, description="MMR penalty for exemplars that teach alike")
    max_new_tokens: int = Field(default=24, ge=4, le=128)
    retries: int = Field(default=2, ge=0, le=8, description="re-samples of a malformed or failed answer")
    retry_temperature: float = Field(default=0.7, gt=0, le=2)
    samples: int = Field(default=1, ge=1, le=8, description=">1: confidence = agreement across samples")
    sample_temperature: float = Field(default=0.7, gt=0, le=2)
    min_confidence: float = Field(default=0.0, ge=0, le=1, description="abstain below this confidence")
    seed: int = 0


def render_text_prompt(p: ChatPrompt) -> str:
    """A chat prompt as plain text, for base (non-chat) causal LMs such as Gemma 3 270M."""
    head = f"{p.system}\n\n" if p.system else ""
    shots = "".join(f"{u}\nTags: {a}\n\n" for u, a in p.shots)
    return f"{head}{shots}{p.user}\nTags:"


class HFBackend:
    """A local transformers causal LM (any directory, or the embedded Gemma) as a teacher backend."""

    price_per_1k = (0.0, 0.0)

    def __init__(self, model: Any, tokenizer: Any, name: str, batch_size: int = 16) -> None:
        self.model = model
        self.codec: Codec = tokenizer_codec(tokenizer)
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(cls, model_dir: Path, adapter: Path | None = None, device: str = "cpu", batch_size: int = 16) -> HFBackend:
        from tagger.gemma import load_causal_lm

        model, tokenizer = load_causal_lm(model_dir, device)
        name = f"hf:{model_dir.name}"
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
            name += f"+lora:{_dir_hash(adapter)[:10]}"
        return cls(model, tokenizer, name, batch_size)

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        texts = [render_text_prompt(p) for p in prompts]
        return generate_texts(
            self.model,
            self.codec,
            texts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            batch_size=self.batch_size,
        )


def _dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class Teacher:
    """Labels inputs through a backend; implements the labeling job's ``Labeler`` protocol."""

    def __init__(self, backend: TeacherBackend, gold: Sequence[GoldRow], cfg: TeacherConfig | None = None) -> None:
        self.backend = backend
        self.cfg = cfg or TeacherConfig()
        self.selector = ExemplarSelector(gold, self.cfg.diversity)
        gold_hash = hashlib.sha256(json.dumps([r.model_dump() for r in gold], ensure_ascii=False).encode())
        raw = json.dumps([backend.name, self.cfg.model_dump(), gold_hash.hexdigest(), SYSTEM], ensure_ascii=False)
        self.fingerprint = hashlib.sha256(raw.encode()).hexdigest()[:16]

    def prompt(self, item: QueryInput, exclude_self: bool = False) -> ChatPrompt:
        shots = self.selector.select(
            item.query, item.docs, self.cfg.shots, exclude=item.query if exclude_self else None
        )
        pairs = tuple(
            (render_input(normalize(r.query), [normalize(d) for d in r.docs]), render_tags(r.tags)) for r in shots
        )
        return ChatPrompt(SYSTEM if self.cfg.instructions else "", pairs, render_input(item.query, item.docs))

    def label_batch(self, items: Sequence[QueryInput], exclude_self: bool = False) -> list[TeacherLabel]:
        """One label per input; inputs that cannot be tagged are abstained without a model call."""
        labels: list[TeacherLabel | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            why = check_query(item.query)
            if why is not None:
                labels[i] = TeacherLabel([], 0.0, abstained=True, reason=f"invalid input: {why}", attempts=0)
            else:
                todo.append(i)
        prompts = {i: self.prompt(items[i], exclude_self) for i in todo}
        state: dict[int, dict[str, Any]] = {i: {"pt": 0, "ct": 0, "raw": [], "err": None} for i in todo}
        pending = todo
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            temp = 0.0 if attempt == 0 else self.cfg.retry_temperature
            gens = self.backend.generate(
                [prompts[i] for i in pending],
                max_new_tokens=self.cfg.max_new_tokens,
                temperature=temp,
                seed=self.cfg.seed + attempt,
            )
            still = []
            for i, g in zip(pending, gens, strict=True):
                s = state[i]
                s["pt"] += g.prompt_tokens
                s["ct"] += g.completion_tokens
                s["raw"].append(g.text)
                tags = None if g.error else parse_tags(g.text)
                if tags is None:
                    s["err"] = f"backend: {g.error}" if g.error else "malformed output"
                    still.append(i)
                else:
                    labels[i] = self._scored(tags, g, attempt + 1, s)
            pending = still
        for i in pending:
            s = state[i]
            labels[i] = TeacherLabel([], 0.0, True, s["err"], s["pt"], s["ct"], self.cfg.retries + 1, s["raw"])
        if self.cfg.samples > 1:
            self._agreement([i for i in todo if not labels[i].abstained], prompts, labels)  # type: ignore[union-attr]
        return [lab if lab is not None else TeacherLabel([], 0.0, True, "internal: unlabeled") for lab in labels]

    def _scored(self, tags: list[str], g: Generation, attempts: int, s: dict[str, Any]) -> TeacherLabel:
        scores = tag_scores(tags or ["NONE"], g)
        conf = min(scores) if scores else 1.0
        label = TeacherLabel(
            [IntentTag(t, sc) for t, sc in zip(tags, scores, strict=False)],
            conf,
            reason="" if tags else "no clip intent",
            prompt_tokens=s["pt"],
            completion_tokens=s["ct"],
            attempts=attempts,
            raw=s["raw"],
        )
        if conf < self.cfg.min_confidence:
            label.abstained, label.reason = True, f"low confidence ({conf:.2f} < {self.cfg.min_confidence})"
        return label

    def _agreement(self, idx: list[int], prompts: dict[int, ChatPrompt], labels: list[TeacherLabel | None]) -> None:
        """Confidence as agreement: the share of extra samples that contain each greedy tag."""
        if not idx:
            return
        votes: dict[int, list[set[str]]] = {i: [] for i in idx}
        for k in range(self.cfg.samples - 1):
            gens = self.backend.generate(
                [prompts[i] for i in idx],
                max_new_tokens=self.cfg.max_new_tokens,
                temperature=self.cfg.sample_temperature,
                seed=self.cfg.seed + 100 + k,
            )
            for i, g in zip(idx, gens, strict=True):
                lab = labels[i]
                assert lab is not None
                lab.prompt_tokens += g.prompt_tokens
                lab.completion_tokens += g.completion_tokens
                parsed = parse_tags(g.text)
                votes[i].append({normalize(t) for t in parsed} if parsed is not None else {"\0malformed"})
        for i in idx:
            lab = labels[i]
            assert lab is not None
            n = len(votes[i]) + 1
            if lab.tags:
                lab.tags = [IntentTag(t.tag, (1 + sum(normalize(t.tag) in v for v in votes[i])) / n) for t in lab.tags]
                lab.confidence = sum(t.score for t in lab.tags) / len(lab.tags)
            else:
                lab.confidence = (1 + sum(not v for v in votes[i])) / n
            if lab.confidence < self.cfg.min_confidence:
                lab.abstained, lab.reason = True, f"low confidence ({lab.confidence:.2f} < {self.cfg.min_confidence})"


def load_teacher_config(adapter: Path | None) -> TeacherConfig:
    """A tuned teacher's own config (saved beside its adapter), else the defaults."""
    if adapter is None:
        return TeacherConfig()
    path = adapter / "teacher_config.json"
    if not path.exists():
        raise ClipfeedError(f"{adapter}: no teacher_config.json (not made by `clipfeed tagger train-teacher`)")
    try:
        return TeacherConfig.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ClipfeedError(f"{path}: {e}") from e
