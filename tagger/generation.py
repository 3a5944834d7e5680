"""Batched greedy/sampled generation with per-token log-probabilities, for teacher and student.

Both are causal LMs; the student additionally maps token ids through its trimmed vocabulary, so
the text ↔ id step is a small :class:`Codec` and everything else (left padding, stopping at the
end of the line, transformers' ``generate`` and ``compute_transition_scores``) is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tagger.types import Generation


@dataclass
class Codec:
    """Text ↔ model ids: the tokenizer's, or those of a trimmed vocabulary."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    piece: Callable[[int], str]  # one id's text, for the tokens reported with log-probs
    pad_id: int
    bos_id: int | None
    stop_ids: list[int]  # end of sequence and the pure-newline tokens: one output line only

    def newline_id(self) -> int:
        """The token that ends an answer line (training appends it to every completion)."""
        return self.encode("\n")[-1]


def newline_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokenizer's pieces made only of newlines (any of them ends the one output line)."""
    return [i for p, i in tokenizer.get_vocab().items() if p and p.strip("\n") == ""]


def tokenizer_codec(tokenizer: Any) -> Codec:
    """The codec of a plain transformers tokenizer (the teacher's)."""
    stops = sorted({tokenizer.eos_token_id, *newline_token_ids(tokenizer)} - {None})
    return Codec(
        encode=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        piece=lambda i: tokenizer.decode([i]),
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        bos_id=tokenizer.bos_token_id,
        stop_ids=stops,
    )


def generate_texts(
    model: Any,
    codec: Codec,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
) -> list[Generation]:
    """One :class:`Generation` per prompt, in order; batched with left padding."""
    import torch

    out: list[Generation] = []
    device = next(model.parameters()).device
    encoded = [([codec.bos_id] if codec.bos_id is not None else []) + codec.encode(p) for p in prompts]
    # similar lengths batch together: less padding, same results
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), codec.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = encoded[i]
            ids[r, width - len(seq) :] = torch.tensor(seq)
            mask[r, width - len(seq) :] = 1
        kwargs: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            torch.manual_seed(seed + start)
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                eos_token_id=codec.stop_ids,
                pad_token_id=codec.pad_id,
                output_scores=True,
                return_dict_in_generate=True,
                **kwargs,
            )
            scores = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)
        new = gen.sequences[:, width:].tolist()
        for r, i in enumerate(idx):
            toks, lps = [], []
            for t, lp in zip(new[r], scores[r].tolist(), strict=False):
                if t in codec.stop_ids:
                    break
                toks.append(t)
                lps.append(float(lp))
            results[i] = Generation(
                text=codec.decode(toks),
                prompt_tokens=len(encoded[i]),
                completion_tokens=len(toks) + 1,
                logprobs=lps,
                tokens=[codec.piece(t) for t in toks],
            )
    out = [results[i] for i in range(len(prompts))]
    return out


def tag_scores(tags: Sequence[str], gen: Generation) -> list[float]:
    """Each tag's probability: exp of the mean log-prob of the tokens that spell it.

    Tokens are matched to tags by walking the generated text; a tag whose tokens cannot be found
    (a backend without log-probs) scores 1.0, and the caller treats confidence as unknown.
    """
    import math

    if not tags:
        return []
    if not gen.logprobs or not gen.tokens:
        return [1.0] * len(tags)
    spans: list[list[float]] = [[] for _ in tags]
    text = ""
    for tok, lp in zip(gen.tokens, gen.logprobs, strict=False):
        lead = len(tok) - len(tok.lstrip(" ,"))
        j = (text + tok[:lead]).count(",")  # commas before this token's letters: which tag it spells
        text += tok
        if tok[lead:].strip(" ,") and j < len(tags):
            spans[j].append(lp)
    return [math.exp(sum(s) / len(s)) if s else 1.0 for s in spans]
