"""LightGBM LambdaRank: training groups from logged sessions, the model, and its schema guard."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm import tqdm

from clipfeed.errors import ClipfeedError
from clipfeed.records import Event, EventType, SearchQuery
from recommender.candidates import TagVectorCache
from recommender.catalog import CatalogIndex
from recommender.config import RecommenderConfig
from recommender.features import FEATURES, RequestContext, compute
from recommender.pipeline import SearchTagging, UserLog, apply_event, apply_query
from recommender.signals import ContextUpdater, UserContext

SESSION_GAP_S = 1800.0
MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"


@dataclass
class TrainingData:
    features: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(sum(self.groups))


def grade(events: list[Event], meaningful: float) -> int:
    """Graded label of one impression: 3 engaged, 2 meaningful watch, 1 watch, 0 skip/nothing."""
    label = 0
    for e in events:
        if e.type is EventType.WATCH:
            label = max(label, 2 if (e.watch_ratio or 0) >= meaningful else 1)
        elif e.type in (EventType.LIKE, EventType.SHARE, EventType.COMMENT):
            label = 3
    return label


def user_sessions(log: UserLog) -> list[tuple[float, list[str], dict[str, list[Event]]]]:
    """Impression sessions: (start ts, clips in order, reactions per clip)."""
    sessions: list[tuple[float, list[str], dict[str, list[Event]]]] = []
    last = -1e18
    for e in log.events:
        ts = e.ts.timestamp()
        if e.type is EventType.IMPRESSION:
            if ts - last > SESSION_GAP_S:
                sessions.append((ts, [], {}))
            last = ts
            sessions[-1][1].append(e.clip_id or "")
        elif sessions and e.clip_id is not None:
            sessions[-1][2].setdefault(e.clip_id, []).append(e)
    return sessions


def build_training(
    catalog: CatalogIndex,
    tagging: SearchTagging,
    logs: Iterable[tuple[str, UserLog]],
    cfg: RecommenderConfig,
    vectors: TagVectorCache,
    progress: bool = True,
) -> TrainingData:
    updater = ContextUpdater(cfg.signals)
    data = TrainingData()
    for _uid, log in tqdm(list(logs), desc="ranker: sessions", unit="user", disable=not progress):
        sessions = user_sessions(log)
        if not sessions:
            continue
        ctx = UserContext()
        items: list[tuple[float, int, SearchQuery | Event]] = [(q.ts.timestamp(), 0, q) for q in log.queries]
        items += [(e.ts.timestamp(), 1, e) for e in log.events]
        items.sort(key=lambda x: (x[0], x[1]))
        s = 0
        for ts, _, item in items:
            while s < len(sessions) and sessions[s][0] <= ts:
                _add_session(data, ctx, catalog, vectors, sessions[s], cfg.signals.meaningful_watch_ratio)
                s += 1
            if isinstance(item, SearchQuery):
                apply_query(updater, ctx, tagging, item)
            else:
                apply_event(updater, ctx, catalog, item)
    return data


def _add_session(
    data: TrainingData,
    ctx: UserContext,
    catalog: CatalogIndex,
    vectors: TagVectorCache,
    session: tuple[float, list[str], dict[str, list[Event]]],
    meaningful: float,
) -> None:
    start, clips, reactions = session
    idx = [catalog.pos[c] for c in dict.fromkeys(clips) if c in catalog.pos]
    if len(idx) < 2:
        return
    hour = int((start // 3600) % 24)
    data.features.append(compute(catalog.view(ctx), catalog, vectors, idx, RequestContext(hour=hour)))
    data.labels.append(np.array([grade(reactions.get(catalog.ids[i], []), meaningful) for i in idx]))
    data.groups.append(len(idx))
    data.times.append(start)


# The prior the booster starts from (LightGBM ``init_score``): a transparent hand-weighted score.
# Logged sessions come from a legacy exposure policy that rarely showed search-matched clips, so
# the booster learns corrections to this prior where the logs support them instead of relearning
# from scratch what the logs can barely show.
PRIOR_WEIGHTS = {
    "intent_share": 3.0,
    "tag_sim": 1.5,
    "tag_keyword": 1.0,
    "tag_sim_same_topic": 1.0,
    "tag_keyword_same_topic": 1.0,
    "watch_share": 2.0,
    "engage_share": 1.0,
    "skip_share": -2.0,
    "creator_follow": 1.0,
    "quality": 1.0,
    "lang_match": 0.5,
}
_PRIOR = np.array([PRIOR_WEIGHTS.get(f, 0.0) for f in FEATURES], dtype=np.float64)


def prior_score(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x.astype(np.float64) @ _PRIOR
    return out


class Ranker:
    """A trained LambdaRank booster bound to the feature schema it was trained on."""

    def __init__(self, booster: lgb.Booster, meta: dict[str, Any]) -> None:
        self.booster = booster
        self.meta = meta

    @classmethod
    def train(cls, data: TrainingData, cfg: RecommenderConfig, split_ts: float) -> Ranker:
        if not data.groups:
            raise ClipfeedError("no training sessions: the world has no impressions with reactions")
        train_ix = [g for g, t in enumerate(data.times) if t < split_ts]
        valid_ix = [g for g, t in enumerate(data.times) if t >= split_ts] or train_ix[-max(1, len(train_ix) // 10) :]

        def dataset(ix: list[int], ref: lgb.Dataset | None = None) -> lgb.Dataset:
            x = np.concatenate([data.features[g] for g in ix])
            y = np.concatenate([data.labels[g] for g in ix])
            return lgb.Dataset(
                x,
                y,
                group=[data.groups[g] for g in ix],
                feature_name=list(FEATURES),
                init_score=prior_score(x),
                reference=ref,
                free_raw_data=False,
            )

        rc = cfg.ranker
        dtrain = dataset(train_ix)
        dvalid = dataset(valid_ix, dtrain)
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [10],
            "num_leaves": rc.num_leaves,
            "learning_rate": rc.learning_rate,
            "min_data_in_leaf": rc.min_data_in_leaf,
            "seed": rc.seed,
            "deterministic": True,
            "num_threads": rc.num_threads,
            "verbosity": -1,
        }
        evals: dict[str, Any] = {}
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=rc.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(rc.early_stopping_rounds, verbose=False), lgb.record_evaluation(evals)],
        )
        meta = {
            "features": list(FEATURES),
            "config": cfg.model_dump(),
            "best_iteration": booster.best_iteration,
            "train_groups": len(train_ix),
            "valid_groups": len(valid_ix),
            "train_rows": int(sum(data.groups[g] for g in train_ix)),
            "valid_ndcg@10": float(evals["valid"]["ndcg@10"][booster.best_iteration - 1]),
        }
        return cls(booster, meta)

    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / MODEL_FILE), num_iteration=self.booster.best_iteration)
        (path / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> Ranker:
        path = Path(directory)
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ClipfeedError(
                f"{path}: no ranker here ({META_FILE} missing); train one with `clipfeed ranker train`"
            ) from e
        if meta.get("features") != list(FEATURES):
            theirs, ours = meta.get("features", []), list(FEATURES)
            diff = sorted(set(theirs) ^ set(ours)) or ["(same names, different order)"]
            raise ClipfeedError(
                f"{path}: the model's feature schema differs from this code's "
                f"({', '.join(diff)}); retrain with `clipfeed ranker train`"
            )
        RecommenderConfig.model_validate(meta["config"])
        return cls(lgb.Booster(model_file=str(path / MODEL_FILE)), meta)

    @property
    def config(self) -> RecommenderConfig:
        return RecommenderConfig.model_validate(self.meta["config"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The prior score plus the boosted correction learned from logged sessions."""
        out: np.ndarray = prior_score(x) + self.booster.predict(x, num_threads=1)
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the score: the prior's (weight x value) plus the booster's
        (LightGBM ``pred_contrib``); the last column is the booster's bias."""
        out = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1), dtype=np.float64)
        out[:, :-1] += x.astype(np.float64) * _PRIOR
        return out
