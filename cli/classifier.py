"""``clipfeed classifier train | eval | predict | data``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Annotated

import typer

from classifier import TopicClassifier, TopicFilter, TopicModelConfig, TopicRow, read_rows, train
from classifier.data import gold_rows, world_eval_rows, world_training_rows
from classifier.metrics import evaluate, plot_reliability
from cli.output import emit_json, stderr, stdout
from clipfeed.errors import InputError
from clipfeed.jsonl import JsonlReader, write_jsonl
from clipfeed.taxonomy import Taxonomy

app = typer.Typer(
    help="Topic classifier (tag + query -> calibrated tier-2 topics) and tag filter.", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelDir = Annotated[Path | None, typer.Option("--model", help="Model directory (default: the shipped model).")]
TaxonomyOpt = Annotated[Path | None, typer.Option("--taxonomy", help="Labels are node ids of this taxonomy TSV.")]


def _report_rejects(report_dict: dict[str, object]) -> None:
    errors = report_dict["errors"]
    assert isinstance(errors, list)
    for err in errors[:20]:
        stderr.print(f"skipped {err}", highlight=False, markup=False)
    if report_dict["rejected"]:
        stderr.print(f"{report_dict['rejected']} bad rows skipped in {report_dict['file']}", highlight=False)


def _world_dev_rows(dev_world: Path, taxonomy: Taxonomy, seed: int, n: int = 1500) -> list[TopicRow]:
    rows = [TopicRow(**r) for r in world_eval_rows(dev_world, taxonomy)]
    random.Random(seed).shuffle(rows)
    gold = [TopicRow(**r) for r in gold_rows(dev_world / "gold.jsonl", taxonomy, {"dev"})]
    return gold + rows[:n]


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the model into.")],
    data: Annotated[Path | None, typer.Option("--data", help="JSONL rows {text, label, query?}.")] = None,
    world: Annotated[Path | None, typer.Option("--world", help="Train on rows built from this world.")] = None,
    dev: Annotated[Path | None, typer.Option("--dev", help="JSONL dev rows (early stopping, calibration).")] = None,
    dev_world: Annotated[Path | None, typer.Option("--dev-world", help="Dev rows from another world.")] = None,
    taxonomy: TaxonomyOpt = None,
    plain_labels: Annotated[bool, typer.Option("--plain-labels", help="Labels are free strings.")] = False,
    catalog_only: Annotated[
        bool,
        typer.Option(
            "--catalog-only",
            help="With --world: only catalog rows and "
            "utility queries (a catalog whose topics are not the sample world's).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")] = 20,
    buckets: Annotated[int, typer.Option(help="Hash buckets (model size = buckets x dim).")] = 1 << 16,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 32,
    json_out: Json = False,
) -> None:
    """Train a topic model on (text, label) rows; bad rows are named and skipped."""
    if (data is None) == (world is None):
        raise InputError("arguments", None, "--data/--world", "give exactly one of --data F or --world DIR")
    tax = None if plain_labels else Taxonomy.load(taxonomy)
    reports = []
    if data is not None:
        rows, report = read_rows(data, tax)
        reports.append(report.to_dict())
    else:
        assert world is not None and tax is not None
        rows = [TopicRow(**r) for r in world_training_rows(world, tax, catalog_only)]
    dev_rows: list[TopicRow] | None = None
    if dev is not None:
        dev_rows, dev_report = read_rows(dev, tax)
        reports.append(dev_report.to_dict())
    elif dev_world is not None:
        assert tax is not None, "--dev-world needs taxonomy labels"
        dev_rows = _world_dev_rows(dev_world, tax, seed)
    for r in reports:
        _report_rejects(r)
    if not rows:
        raise InputError(str(data or world), None, None, "no valid training rows")
    cfg = TopicModelConfig(taxonomy_labels=tax is not None, seed=seed, epochs=epochs, n_buckets=buckets, dim=dim)
    t0 = time.perf_counter()
    net, cfg, figures = train(rows, cfg, dev_rows, progress=not json_out)
    clf = TopicClassifier(net, cfg)
    clf.save(out)
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    figures["labels"] = len(cfg.labels)
    card = {
        "data": str(data or world),
        "dev": str(dev or dev_world or "10% of the training rows"),
        "seed": seed,
        "figures": figures,
        "rejected": [r["rejected"] for r in reports],
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if json_out:
        emit_json({"out": str(out), **figures})
    else:
        stdout.print(
            f"model written to {out}: {figures['labels']} labels, dev accuracy "
            f"{figures['dev_accuracy']:.3f}, temperature {figures['temperature']:.2f}, "
            f"{figures['seconds']}s",
            highlight=False,
        )


@app.command("eval")
def eval_cmd(
    data: Annotated[Path | None, typer.Option("--data", help="JSONL rows {text, label, query?}.")] = None,
    world: Annotated[
        Path | None, typer.Option("--world", help="Evaluate on a world's held-out searches and its gold test split.")
    ] = None,
    model: ModelDir = None,
    taxonomy: TaxonomyOpt = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write a reliability diagram PNG here.")] = None,
    json_out: Json = False,
) -> None:
    """Accuracy, macro-F1, per-class F1, expected calibration error, abstain rate, sibling confusion."""
    clf = TopicClassifier.load(model)
    tax = Taxonomy.load(taxonomy) if clf.cfg.taxonomy_labels else None
    sets: dict[str, list[TopicRow]] = {}
    if data is not None:
        rows, report = read_rows(data, tax)
        _report_rejects(report.to_dict())
        sets["data"] = rows
    if world is not None:
        assert tax is not None, "--world needs a taxonomy model"
        sets["world_heldout"] = [TopicRow(**r) for r in world_eval_rows(world, tax)]
        sets["gold_test"] = [TopicRow(**r) for r in gold_rows(world / "gold.jsonl", tax, {"test"})]
    if not sets:
        raise InputError("arguments", None, "--data/--world", "give --data F and/or --world DIR")
    results = {}
    for name, rows in sets.items():
        if not rows:
            raise InputError(name, None, None, "no valid evaluation rows")
        unknown = sorted({r.label for r in rows} - set(clf.cfg.labels))
        probs = clf.probabilities([(r.text, r.query) for r in rows])
        conf, idx = probs.max(dim=1)
        preds = [clf.cfg.labels[int(i)] for i in idx]
        m = evaluate([r.label for r in rows], preds, conf.tolist(), clf.cfg.filter.min_confidence, tax)
        m["labels_unknown_to_model"] = unknown
        results[name] = m
        if plots is not None:
            plot_reliability(m["reliability"], plots / f"reliability_{name}.png", f"reliability: {name}")
    out = results["data"] if list(results) == ["data"] else results
    if json_out:
        emit_json(out)
        return
    for name, m in results.items():
        stdout.print(
            f"{name}: n={m['n']} accuracy={m['accuracy']:.3f} macro_f1={m['macro_f1']:.3f} "
            f"ece={m['ece']:.3f} abstain={m['abstain_rate']:.3f}"
            + (f" sibling_confusion={m['sibling_confusion']:.4f}" if "sibling_confusion" in m else ""),
            highlight=False,
        )


class _TextRow(TopicRow):
    label: str = ""


@app.command("predict")
def predict_cmd(
    text: Annotated[str | None, typer.Argument(help="A tag or short text (Korean or English).")] = None,
    query: Annotated[str, typer.Option("--query", help="The search query the tag came from.")] = "",
    file: Annotated[Path | None, typer.Option("--file", help="JSONL lines {text, query?}; batched.")] = None,
    model: ModelDir = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=20)] = 3,
    json_out: Json = False,
) -> None:
    """Top-k topics with keep/drop and the reason."""
    if (text is None) == (file is None):
        raise InputError("arguments", None, "TEXT/--file", "give a TEXT or --file F")
    filt = TopicFilter(TopicClassifier.load(model))
    if text is not None:
        results = [filt.explain(filt.classifier.predict_one(text, query, top_k))]
    else:
        assert file is not None
        reader = JsonlReader(file, _TextRow, skip_invalid=True)
        rows = list(reader)
        _report_rejects(reader.report.to_dict())
        results = [filt.explain(p) for p in filt.classifier.predict([(r.text, r.query) for r in rows], top_k)]
    if json_out:
        if text is not None:
            emit_json(results[0])
        else:
            for r in results:
                typer.echo(json.dumps(r, ensure_ascii=False))
        return
    for r in results:
        topic_list = r["topics"]
        assert isinstance(topic_list, list)
        topics = ", ".join(f"{t['name']} {t['p']:.2f}" for t in topic_list)
        verdict = "[green]keep[/]" if r["keep"] else "[red]drop[/]"
        stdout.print(f"{r['text']}: {verdict} — {r['reason']}  [{topics}]", highlight=False)


@app.command("data")
def data_cmd(
    world: Annotated[Path, typer.Option("--world", help="World directory.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    heldout: Annotated[
        bool, typer.Option("--heldout", help="Evaluation rows (held-out searches) instead of training rows.")
    ] = False,
) -> None:
    """Export (text, label, query) rows built from a world, to inspect or train elsewhere."""
    tax = Taxonomy.load(world / "taxonomy.tsv")
    rows = world_eval_rows(world, tax) if heldout else world_training_rows(world, tax)
    n = write_jsonl(out, ({k: v for k, v in r.items() if v} for r in rows))
    stdout.print(f"{n} rows written to {out}", highlight=False)
