"""The CLI's side of scale-out on Ray (issue #8): what the actors build from a world, and the
``--engine ray`` branches of ``tagger label``, ``tagger tag``, ``ranker train`` and ``world contexts``.

``scale/`` runs the Ray jobs and knows no stage wiring; this module hands it picklable factories
(frozen dataclasses naming a world directory and settings) that each actor calls once to load what
the local command loads. Ray itself is imported only when ``--engine ray`` is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import emit_json, stdout
from cli.wiring import HeldOutCollab, fit_collab, load_stack
from clipfeed.errors import ClipfeedError, InputError
from clipfeed.settings import load_settings
from recommender import ContextUpdater, Ranker, RecommenderConfig, TrainingData, build_training, replay
from recommender.candidates import TagVectorCache

if TYPE_CHECKING:
    from tagger.label import LabelReport

Engine = Annotated[
    str, typer.Option("--engine", help="local (this process) | ray (a Ray cluster; needs the [scale] extra).")
]
Address = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster: auto, ray://HOST:10001 (default: RAY_ADDRESS, else a local one)."),
]
Workers = Annotated[
    int | None, typer.Option("--workers", min=1, help="Ray actors / training workers (default: per GPU, else CPU).")
]


def use_ray(engine: str) -> bool:
    """``--engine``: True for ray, False for local; anything else is a usage error."""
    if engine not in ("local", "ray"):
        raise InputError("arguments", None, "--engine", f"expected local or ray, got {engine!r}")
    return engine == "ray"


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p.resolve())


# --- tagger label / tag -------------------------------------------------------------------------


def label_on_ray(
    queries: Path, out: Path, teacher_args: tuple[Any, ...], job: dict[str, Any], **ray: Any
) -> LabelReport:
    """``tagger label --engine ray``: ``queries`` is a file or a directory of JSONL/Parquet shards."""
    from cli.tagger import build_teacher
    from scale.labeling import label_on_ray as run
    from tagger.label import LabelJob

    device = teacher_args[3]
    return run([queries], LabelJob(out, **job), partial(build_teacher, *teacher_args), use_gpu=device != "cpu", **ray)


def tag_on_ray(file: Path, out: Path | None, student: Path | None, device: str, **ray: Any) -> dict[str, Any]:
    """``tagger tag --file F --engine ray --out DIR``: the student on every actor."""
    from cli.tagger import load_student, shipped
    from scale.labeling import tag_on_ray as run
    from tagger.distill import artifact_hash

    if out is None:
        raise InputError("arguments", None, "--out", "--engine ray writes Parquet shards: give --out DIR")
    path = student or shipped("student")
    factory = partial(load_student, path.resolve(), device)
    return run([file], out, factory, f"student:{artifact_hash(path)}", use_gpu=device != "cpu", **ray)


# --- ranker train -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """What every actor loads: a world directory with the CLI's settings (resolved on the driver)."""

    world: str
    skip_invalid: bool = False
    classifier: str | None = None
    tagger: str = "standin"

    def stack(self) -> Any:
        clf = Path(self.classifier) if self.classifier else None
        return load_stack(Path(self.world), self.skip_invalid, clf, tagger=self.tagger, prefetch=False)


def _prefetch(stack: Any, logs: list[tuple[str, Any]]) -> None:
    searches = ((q.query, [d.title for d in q.clicked_docs]) for _, log in logs for q in log.queries)
    stack.tagging.prefetch(searches)


class WorldGroups:
    """A user's LambdaRank groups as ``train_ranker`` builds them: collaborative features from the
    model fitted without the user's fold (``fold_of``), the same fitted lazily on each actor."""

    def __init__(self, spec: WorldSpec, cfg_json: str, collab: bool = True) -> None:
        self.stack = spec.stack()
        self.cfg = RecommenderConfig.model_validate_json(cfg_json)
        self.vectors = TagVectorCache(self.stack.catalog)
        self.held_out = HeldOutCollab(self.stack) if collab else None

    def __call__(self, user_ids: list[str]) -> list[tuple[str, TrainingData]]:
        logs = [(u, self.stack.world.users[u]) for u in user_ids]
        _prefetch(self.stack, logs)
        out = []
        for u, log in logs:
            model = self.held_out.for_user(u) if self.held_out is not None else None
            data = build_training(
                self.stack.catalog, self.stack.tagging, [(u, log)], self.cfg, self.vectors, progress=False, collab=model
            )
            out.append((u, data))
        return out


def train_on_ray(
    world: Path, seed: int, classifier: Path | None, skip_invalid: bool, progress: bool, **ray: Any
) -> tuple[Ranker, dict[str, Any]]:
    """``ranker train --engine ray``: features on actors, LightGBM data-parallel on Ray Train; the
    collaborative model fitted on everyone is bound to the ranker, as ``train_ranker`` does."""
    from scale.engine import require_ray
    from scale.ranker import read_groups, train_ranker_on_ray

    require_ray()  # before loading the world
    spec = WorldSpec(str(world.resolve()), skip_invalid, _path(classifier), load_settings().tagger)
    stack = spec.stack()
    cfg = stack.cfg.model_copy(update={"ranker": stack.cfg.ranker.model_copy(update={"seed": seed})})
    work = load_settings().cache_dir / "ray" / "ranker"
    factory = partial(WorldGroups, spec, cfg.model_dump_json())
    ranker, timing = train_ranker_on_ray(
        sorted(stack.world.users), factory, cfg, stack.split, work, progress=progress, **ray
    )
    # the collaborative residual (four features) is trained here, on top of the distributed content
    # booster, from the same impression shards
    groups = read_groups(work / "impressions")
    return ranker.fit_residual(groups, cfg, stack.split, fit_collab(stack, progress=progress)), timing


# --- world contexts -----------------------------------------------------------------------------


class WorldContexts:
    """Users' contexts replayed from a world's logs, as the API's ``seed_context`` does (``None``
    for a user with nothing to replay)."""

    def __init__(self, spec: WorldSpec) -> None:
        self.stack = spec.stack()
        self.updater = ContextUpdater(self.stack.cfg.signals)

    def __call__(self, user_ids: list[str]) -> list[tuple[str, dict[str, Any] | None]]:
        logs = [(u, self.stack.world.users[u]) for u in user_ids if u in self.stack.world.users]
        _prefetch(self.stack, logs)
        out: list[tuple[str, dict[str, Any] | None]] = []
        for u, log in logs:
            ctx = replay(self.updater, self.stack.catalog, self.stack.tagging, log)
            out.append((u, ctx.to_dict() if ctx.updated_at else None))
        return out


def contexts_cmd(
    world: Annotated[Path, typer.Argument(help="World directory (catalog, queries, events).")],
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", help="redis://… or redis+cluster://… (default: CLIPFEED_REDIS_URL)."),
    ] = None,
    engine: Engine = "local",
    address: Address = None,
    workers: Workers = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000, help="Users per pipeline.")] = 200,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace contexts the store already has.")] = False,
    classifier: Annotated[Path | None, typer.Option("--classifier", help="Topic model directory.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows instead of failing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Write every user's context, replayed from the world's logs, to the feed store in pipelined
    batches (a user who already has one keeps it unless --overwrite); --engine ray runs it on Ray."""
    from api.store import RedisStore
    from scale.contexts import write_contexts

    settings = load_settings()
    url = redis_url or settings.redis_url
    if not url:
        raise InputError("arguments", None, "--redis-url", "give --redis-url or set CLIPFEED_REDIS_URL")
    spec = WorldSpec(str(world.resolve()), skip_invalid, _path(classifier), settings.tagger)
    if use_ray(engine):
        from scale.engine import require_ray

        require_ray()
    users = _user_ids(world, skip_invalid)
    store = partial(RedisStore, url, 4, max(5.0, settings.redis_timeout_s), settings.context_ttl_days * 86400)
    t0 = time.perf_counter()
    result = write_contexts(
        users,
        partial(WorldContexts, spec),
        store,
        engine=engine,
        batch_size=batch_size,
        overwrite=overwrite,
        workers=workers,
        address=address,
        progress=not json_out,
    )
    result["seconds_total"] = round(time.perf_counter() - t0, 2)
    if json_out:
        emit_json(result)
    else:
        stdout.print(
            f"{result['written']} contexts written, {result['kept']} kept, {result['empty']} empty "
            f"({result['users_per_s']} users/s, {engine})",
            highlight=False,
        )


def _user_ids(world: Path, skip_invalid: bool) -> list[str]:
    """The world's user ids without loading the catalog and models on the driver."""
    from recommender import WorldData

    if not world.is_dir():
        raise ClipfeedError(f"{world}: not a world directory (build one with `clipfeed world build`)")
    return sorted(WorldData.load(world, skip_invalid=skip_invalid).users)
