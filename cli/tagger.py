"""``clipfeed tagger label | train-teacher | distill | eval | tag | serve-teacher``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.output import emit_json, stderr, stdout
from cli.scale import Address, Engine, Workers, use_ray
from clipfeed.errors import ClipfeedError, InputError
from clipfeed.jsonl import read_gold
from clipfeed.records import GoldRow
from clipfeed.settings import load_settings
from clipfeed.world import shipped_gold_path

app = typer.Typer(help="Teacher labeling, student distillation and intent tagging.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda (auto takes CUDA when present).")]
GoldOpt = Annotated[Path | None, typer.Option("--gold", help="Gold set JSONL (default: the project's gold set).")]
StudentOpt = Annotated[Path | None, typer.Option("--student", help="Student artifact (default: the shipped one).")]
TeacherOpt = Annotated[
    str, typer.Option("--teacher", help="'embedded' (Gemma 3 270M), a transformers directory, or 'openai'.")
]
AdapterOpt = Annotated[str, typer.Option("--adapter", help="Teacher LoRA adapter: 'shipped', 'none', or a directory.")]


def shipped(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("tagger") / "shipped" / name))


def _gold(path: Path | None) -> list[GoldRow]:
    return list(read_gold(path or shipped_gold_path()))


def _adapter(value: str, teacher: str) -> Path | None:
    if value == "none":
        return None
    if value == "shipped":
        path = shipped("teacher")
        return path if teacher == "embedded" and (path / "adapter_config.json").exists() else None
    path = Path(value)
    if not (path / "adapter_config.json").exists():
        raise ClipfeedError(f"--adapter {value}: not a LoRA adapter directory (no adapter_config.json)")
    return path


def build_teacher(
    teacher: str,
    adapter: str,
    gold: list[GoldRow],
    device: str,
    batch_size: int,
    shots: int | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> Any:
    """A :class:`~tagger.teacher.Teacher` over the chosen backend, prompted as its adapter was trained."""
    from tagger import HFBackend, Teacher, TeacherConfig, load_teacher_config, pick_device, resolve_model_dir

    train = [r for r in gold if r.split == "train"]
    if teacher == "openai":
        from tagger import OpenAIBackend

        if not base_url or not model:
            raise InputError("arguments", None, "--base-url/--model", "--teacher openai needs --base-url and --model")
        cfg = TeacherConfig() if shots is None else TeacherConfig(shots=shots)
        return Teacher(OpenAIBackend(base_url=base_url, model=model), train, cfg)
    settings = load_settings()
    adapter_dir = _adapter(adapter, teacher)
    cfg = load_teacher_config(adapter_dir)
    if shots is not None:
        cfg = cfg.model_copy(update={"shots": shots})
    model_dir = resolve_model_dir(teacher, settings.cache_dir)
    backend = HFBackend.load(model_dir, adapter_dir, pick_device(device), batch_size)
    return Teacher(backend, train, cfg)


def load_student(student: Path | None, device: str = "cpu", persist: bool = False) -> Any:
    """The student (default: the shipped one); ``persist`` keeps its tag cache on disk across runs."""
    from tagger import StudentTagger, pick_device

    path = student or shipped("student")
    return StudentTagger.load(path, load_settings().cache_dir, pick_device(device), persist=persist)


@app.command("label")
def label_cmd(
    queries: Annotated[Path, typer.Option("--queries", help="queries.jsonl (data contract) or {query, docs} lines.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for labels.jsonl, report.json and the cache.")],
    teacher: TeacherOpt = "embedded",
    adapter: AdapterOpt = "shipped",
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint (…/v1).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name at the endpoint.")] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="Exemplars per prompt (default: the teacher's).")] = None,
    gold: GoldOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=256)] = 16,
    pattern_cap: Annotated[int | None, typer.Option("--pattern-cap", min=1, help="Inputs per query pattern.")] = None,
    max_share: Annotated[float | None, typer.Option("--max-share", min=0.001, max=1.0)] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Label at most N inputs.")] = None,
    seed: int = 0,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad lines (reported).")] = False,
    device: Device = "auto",
    engine: Engine = "local",
    address: Address = None,
    workers: Workers = None,
    json_out: Json = False,
) -> None:
    """Label queries with the teacher (dedup, pattern caps, cached by content hash, resumable);
    --engine ray labels on a Ray cluster (--queries may then be a directory of JSONL/Parquet shards)."""
    from tagger import read_label_inputs, run_labeling

    if use_ray(engine):
        from cli.scale import label_on_ray

        args = (teacher, adapter, _gold(gold), device, batch_size, shots, base_url, model)
        job = {"batch_size": batch_size, "pattern_cap": pattern_cap, "max_share": max_share, "seed": seed}
        job |= {"limit": limit, "progress": not json_out}
        ray = {"skip_invalid": skip_invalid, "workers": workers, "address": address}
        report = label_on_ray(queries, out, args, job, **ray).to_dict()
    else:
        inputs = read_label_inputs(queries, skip_invalid=skip_invalid)
        labeler = build_teacher(teacher, adapter, _gold(gold), device, batch_size, shots, base_url, model)
        report = run_labeling(
            inputs,
            labeler,
            out,
            batch_size=batch_size,
            pattern_cap=pattern_cap,
            max_share=max_share,
            seed=seed,
            limit=limit,
            progress=not json_out,
        ).to_dict()
    if json_out:
        emit_json(report)
    else:
        stdout.print(
            f"labeled {report['labeled_now']} new, {report['from_cache']} from cache, "
            f"{report['abstained']['total']} abstained → {out / 'labels.jsonl'}",  # type: ignore[index]
            highlight=False,
        )


@app.command("train-teacher")
def train_teacher_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for the LoRA adapter.")],
    teacher: TeacherOpt = "embedded",
    gold: GoldOpt = None,
    epochs: Annotated[float, typer.Option(min=0.01, max=50)] = 3.0,
    seed: int = 0,
    device: Device = "auto",
    json_out: Json = False,
) -> None:
    """LoRA-tune a local teacher on the gold train split (dev split for the loss report)."""
    from tagger import TEACHER_TRAIN, TUNED_TEACHER, pick_device, resolve_model_dir, train_teacher

    model_dir = resolve_model_dir(teacher, load_settings().cache_dir)
    cfg = TEACHER_TRAIN.model_copy(update={"epochs": epochs, "seed": seed})
    tcfg = TUNED_TEACHER.model_copy(update={"seed": seed})
    card = train_teacher(model_dir, _gold(gold), out, tcfg, cfg, pick_device(device), progress=not json_out)
    (out / "README.md").unlink(missing_ok=True)
    emit_json(card) if json_out else stdout.print(f"teacher adapter written to {out}", highlight=False)


def _read_labels(path: Path) -> list[Any]:
    from tagger import QueryInput, TeacherLabel

    if path.is_dir():
        path = path / "labels.jsonl"
    if not path.exists():
        raise ClipfeedError(f"{path}: no labels (run `clipfeed tagger label` first)")
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
                out.append((QueryInput.of(d["query"], d.get("docs", [])), TeacherLabel.from_dict(d)))
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(path, n, None, f"not a label line: {e}") from e
    return out


@app.command("distill")
def distill_cmd(
    labels: Annotated[Path, typer.Option("--labels", help="labels.jsonl (or its directory) from `tagger label`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the student artifact.")],
    world: Annotated[Path | None, typer.Option("--world", help="Also keep the vocabulary of this world.")] = None,
    gold: GoldOpt = None,
    epochs: Annotated[float, typer.Option(min=0.01, max=50)] = 3.0,
    layers: Annotated[str, typer.Option(help="Teacher layers the student keeps: 'all' or comma-separated.")] = "all",
    base: Annotated[str, typer.Option(help="'embedded' or the transformers directory the student is cut from.")] = (
        "embedded"
    ),
    seed: int = 0,
    device: Device = "auto",
    json_out: Json = False,
) -> None:
    """Train the student (trimmed vocabulary, fewer layers, LoRA) on teacher labels + gold train rows."""
    from tagger import StudentConfig, pick_device, resolve_model_dir
    from tagger.distill import distill

    try:
        layer_ids = None if layers == "all" else [int(x) for x in layers.split(",") if x.strip()]
    except ValueError as e:
        raise InputError("arguments", None, "--layers", f"expected comma-separated integers, got {layers!r}") from e
    label_rows = _read_labels(labels)
    train = StudentConfig().train.model_copy(update={"epochs": epochs, "seed": seed})
    cfg = StudentConfig(base=base, layers=layer_ids, train=train)
    extra: list[str] = []
    if world is not None:
        from clipfeed.jsonl import read_catalog

        extra = [f"{c.title} {' '.join(c.tags)}" for c in read_catalog(world / "catalog.jsonl")]
    card = distill(
        resolve_model_dir(base, load_settings().cache_dir),
        label_rows,
        _gold(gold),
        out,
        cfg,
        extra,
        pick_device(device),
        progress=not json_out,
    )
    emit_json(card) if json_out else stdout.print(f"student written to {out}", highlight=False)


@app.command("eval")
def eval_cmd(
    student: StudentOpt = None,
    teacher: TeacherOpt = "embedded",
    adapter: AdapterOpt = "shipped",
    gold: GoldOpt = None,
    split: Annotated[str, typer.Option(help="Gold split to evaluate on.")] = "test",
    no_teacher: Annotated[bool, typer.Option("--no-teacher", help="Evaluate the student only.")] = False,
    device: Device = "cpu",
    json_out: Json = False,
) -> None:
    """Teacher and student side by side on the gold test split: F1, agreement, latency, size."""
    from tagger import dir_size_mb, evaluate_model, side_by_side

    rows = [r for r in _gold(gold) if r.split == split]
    if not rows:
        raise ClipfeedError(f"no gold rows in split {split!r}")
    st = load_student(student, device)
    s = evaluate_model(lambda items: [[t.tag for t in ts] for ts in _tag_items(st, items)], rows)
    s["parameters"] = sum(p.numel() for p in st.model.parameters())
    s["disk_mb_shipped"] = dir_size_mb(student or shipped("student"))
    t = None
    if not no_teacher:
        te = build_teacher(teacher, adapter, _gold(gold), device, 16)
        t = evaluate_model(lambda items: [[x.tag for x in lab.tags] for lab in te.label_batch(items)], rows)
        t["parameters"] = sum(p.numel() for p in te.backend.model.parameters())
        t["name"] = te.backend.name
        t["shots"] = te.cfg.shots
    result = side_by_side(t, s)
    if json_out:
        emit_json(result)
        return
    for who in ("teacher", "student"):
        if who in result:
            m = result[who]
            stdout.print(
                f"{who:8s} F1 {m['f1']:.3f} (exact {m['f1_exact']:.3f})  {m['ms_per_query']:.1f} ms/query "
                f"({m['cpu_ms_per_query']:.1f} CPU ms)  {m['parameters'] / 1e6:.1f} M params",
                highlight=False,
            )
    if "agreement" in result:
        stdout.print(f"agreement {result['agreement']:.3f}  CPU speed-up {result['cpu_speedup']}×", highlight=False)


def _tag_items(st: Any, items: Any) -> list[Any]:
    st.cache.clear()  # measure generation, not the cache
    tags: list[Any] = st.tag_batch([i.query for i in items], [list(i.docs) for i in items])
    return tags


@app.command("tag")
def tag_cmd(
    query: Annotated[str | None, typer.Argument(help="The search query.")] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="Title of a clicked document (repeatable).")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="JSONL lines {query, docs}; one result a line.")] = None,
    student: StudentOpt = None,
    device: Device = "cpu",
    engine: Engine = "local",
    address: Address = None,
    workers: Workers = None,
    out: Annotated[Path | None, typer.Option("--out", help="--engine ray: directory for the tags.")] = None,
    json_out: Json = False,
) -> None:
    """Tag a query (or a file of queries) with the student; --engine ray tags a file (or a directory
    of shards) on a Ray cluster into --out (tags.jsonl, Parquet shards, a resumable cache)."""
    from tagger import check_query

    if (query is None) == (file is None):
        raise InputError("arguments", None, "QUERY/--file", "give a QUERY or --file F (not both)")
    if use_ray(engine):
        from cli.scale import tag_on_ray

        if file is None:
            raise InputError("arguments", None, "--file", "--engine ray tags a file: give --file F")
        summary = tag_on_ray(file, out, student, device, workers=workers, address=address, progress=not json_out)
        if json_out:
            emit_json(summary)
        else:
            stdout.print(
                f"tagged {summary['tagged_now']} new, {summary['from_cache']} from cache → {out}", highlight=False
            )
        return
    if file is not None:
        from tagger import read_label_inputs

        items = [i for i, _ in read_label_inputs(file)]
        queries, docs = [i.query for i in items], [list(i.docs) for i in items]
    else:
        assert query is not None
        queries, docs = [query], [doc or []]
    st = load_student(student, device)
    results = st.tag_batch(queries, docs)
    for q, tags in zip(queries, results, strict=True):
        obj: dict[str, Any] = {"query": q, "tags": [{"tag": t.tag, "score": t.score} for t in tags]}
        why = check_query(q)
        if why:
            obj["reason"] = why
        if json_out:
            typer.echo(json.dumps(obj, ensure_ascii=False))
        else:
            shown = ", ".join(f"{t.tag} ({t.score:.2f})" for t in tags) or f"no tags ({why or 'no clip intent'})"
            stdout.print(f"{q} → {shown}", highlight=False)


@app.command("serve-teacher")
def serve_teacher_cmd(
    teacher: TeacherOpt = "embedded",
    adapter: AdapterOpt = "shipped",
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8088,
    device: Device = "auto",
) -> None:
    """Serve a local teacher over the OpenAI chat-completions protocol (for `--teacher openai` clients)."""
    import uvicorn

    from tagger import create_openai_app

    te = build_teacher(teacher, adapter, _gold(None), device, 16)
    stderr.print(f"serving {te.backend.name} at http://{host}:{port}/v1", highlight=False)
    uvicorn.run(create_openai_app(te.backend, te.backend.name), host=host, port=port, log_level="warning")
