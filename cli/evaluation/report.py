"""``clipfeed eval report``: every evaluation section headless, written as ``metrics.json`` (all the
numbers), PNG figures and ``report.md`` that shows them, from the same functions the notebooks call.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.evaluation import classifier_eval, recommender_eval, serving_eval, tagger_eval
from cli.evaluation.common import EvalOptions, check_world, headless, save_figures, table

SECTIONS = ("tagger", "classifier", "recommender", "serving")


def run_sections(opts: EvalOptions, sections: tuple[str, ...] = SECTIONS, log: Console | None = None) -> dict[str, Any]:
    """The metrics of each asked-for section (the tagger's models load only when it is asked for)."""
    check_world(opts.world)
    say: Callable[[str], None] = (lambda msg: log.print(msg, highlight=False)) if log else (lambda msg: None)
    metrics: dict[str, Any] = {
        "setup": {**opts.describe(), "sections": list(sections), "python": platform.python_version()}
    }
    timing: dict[str, float] = {}
    steps = [s for s in SECTIONS if s in sections]
    stack = ranker = None
    for n, section in enumerate(steps, 1):
        t0 = time.perf_counter()
        say(f"[{n}/{len(steps)}] {section} …")
        if section == "tagger":
            metrics["tagger"] = tagger_eval.run(
                opts.world, opts.tagger_models, opts.shared_data, opts.real_queries, opts.seed, opts.progress
            )
        elif section == "classifier":
            metrics["classifier"] = classifier_eval.run(opts.world, opts.shared_data, opts.seed, opts.real_rows)
        else:
            if stack is None:
                stack, ranker = recommender_eval.load(opts.world, opts.tagger, opts.model, opts.progress)
            if section == "recommender":
                metrics["recommender"] = recommender_eval.run(
                    stack,
                    ranker,
                    opts.users,
                    n_boot=opts.bootstrap,
                    seed=opts.seed,
                    feedback_users=opts.feedback_users,
                    importance_users=opts.importance_users,
                    progress=opts.progress,
                )
            else:
                metrics["serving"] = serving_eval.run(stack, ranker, opts.latency_users, opts.api_load)
        timing[section] = round(time.perf_counter() - t0, 1)
        say(f"      {section} done in {timing[section]:.1f} s")
    metrics["timing"] = {"section_seconds": timing}
    return metrics


def write_report(metrics: dict[str, Any], out: Path) -> Path:
    """``metrics.json``, the figures (PNG) and ``report.md`` in ``out``; returns the report's path."""
    headless()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps(metrics, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
    parts = [_header(metrics)]
    for section, writer, figs in (
        ("tagger", _tagger_md, tagger_eval.figures),
        ("classifier", _classifier_md, classifier_eval.figures),
        ("recommender", _recommender_md, recommender_eval.figures),
        ("serving", _serving_md, serving_eval.figures),
    ):
        if section in metrics:
            names = save_figures(figs(metrics[section]), out)
            parts.append(writer(metrics[section]) + "".join(f"\n![{n[:-4]}]({n})\n" for n in names))
    path = out / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _header(m: dict[str, Any]) -> str:
    s = m["setup"]
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in m.get("timing", {}).get("section_seconds", {}).items())
    return (
        "# clipfeed evaluation report\n\n"
        f"World `{s['world']}`; feeds tagged by `{s['tagger']}`; up to {s['users'] or 'all'} users per population; "
        f"tagger models {', '.join(s['tagger_models']) or 'none'}; seed {s['seed']}. "
        f"All numbers are in `metrics.json`. Section times: {timing}.\n\n"
        "Reproduce: `clipfeed eval report --world WORLD --out DIR` (or run the notebooks in `notebooks/`).\n"
    )


def _tagger_md(t: dict[str, Any]) -> str:
    g = t["gold"]
    lines = [
        "## Tagger\n",
        f"Gold set: {g['rows']} rows, splits {g['by_split']}, languages {g['by_language']}, "
        f"{len(g['by_pattern'])} patterns (largest share {g['largest_pattern_share']:.1%}), "
        f"{g['tagless_rows']} rows whose answer is no tags. Evaluated on the test split ({t['rows']} rows).\n",
    ]
    rows = [
        {"model": k, **{c: v[c] for c in ("precision", "recall", "f1", "f1_exact", "no_tags_share")}, **t["cost"][k]}
        for k, v in t["models"].items()
    ]
    cols = ["model", "precision", "recall", "f1", "f1_exact", "no_tags_share", "ms_per_query", "cpu_ms_per_query"]
    cols += ["single_ms_per_query", "parameters"]
    lines.append(table(rows, cols))
    if t["agreement"]:
        lines.append(
            "Agreement (fuzzy F1 of one model's tags against the other's): "
            + ", ".join(f"{k} {v:.3f}" for k, v in t["agreement"].items())
            + "\n"
        )
    langs = sorted({lang for v in t["models"].values() for lang in v["per_language_f1"]})
    lines.append(table([{"model": k, **v["per_language_f1"]} for k, v in t["models"].items()], ["model", *langs]))
    b = t["pattern_bias"]
    lines.append(
        f"Pattern capping (max share {b['max_share']:.0%}) of the world's {b['unique_inputs']} unique searches: the "
        f"largest pattern `{b['largest_before']}` held {b['largest_share_before']:.1%} before and the largest "
        f"{b['largest_share_after']:.1%} after ({b['total_after']} inputs kept).\n"
    )
    if t["errors"]:
        names = list(t["models"])
        lines.append("Errors (worst rows first):\n")
        lines.append(table(t["errors"][:8], ["query", "gold", *names]))
    rq = t["real_queries"]
    if "skipped" in rq:
        lines.append(f"Real queries: skipped ({rq['skipped']}).\n")
    else:
        lines.append(
            f"Real Magnetic queries ({rq['queries']}): no-tag share {rq['no_tags_share']}, "
            f"agreement {rq['agreement']}.\n"
        )
    return "\n".join(lines)


def _classifier_md(c: dict[str, Any]) -> str:
    lines = ["## Topic classifier\n"]
    rows = [
        {"set": s, **{k: c[s][k] for k in ("n", "accuracy", "macro_f1", "ece", "abstain_rate", "sibling_confusion")}}
        for s in ("world_heldout", "gold_test")
        if s in c
    ]
    lines.append(table(rows))
    for s in ("world_heldout", "gold_test"):
        if s in c and c[s]["sibling_pairs"]:
            lines.append(f"Most frequent sibling confusions ({s}):\n")
            lines.append(table(c[s]["sibling_pairs"][:6]))
    real = c.get("real", {})
    rrows = []
    for name, r in real.items():
        if isinstance(r, dict) and "clipfeed" in r:
            for system in ("majority", "tfidf_logreg", "clipfeed"):
                if system in r:
                    rrows.append(
                        {
                            "data": name,
                            "system": system,
                            "accuracy": r[system]["accuracy"],
                            "macro_f1": r[system]["macro_f1"],
                            "train/test": f"{r['train']}/{r['test']}",
                        }
                    )
        elif isinstance(r, dict) and "skipped" in r:
            lines.append(f"Real data {name}: skipped ({r['skipped']}).\n")
    if rrows:
        lines.append("Real data (80/20 seeded split, baselines fitted in the same run):\n")
        lines.append(table(rrows))
    return "\n".join(lines)


def _recommender_md(r: dict[str, Any]) -> str:
    from recommender.offline import METRICS

    lines = ["## Recommender\n", f"Ranker: {r['setup']['ranker']}; tagger: {r['setup']['tagger']}.\n"]
    for population in ("cold", "warm"):
        if population not in r:
            continue
        rows = []
        for system, v in r[population].items():
            row: dict[str, Any] = {"system": system, "users": v["users"]}
            for metric in METRICS:
                mu, (lo, hi) = v[metric]["mean"], v[metric]["ci95"]
                row[metric] = f"{mu:.3f} [{lo:.3f}, {hi:.3f}]"
            row["coverage"] = f"{v['coverage']['mean']:.3f}"
            rows.append(row)
        lines.append(f"**{population} users** (mean [bootstrap 95 % interval over users]):\n")
        lines.append(table(rows))
    if r.get("ratios"):
        lines.append("Ratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items()) + "\n")
    cs = r.get("case_study", {})
    if cs.get("user_id"):
        lines.append(f"### Case study: {cs['user_id']} ({cs['why']})\n")
        lines.append("Hidden interests: " + ", ".join(f"{i['topic']} ({i['entity']})" for i in cs["interests"]) + "\n")
        for s in cs["searches"]:
            kept = ", ".join(f"{t['tag']} → {t['topic']}" for t in s["tags"] if t["keep"]) or "none"
            dropped = ", ".join(f"{t['tag']} ({t['reason']})" for t in s["tags"] if not t["keep"]) or "none"
            lines.append(
                f"- '{s['query']}' (clicked: {', '.join(s['clicked']) or '—'}): kept {kept}; dropped {dropped}"
            )
        lines.append("\nFeed (full system):\n")
        lines.append(table(cs["feed"], ["title", "topic", "reason"]))
        if cs.get("systems"):
            lines.append(
                table(
                    [
                        {"system": k, **{m: v["metrics"].get(m, 0.0) for m in ("ndcg@10", "topic_leak")}}
                        for k, v in cs["systems"].items()
                    ]
                )
            )
    fb = r.get("feedback", {})
    if fb:
        lines.append("Feed response to the first feedback events (cold users):\n")
        lines.append(table([{"event": k, **v} for k, v in fb.items()]))
    imp = r.get("feature_importance", {})
    if imp:
        top = sorted(imp.items(), key=lambda kv: -kv[1]["mean_abs_contribution"])[:8]
        lines.append(
            "Top features by mean |contribution|: "
            + ", ".join(f"{k} {v['mean_abs_contribution']:.3f}" for k, v in top)
            + "\n"
        )
    return "\n".join(lines)


def _serving_md(s: dict[str, Any]) -> str:
    ip = s["in_process"]
    lat = ip["latency"]
    lines = [
        "## Serving\n",
        f"In process ({ip['users']} users, warm pass, pages of 20 with explanations): "
        f"p50 {lat.get('p50_ms', 0):.2f} ms, "
        f"p95 {lat.get('p95_ms', 0):.2f} ms, p99 {lat.get('p99_ms', 0):.2f} ms per feed; a user's context is "
        f"{ip['context_bytes_per_user']['mean']:.0f} bytes as JSON on average.\n",
        f"Feed API: {s['load_benchmark_note']}.\n",
    ]
    bench = s.get("load_benchmark")
    if bench:
        if bench.get("rates"):
            lines.append(table(bench["rates"]))
        mem = bench.get("memory", {})
        if mem.get("bytes_per_user") is not None:
            lines.append(f"Store memory per user: {mem['bytes_per_user']} bytes.\n")
    return "\n".join(lines)
