"""Ranker training on Ray: training groups built by a pool of actors into Parquet impression shards,
then LightGBM's own data-parallel mode driven by Ray Train (``LightGBMTrainer``).

1. **Features.** Ray Data maps batches of user ids through actors that each load the world once and
   build the users' LambdaRank groups with the same code as the local trainer (a factory from the
   caller: ``cli/scale.py`` builds exactly what ``train_ranker`` builds). One row per impression:
   ``user, session, pos, time, label, part, f_<feature>…``, written as Parquet partitioned by
   ``part = crc32(user) % workers`` — a user's sessions, and so every LambdaRank group, stay whole
   in one partition.
2. **Training.** Worker ``r`` of ``LightGBMTrainer`` reads partition ``r`` for training and the
   validation groups (sessions after the split) of every partition, and calls the local
   :meth:`recommender.Ranker.train` — same prior (``init_score``), parameters, early stopping and
   metadata — adding only LightGBM's network parameters (``tree_learner=data_parallel``,
   ``pre_partition``). Every worker validates on the same groups, so all stop at the same round.
   Rank 0's booster comes back through a Ray Train checkpoint; the result is a
   :class:`~recommender.Ranker` saved in the local format (``ranker.txt`` + ``ranker.json``).

Differences from one machine, by construction: LightGBM builds each feature's histogram bins from
the rows of one worker (not all rows) and sums histograms across workers in another order, so
early stopping may pick another round; scores agree closely, not bit for bit (the tests bound it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recommender.config import RecommenderConfig
from recommender.features import FEATURES
from recommender.ranker import MODEL_FILE, Ranker, TrainingData
from scale.engine import actor_resources, require_ray, session

GroupBuilder = Callable[[list[str]], list[tuple[str, TrainingData]]]  # user ids -> each user's groups
GroupFactory = Callable[[], GroupBuilder]  # built once per actor (loads the world)
COLUMNS = [f"f_{name}" for name in FEATURES]


def part_of(user_id: str, parts: int) -> int:
    """The training partition of a user (all their sessions go to one worker)."""
    return zlib.crc32(f"part:{user_id}".encode()) % parts


class FeatureActor:
    """Builds users' training groups (one world load per actor) as impression rows."""

    def __init__(self, factory: GroupFactory, parts: int) -> None:
        self.build = factory()
        self.parts = parts

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        cols: dict[str, list[Any]] = {k: [] for k in ("user", "session", "pos", "time", "label", "part")}
        feats: list[np.ndarray] = []
        for user, data in self.build([str(u) for u in batch["user_id"]]):
            for s, (x, y, t) in enumerate(zip(data.features, data.labels, data.times, strict=True)):
                n = len(y)
                cols["user"] += [user] * n
                cols["session"] += [s] * n
                cols["pos"] += list(range(n))
                cols["time"] += [t] * n
                cols["label"] += [int(v) for v in y]
                cols["part"] += [part_of(user, self.parts)] * n
                feats.append(x)
        x_all = np.concatenate(feats) if feats else np.zeros((0, len(FEATURES)), dtype=np.float32)
        out = {k: np.asarray(v) for k, v in cols.items()}
        out["user"] = np.asarray(cols["user"], dtype=object)
        out["time"] = np.asarray(cols["time"], dtype=np.float64)
        for j, name in enumerate(COLUMNS):
            out[name] = x_all[:, j]
        return out


def read_groups(directory: str | Path, part: int | None = None, *, min_time: float | None = None) -> TrainingData:
    """Training groups from impression shards (one partition, or all), in (user, session) order;
    ``min_time`` keeps only sessions that start at or after it (the validation groups)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    ds = pads.dataset(str(directory), format="parquet", partitioning="hive")
    flt = None if part is None else (pc.field("part") == part)
    if min_time is not None:
        later = pc.field("time") >= min_time
        flt = later if flt is None else (flt & later)
    table = ds.to_table(filter=flt).sort_by([("user", "ascending"), ("session", "ascending"), ("pos", "ascending")])
    data = TrainingData()
    if table.num_rows == 0:
        return data
    users = table.column("user").to_numpy(zero_copy_only=False)
    sessions = table.column("session").to_numpy()
    x = np.stack([table.column(c).to_numpy() for c in COLUMNS], axis=1).astype(np.float32)
    y = table.column("label").to_numpy()
    t = table.column("time").to_numpy()
    change = np.flatnonzero((users[1:] != users[:-1]) | (sessions[1:] != sessions[:-1])) + 1
    for a, b in zip([0, *change.tolist()], [*change.tolist(), len(y)], strict=True):
        data.features.append(x[a:b])
        data.labels.append(y[a:b])
        data.groups.append(b - a)
        data.times.append(float(t[a]))
    return data


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its partition's training groups + every validation group → Ranker.train."""
    import ray.train
    from ray.train.lightgbm import get_network_params

    rank = ray.train.get_context().get_world_rank()
    split = float(config["split"])
    own = read_groups(config["dir"], rank)
    data = TrainingData()
    for g, t in enumerate(own.times):
        if t < split:
            data.features.append(own.features[g])
            data.labels.append(own.labels[g])
            data.groups.append(own.groups[g])
            data.times.append(t)
    data.extend(read_groups(config["dir"], min_time=split))
    params = {"tree_learner": "data_parallel", "pre_partition": True, "num_threads": int(config["threads"])}
    params |= get_network_params()
    cfg = RecommenderConfig.model_validate(config["cfg"])
    ranker = Ranker.train(data, cfg, split, params=params)
    metrics = {"best_iteration": ranker.meta["best_iteration"], "valid_ndcg@10": ranker.meta["valid_ndcg@10"]}
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ranker.save(tmp)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def build_impressions(
    user_ids: Sequence[str], factory: GroupFactory, out: Path, *, workers: int, users_per_batch: int = 32
) -> int:
    """Step 1: every user's training groups as Parquet impression shards under ``out`` (replaced);
    returns the number of impression rows."""
    import ray.data

    res = actor_resources(workers)
    shutil.rmtree(out, ignore_errors=True)
    n_blocks = max(1, min(len(user_ids), max(2 * res.workers, len(user_ids) // (4 * users_per_batch))))
    ds = ray.data.from_items([{"user_id": u} for u in user_ids], override_num_blocks=n_blocks)
    rows = ds.map_batches(
        FeatureActor,
        fn_constructor_kwargs={"factory": factory, "parts": res.workers},
        batch_size=users_per_batch,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=res.workers),
        num_cpus=res.num_cpus,
    ).materialize()
    count = int(rows.count())
    rows.write_parquet(str(out), partition_cols=["part"])
    return count


def train_ranker_on_ray(
    user_ids: Sequence[str],
    factory: GroupFactory,
    cfg: RecommenderConfig,
    split_ts: float,
    work_dir: Path,
    *,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> tuple[Ranker, dict[str, Any]]:
    """``clipfeed ranker train --engine ray``: see the module docstring. ``work_dir`` holds the
    impression shards and Ray Train's run folder (on storage every node sees, for a real cluster).

    Returns the ranker (without a collaborative model: the caller binds the served one, as
    ``train_ranker`` does) and timings."""
    require_ray()
    with session(address, progress=progress):
        from ray.train import RunConfig, ScalingConfig
        from ray.train.lightgbm import LightGBMTrainer

        res = actor_resources(workers)
        t0 = time.perf_counter()
        shards = work_dir / "impressions"
        rows = build_impressions(user_ids, factory, shards, workers=res.workers)
        t1 = time.perf_counter()
        everything = read_groups(shards)
        valid = [t for t in everything.times if t >= split_ts]
        if not valid:
            raise RuntimeError("distributed training needs validation sessions (after the time split)")
        threads = max(1, int(res.num_cpus))
        runs = work_dir / "ray_train"
        shutil.rmtree(runs, ignore_errors=True)
        trainer = LightGBMTrainer(
            _train_worker,
            train_loop_config={
                "dir": str(shards.resolve()),
                "split": split_ts,
                "cfg": cfg.model_dump(),
                "threads": threads,
            },
            scaling_config=ScalingConfig(num_workers=res.workers, resources_per_worker={"CPU": res.num_cpus}),
            # a fresh run folder: Ray Train would resume a run of the same name from its checkpoint
            run_config=RunConfig(storage_path=str(runs.resolve()), name=f"ranker-{uuid.uuid4().hex[:8]}"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"distributed training returned no model: {result.error}")
        with result.checkpoint.as_directory() as d:
            import lightgbm as lgb

            booster = lgb.Booster(model_str=(Path(d) / MODEL_FILE).read_text(encoding="utf-8"))
            meta = json.loads((Path(d) / "ranker.json").read_text(encoding="utf-8"))
        train_ix = [g for g, t in enumerate(everything.times) if t < split_ts]
        meta |= {
            "train_groups": len(train_ix),
            "valid_groups": len(valid),
            "train_rows": int(sum(everything.groups[g] for g in train_ix)),
            "engine": "ray",
            "workers": res.workers,
            "tree_learner": "data_parallel",
        }
        timing = {
            "impressions": rows,
            "feature_seconds": round(t1 - t0, 2),
            "lightgbm_seconds": round(time.perf_counter() - t1, 2),
        }
        return Ranker(booster, meta), timing
