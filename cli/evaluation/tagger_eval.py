"""Tagger evaluation: the gold set, teacher vs student vs baselines against gold (P/R/F1, agreement,
per pattern and language, errors), cost and latency per query, the frequent-pattern bias of a search
log before and after pattern capping, and the models on real queries.

Models: ``teacher`` (embedded Gemma 3 270M + the shipped LoRA adapter), ``student`` (the shipped
distilled student), ``standin`` (the query and each clicked title as tags: what feeds use by
default) and ``copy_query`` (the query as the only tag).

>>> stats = gold_statistics(_example_gold())
>>> stats["rows"], stats["by_split"], stats["tagless_rows"]
(2, {'test': 1, 'train': 1}, 1)
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from clipfeed.jsonl import read_gold
from clipfeed.records import GoldRow
from clipfeed.text import normalize
from recommender import QueryAsTagTagger
from tagger import PatternModel, QueryInput, agreement, cap_patterns, evaluate_model, prf, read_label_inputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TagFn = Callable[[Sequence[QueryInput]], list[list[str]]]
COST_KEYS = ("ms_per_query", "cpu_ms_per_query", "single_ms_per_query", "single_cpu_ms_per_query")


@dataclass
class Tagger:
    """One model under evaluation: its batch tag function and what it costs to hold."""

    name: str
    fn: TagFn
    parameters: int = 0
    price_per_1k: tuple[float, float] = (0.0, 0.0)  # USD per 1,000 prompt / completion tokens
    calls: list[tuple[int, int, int]] = field(default_factory=list)  # (inputs, prompt tokens, completion tokens)


def _example_gold() -> list[GoldRow]:
    return [
        GoldRow(query="볼리비아 비자", docs=[], tags=["볼리비아 여행"], topics=["655"], split="train", lang="ko"),
        GoldRow(query="naver login", docs=[], tags=[], topics=["CF1"], split="test", lang="en"),
    ]


def load_gold(world: Path) -> list[GoldRow]:
    return list(read_gold(world / "gold.jsonl"))


def gold_statistics(rows: Sequence[GoldRow]) -> dict[str, Any]:
    """Size and balance of the gold set: rows per split, pattern and language, tags per row."""
    tags = Counter(len(r.tags) for r in rows)
    return {
        "rows": len(rows),
        "by_split": dict(sorted(Counter(r.split or "train" for r in rows).items())),
        "by_pattern": dict(sorted(Counter(r.pattern or "?" for r in rows).items())),
        "by_language": dict(sorted(Counter(r.lang or "?" for r in rows).items())),
        "tags_per_row": {str(k): v for k, v in sorted(tags.items())},
        "rows_with_docs": sum(bool(r.docs) for r in rows),
        "tagless_rows": sum(not r.tags for r in rows),
        "largest_pattern_share": round(max(Counter(r.pattern for r in rows).values()) / len(rows), 4) if rows else 0.0,
    }


def load_taggers(names: Sequence[str], gold: Sequence[GoldRow], device: str = "cpu") -> dict[str, Tagger]:
    """The named models (loading the LLMs takes seconds once their checkpoints are cached)."""
    out: dict[str, Tagger] = {}
    for name in names:
        if name == "copy_query":
            out[name] = Tagger(name, lambda items: [[i.query] if i.query else [] for i in items])
        elif name == "standin":
            standin = QueryAsTagTagger()

            def tag_standin(items: Sequence[QueryInput], t: QueryAsTagTagger = standin) -> list[list[str]]:
                tags = t.tag_batch([i.query for i in items], [list(i.docs) for i in items])
                return [[x.tag for x in ts] for ts in tags]

            out[name] = Tagger(name, tag_standin)
        elif name == "student":
            out[name] = _student()
        elif name == "teacher":
            out[name] = _teacher(gold, device)
        else:
            raise ValueError(f"unknown tagger model {name!r}")
    return out


def _student() -> Tagger:
    from cli.tagger import load_student

    st = load_student(None)

    def fn(items: Sequence[QueryInput]) -> list[list[str]]:
        st.cache.clear()  # measure generation, not the cache
        return [[t.tag for t in ts] for ts in st.tag_batch([i.query for i in items], [list(i.docs) for i in items])]

    return Tagger("student", fn, sum(p.numel() for p in st.model.parameters()))


def _teacher(gold: Sequence[GoldRow], device: str) -> Tagger:
    from cli.tagger import build_teacher

    te = build_teacher("embedded", "shipped", list(gold), device, 16)
    tagger = Tagger("teacher", lambda items: [], sum(p.numel() for p in te.backend.model.parameters()))
    p_in, p_out = te.backend.price_per_1k
    tagger.price_per_1k = (float(p_in), float(p_out))

    def fn(items: Sequence[QueryInput]) -> list[list[str]]:
        labels = te.label_batch(list(items))
        tagger.calls.append(
            (len(items), sum(lb.prompt_tokens for lb in labels), sum(lb.completion_tokens for lb in labels))
        )
        return [[t.tag for t in lb.tags] for lb in labels]

    tagger.fn = fn
    return tagger


def evaluate_taggers(taggers: dict[str, Tagger], rows: Sequence[GoldRow], progress: bool = False) -> dict[str, Any]:
    """Quality (against gold), pairwise agreement and cost of every model on ``rows``; also the
    predictions (``predictions``: model -> tags per row) for galleries."""
    quality: dict[str, Any] = {}
    cost: dict[str, Any] = {}
    preds: dict[str, list[list[str]]] = {}
    gold = [r.tags for r in rows]
    for name, t in tqdm(taggers.items(), desc="tagger: gold test split", unit="model", disable=not progress):
        t0 = time.perf_counter()
        m = evaluate_model(t.fn, rows)
        preds[name] = m.pop("predictions")
        by_lang: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_lang[r.lang or "?"].append(i)
        m["per_language_f1"] = {
            lang: prf([gold[i] for i in ix], [preds[name][i] for i in ix], fuzzy=True)["f1"]
            for lang, ix in sorted(by_lang.items())
        }
        m["no_tags_share"] = round(sum(not p for p in preds[name]) / max(1, len(rows)), 4)
        c = {k: m.pop(k) for k in COST_KEYS}
        c["parameters"] = t.parameters
        if t.calls:  # tokens of the batched pass over all rows (the largest call)
            n, p_tok, c_tok = max(t.calls)
            c["prompt_tokens_per_query"] = round(p_tok / max(n, 1), 1)
            c["completion_tokens_per_query"] = round(c_tok / max(n, 1), 1)
            p_in, p_out = t.price_per_1k
            c["usd_per_1k_queries"] = round((p_tok * p_in + c_tok * p_out) / max(n, 1), 6)
        c["eval_seconds"] = round(time.perf_counter() - t0, 2)
        quality[name] = m
        cost[name] = c
    pairs = {f"{a}~{b}": agreement(preds[a], preds[b]) for a, b in combinations(list(taggers), 2)}
    return {"rows": len(rows), "models": quality, "agreement": pairs, "cost": cost, "predictions": preds}


def row_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    return prf([gold], [pred], fuzzy=True)["f1"]


def error_gallery(
    rows: Sequence[GoldRow], predictions: dict[str, list[list[str]]], by: str | None = None, n: int = 12
) -> list[dict[str, Any]]:
    """The ``n`` rows that model ``by`` (default: the first model) gets most wrong, with every model's tags."""
    if not predictions:
        return []
    by = by or next(iter(predictions))
    scored = sorted(
        ((row_f1(r.tags, predictions[by][i]), r.query, i) for i, r in enumerate(rows)), key=lambda x: (x[0], x[1])
    )
    out = []
    for f1, _, i in scored[:n]:
        r = rows[i]
        row: dict[str, Any] = {"query": r.query, "docs": list(r.docs), "pattern": r.pattern, "lang": r.lang}
        row["gold"] = list(r.tags)
        row.update({name: p[i] for name, p in predictions.items()})
        row[f"{by}_f1"] = f1
        out.append(row)
    return out


def pattern_bias(world: Path, max_share: float = 0.03, top: int = 10, seed: int = 0) -> dict[str, Any]:
    """How much a few query templates dominate the world's search log, before and after capping
    (what the labeling job does with ``--max-share``): the largest template patterns' shares, and
    the shares of the simulator's own query kinds (``truth/queries.jsonl``) among the unique inputs."""
    inputs = read_label_inputs(world / "queries.jsonl")
    items, counts = [q for q, _ in inputs], [n for _, n in inputs]
    model = PatternModel.fit([q.query for q in items])
    keys = [model.key(q.query) for q in items]
    kept, stats = cap_patterns(items, keys, None, max_share, seed, counts=counts, top=top)
    kind_of: dict[str, str] = {}
    truth = world / "truth" / "queries.jsonl"
    if truth.exists():
        for line in truth.read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            kind_of.setdefault(normalize(q["query"]), q["pattern"])
    kinds_before = Counter(kind_of.get(q.query, "?") for q in items)
    kinds_after = Counter(kind_of.get(items[i].query, "?") for i in kept)
    raw_total = sum(counts)
    return {
        "raw_queries": raw_total,
        "unique_inputs": len(items),
        "max_share": max_share,
        "template_words": len(model.template_words),
        **stats.to_dict(),
        "query_kinds": {
            k: {
                "before": round(kinds_before[k] / max(1, len(items)), 4),
                "after": round(kinds_after[k] / max(1, len(kept)), 4),
            }
            for k, _ in kinds_before.most_common()
        },
    }


def magnetic_queries(shared_data: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct real queries from ``magnetic_queries/dev.tsv`` (seeded sample); [] when absent."""
    path = shared_data / "magnetic_queries" / "dev.tsv"
    if n <= 0 or not path.exists():
        return []
    rows = sorted({line.split("\t")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()} - {""})
    random.Random(seed).shuffle(rows)
    return rows[:n]


def real_queries(
    taggers: dict[str, Tagger], shared_data: Path, n: int, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Every model on real English web queries (no gold tags there): agreement, no-tag shares, examples."""
    queries = magnetic_queries(shared_data, n, seed)
    if not queries:
        why = "no queries asked for" if n <= 0 else f"{shared_data / 'magnetic_queries'} not present"
        return {"skipped": why}
    items = [QueryInput.of(q) for q in queries]
    bar = tqdm(taggers.items(), desc="tagger: real queries", unit="model", disable=not progress)
    preds = {name: t.fn(items) for name, t in bar}
    names = list(taggers)
    examples = random.Random(seed + 1).sample(range(len(queries)), min(12, len(queries)))
    return {
        "queries": len(queries),
        "no_tags_share": {k: round(sum(not p for p in v) / len(queries), 4) for k, v in preds.items()},
        "tags_per_query": {k: round(sum(len(p) for p in v) / len(queries), 3) for k, v in preds.items()},
        "agreement": {f"{a}~{b}": agreement(preds[a], preds[b]) for a, b in combinations(names, 2)},
        "same_tags": {
            f"{a}~{b}": round(sum(x == y for x, y in zip(preds[a], preds[b], strict=True)) / len(queries), 4)
            for a, b in combinations(names, 2)
        },
        "examples": [{"query": queries[i], **{k: v[i] for k, v in preds.items()}} for i in sorted(examples)],
    }


def run(
    world: Path, models: Sequence[str], shared_data: Path, n_real: int, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """The whole tagger section (what the report and ``01_tagger.ipynb`` compute)."""
    gold = load_gold(world)
    test = [r for r in gold if r.split == "test"]
    taggers = load_taggers(models, gold)
    result = evaluate_taggers(taggers, test, progress)
    preds = result.pop("predictions")
    first = "student" if "student" in preds else (next(iter(preds)) if preds else None)
    return {
        "gold": gold_statistics(gold),
        **result,
        "errors": error_gallery(test, preds, first),
        "pattern_bias": pattern_bias(world, seed=seed),
        "real_queries": real_queries(taggers, shared_data, n_real, seed, progress),
    }


def figures(m: dict[str, Any]) -> dict[str, Figure]:
    """Quality per model, per pattern, cost per query, and the pattern shares before/after capping."""
    from cli.evaluation.common import new_figure

    figs: dict[str, Figure] = {}
    models = m.get("models", {})
    if models:
        fig, ax = new_figure(6, 3.4)
        names = list(models)
        width = 0.27
        for k, metric in enumerate(("precision", "recall", "f1")):
            ax.bar(
                [i + (k - 1) * width for i in range(len(names))],
                [models[n][metric] for n in names],
                width,
                label=metric,
            )
        ax.set(xticks=range(len(names)), xticklabels=names, ylim=(0, 1), title="tagger vs gold (fuzzy)")
        ax.legend()
        figs["tagger_quality"] = fig

        patterns = sorted({p for v in models.values() for p in v["per_pattern_f1"]})
        fig, ax = new_figure(7, 3.6)
        width = 0.8 / len(names)
        for k, n in enumerate(names):
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(patterns))]
            ax.bar(xs, [models[n]["per_pattern_f1"].get(p, 0) for p in patterns], width, label=n)
        ax.set_xticks(range(len(patterns)), patterns, rotation=30, ha="right")
        ax.set(ylim=(0, 1), ylabel="F1 (fuzzy)", title="F1 per gold pattern")
        ax.legend(fontsize=7)
        figs["tagger_per_pattern"] = fig

        cost = m.get("cost", {})
        fig, (ax1, ax2) = new_figure(9, 3.4, ncols=2)
        ax1.bar(names, [max(cost[n]["cpu_ms_per_query"], 1e-3) for n in names], label="batched")
        ax1.plot(names, [max(cost[n]["single_cpu_ms_per_query"], 1e-3) for n in names], "ko", label="single")
        ax1.set(yscale="log", ylabel="CPU ms per query", title="cost per query")
        ax1.legend()
        ax2.scatter([max(cost[n]["cpu_ms_per_query"], 1e-3) for n in names], [models[n]["f1"] for n in names])
        for n in names:
            ax2.annotate(n, (max(cost[n]["cpu_ms_per_query"], 1e-3), models[n]["f1"]), fontsize=8)
        ax2.set(xscale="log", xlabel="CPU ms per query", ylabel="F1 (fuzzy)", title="quality vs cost")
        figs["tagger_cost"] = fig
    bias = m.get("pattern_bias")
    if bias and bias.get("top"):
        fig, (ax1, ax2) = new_figure(10, 3.6, ncols=2)
        top = bias["top"]
        pos = list(range(len(top)))
        ax1.bar([x - 0.2 for x in pos], [t["before"] / bias["total_before"] for t in top], 0.4, label="before")
        ax1.bar([x + 0.2 for x in pos], [t["after"] / max(1, bias["total_after"]) for t in top], 0.4, label="after")
        ax1.set_xticks(pos, [t["pattern"] for t in top], rotation=40, ha="right", fontsize=7)
        ax1.set(ylabel="share of unique inputs", title=f"template patterns, cap {bias['max_share']:.0%}")
        ax1.legend()
        kinds = bias.get("query_kinds", {})
        ks = list(kinds)
        ax2.bar([i - 0.2 for i in range(len(ks))], [kinds[k]["before"] for k in ks], 0.4, label="before")
        ax2.bar([i + 0.2 for i in range(len(ks))], [kinds[k]["after"] for k in ks], 0.4, label="after")
        ax2.set_xticks(range(len(ks)), ks, rotation=30, ha="right")
        ax2.set(title="query kinds (simulator truth)")
        ax2.legend()
        figs["tagger_pattern_bias"] = fig
    return figs
