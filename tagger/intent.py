"""The serving tagger: the student behind the ``IntentTagger`` protocol, with an LRU cache.

Searches repeat (a few heads dominate any log), so results are cached by the normalised query and
clicked titles; :meth:`StudentTagger.cache_key` is public so a shared cache (the API's Redis tag
cache) can use the same key. Misses are generated in batches.

>>> StudentTagger.cache_key("  Iguazu  Falls ", ["Tour"])
'iguazu falls\\x1ftour'
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clipfeed.errors import ClipfeedError
from clipfeed.protocols import IntentTag
from tagger.distill import STUDENT_FILES, artifact_hash
from tagger.format import check_query, clean_docs, parse_input, parse_tags
from tagger.generation import Codec, generate_texts, tag_scores
from tagger.student import StudentConfig, TrimmedCodec, build_student, load_vocab, student_prompt
from tagger.types import ChatPrompt, Generation, QueryInput


class StudentTagger:
    """Tags queries with the distilled student. ``tag_batch`` implements ``IntentTagger``."""

    name = "student"

    def __init__(
        self,
        model: Any,
        codec: Codec,
        cfg: StudentConfig,
        cache_size: int = 100_000,
        batch_size: int = 32,
        disk_cache: Path | None = None,
    ) -> None:
        self.model = model
        self.codec = codec
        self.cfg = cfg
        self.cache: OrderedDict[str, list[IntentTag]] = OrderedDict()
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.hits = self.misses = 0
        # results of this exact student persist across processes (a world's searches are tagged once)
        self.disk_cache = disk_cache
        if disk_cache is not None and disk_cache.exists():
            for line in disk_cache.read_text(encoding="utf-8").splitlines()[-cache_size:]:
                try:
                    key, tags = json.loads(line)
                    self.cache[str(key)] = [IntentTag(str(t), float(sc)) for t, sc in tags]
                except (ValueError, TypeError):
                    continue  # a torn last line from a killed process

    @staticmethod
    def cache_key(query: str, docs: Sequence[str] = ()) -> str:
        return _key(_item(query, docs))

    @classmethod
    def load(cls, artifact: Path, cache_dir: Path, device: str = "cpu", **kwargs: Any) -> StudentTagger:
        """Loads a student artifact; the merged model is built once and cached (later loads: ~1 s)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        missing = [n for n in STUDENT_FILES if not (artifact / n).exists()]
        if missing:
            raise ClipfeedError(f"{artifact}: not a student artifact (missing {', '.join(missing)})")
        try:
            cfg = StudentConfig.model_validate_json((artifact / "student_config.json").read_text(encoding="utf-8"))
            keep = load_vocab(artifact / "vocab.json")
        except ValueError as e:
            raise ClipfeedError(f"{artifact}: {e}") from e
        merged = cache_dir / "models" / f"student-{artifact_hash(artifact)}"
        if not (merged / "model.safetensors").exists():
            _merge(artifact, cfg, keep, cache_dir, merged)
        tokenizer = AutoTokenizer.from_pretrained(str(merged))
        model: Any = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
        model = model.to(device).eval()
        if kwargs.pop("persist", False):
            kwargs["disk_cache"] = cache_dir / "tags" / f"{merged.name}.jsonl"
        return cls(model, TrimmedCodec(tokenizer, keep).codec(), cfg, **kwargs)

    def generate(self, items: Sequence[QueryInput]) -> list[Generation]:
        prompts = [student_prompt(i.query, i.docs) for i in items]
        return generate_texts(
            self.model, self.codec, prompts, max_new_tokens=self.cfg.max_new_tokens, batch_size=self.batch_size
        )

    def tag_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[list[IntentTag]]:
        """Tags for each query (with its clicked titles); ``[]`` for no clip intent or untaggable input."""
        out: list[list[IntentTag] | None] = [None] * len(queries)
        todo: dict[str, list[int]] = {}
        items: dict[str, QueryInput] = {}
        for n, q in enumerate(queries):
            if check_query(q) is not None:
                out[n] = []
                continue
            item = _item(q, docs[n] if docs is not None else ())
            key = _key(item)
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
                self.hits += 1
                out[n] = hit
            else:
                todo.setdefault(key, []).append(n)
                items[key] = item
        if todo:
            self.misses += len(todo)
            keys = list(todo)
            fresh = []
            for key, gen in zip(keys, self.generate([items[k] for k in keys]), strict=True):
                tags = parse_tags(gen.text) or []  # malformed student output: no tags, never garbage
                result = [IntentTag(t, round(s, 4)) for t, s in zip(tags, tag_scores(tags, gen), strict=False)]
                self._remember(key, result)
                fresh.append(json.dumps([key, [[t.tag, t.score] for t in result]], ensure_ascii=False))
                for n in todo[key]:
                    out[n] = result
            if self.disk_cache is not None:
                self.disk_cache.parent.mkdir(parents=True, exist_ok=True)
                with self.disk_cache.open("a", encoding="utf-8") as f:
                    f.write("\n".join(fresh) + "\n")
        return [r if r is not None else [] for r in out]

    def _remember(self, key: str, tags: list[IntentTag]) -> None:
        self.cache[key] = tags
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


def _item(query: str, docs: Sequence[str]) -> QueryInput:
    """What the student sees: the normalised query and its cleaned, bounded titles."""
    return QueryInput.of(query, clean_docs(docs))


def _key(item: QueryInput) -> str:
    return "\x1f".join([item.query, *item.docs])


def _merge(artifact: Path, cfg: StudentConfig, keep: list[int], cache_dir: Path, target: Path) -> None:
    """Base weights → trimmed, layer-reduced copy → LoRA merged in → saved (atomically) with the tokenizer."""
    from peft import PeftModel

    from tagger.gemma import load_causal_lm, resolve_model_dir, save_atomically

    base_dir = resolve_model_dir(cfg.base, cache_dir)
    base, tokenizer = load_causal_lm(base_dir, "cpu")
    trimmed = TrimmedCodec(tokenizer, keep)
    student = build_student(base, keep, cfg.layers, trimmed)
    del base
    merged = PeftModel.from_pretrained(student, str(artifact)).merge_and_unload()
    save_atomically(target, merged, tokenizer)


class StudentBackend:
    """The student as a teacher backend (zero-shot: it was trained without exemplars), e.g. to
    relabel a large log cheaply or to serve it over the OpenAI protocol."""

    price_per_1k = (0.0, 0.0)

    def __init__(self, student: StudentTagger) -> None:
        self.student = student
        self.name = f"student:{student.cfg.base}:{student.model.config.num_hidden_layers}L"

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        texts = [student_prompt(*parse_input(p.user)) for p in prompts]
        return generate_texts(
            self.student.model,
            self.student.codec,
            texts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            batch_size=self.student.batch_size,
        )
