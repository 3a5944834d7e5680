"""LightGBM LambdaRank: training groups from logged sessions, the model, and its schema guard."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm import tqdm

from clipfeed.errors import ClipfeedError
from clipfeed.records import Event, EventType, SearchQuery
from recommender.candidates import TagVectorCache
from recommender.catalog import CatalogIndex
from recommender.collab import CollabModel
from recommender.compiled import CompiledForest, compile_booster
from recommender.config import RecommenderConfig
from recommender.features import FEATURES, RequestContext, compute
from recommender.pipeline import SearchTagging, UserLog, apply_event, apply_query, timeline
from recommender.signals import ContextUpdater, UserContext

SESSION_GAP_S = 1800.0
MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
RESIDUAL_FILE = "ranker-residual.txt"


@dataclass
class TrainingData:
    features: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    # Optional, one array per group: each row's position on the served page (0 = top). When given,
    # training uses LightGBM's position-bias handling (unbiased LambdaRank, ``Dataset(position=)``).
    positions: list[np.ndarray] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(sum(self.groups))

    def extend(self, other: TrainingData) -> None:
        """Appends another set of groups (e.g. another fold of users)."""
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


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
    collab: CollabModel | None = None,
) -> TrainingData:
    """One LambdaRank group per logged impression session, its features from the user's context just
    before the session (with the collaborative features when ``collab`` is given)."""
    updater = ContextUpdater(cfg.signals)
    data = TrainingData()
    for _uid, log in tqdm(list(logs), desc="ranker: sessions", unit="user", disable=not progress):
        sessions = user_sessions(log)
        if not sessions:
            continue
        ctx = UserContext()
        s = 0
        for ts, item in timeline(log):
            while s < len(sessions) and sessions[s][0] <= ts:
                ctx.settle()  # events are folded with their decay pending (see ContextUpdater)
                _add_session(data, ctx, catalog, vectors, sessions[s], cfg.signals.meaningful_watch_ratio, collab)
                s += 1
            if isinstance(item, SearchQuery):
                apply_query(updater, ctx, tagging, item, settle=False)
            else:
                apply_event(updater, ctx, catalog, item, settle=False)
    return data


def _add_session(
    data: TrainingData,
    ctx: UserContext,
    catalog: CatalogIndex,
    vectors: TagVectorCache,
    session: tuple[float, list[str], dict[str, list[Event]]],
    meaningful: float,
    collab: CollabModel | None = None,
) -> None:
    start, clips, reactions = session
    idx = [catalog.pos[c] for c in dict.fromkeys(clips) if c in catalog.pos]
    if len(idx) < 2:
        return
    hour = int((start // 3600) % 24)
    data.features.append(compute(catalog.view(ctx), catalog, vectors, idx, RequestContext(hour=hour), collab))
    data.labels.append(np.array([grade(reactions.get(catalog.ids[i], []), meaningful) for i in idx]))
    data.groups.append(len(idx))
    data.times.append(start)


# The collaborative features (cf_score, coengage, liked_sim) have no prior weight: on the sample
# world every positive weight on them lowered warm users' NDCG@10 when blended with the content
# score (docs/hybrid.md), so only the booster, under monotone constraints, may use them.
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
    "clip_coverage": 6.0,
    "entity_match": 4.0,
    "entity_other": -3.0,
    "watch_share": 2.0,
    "engage_share": 1.0,
    "skip_share": -2.0,
    "creator_follow": 1.0,
    "quality": 1.0,
    "lang_match": 0.5,
}
COLLAB_FEATURES = ("cf_score", "coengage", "liked_sim")
RESIDUAL_FEATURES = (*COLLAB_FEATURES, "history_len")
MONOTONE_UP = frozenset(COLLAB_FEATURES)
_COLLAB = [FEATURES.index(f) for f in COLLAB_FEATURES]
# What a clip is like regardless of who asks: views, logged quality, age, length. The content booster
# does not see them (they are zeroed in its input; ``quality`` still counts through its prior
# weight). Logged watches reward popular, high-quality clips whatever the user searched for, and a
# booster that learns so pulls a cold-start feed back towards "popular". Measured on two worlds
# (seeds 42 and 7, both populations): with them the booster scored 0.02-0.04 NDCG@10 below the
# prior alone; without them it is level with the prior (README, Recommender).
ITEM_FEATURES = ("log_views", "quality", "age_days", "duration_s")
# Counted through the prior only, hidden from the booster as well. The clip-side word coverage
# separates a clip about the searched entity (3.0 true gain) from one of the same topic about
# another entity (1.2), the confusion that cost cold users most (README, Recommender); the logged
# sessions seldom show that contrast, and a booster that learnt the feature from them scored cold
# NDCG@10 0.810 against 0.828 blind to it (seed 42). Retrained on top of a prior weight of 3, 6 or
# 10, the ranker gained on both worlds measured (seeds 42 and 7), cold and warm; 6 was best on
# average (README, Recommender).
# The entity features (``recommender/entities.py``: the user's tags of the clip's topic name an entity
# of the clip, or name only other entities) are prior-only for the same reason: the legacy logs seldom
# put a named entity's clips next to other entities' clips of one topic. Weights 3/-2 and 4/-3 were
# measured on two worlds (seeds 42 and 7) with clip_coverage at 3 and 6; 4/-3 with 6 had the best
# mean of cold and warm NDCG@10 (README, Recommender).
PRIOR_ONLY = ("clip_coverage", "entity_match", "entity_other")
BOOSTER_BLIND = (*ITEM_FEATURES, *PRIOR_ONLY)
_BLIND = [FEATURES.index(f) for f in BOOSTER_BLIND]
_RES = [FEATURES.index(f) for f in RESIDUAL_FEATURES]
_PRIOR = np.array([PRIOR_WEIGHTS.get(f, 0.0) for f in FEATURES], dtype=np.float64)


@dataclass
class _Rows:
    x: np.ndarray
    y: np.ndarray
    groups: list[int]
    position: np.ndarray | None


def _split(data: TrainingData, split_ts: float) -> tuple[tuple[_Rows, _Rows], tuple[int, int]]:
    """Training and validation rows by session time (the last tenth validates when none is later)."""
    if not data.groups:
        raise ClipfeedError("no training sessions: the world has no impressions with reactions")
    if data.positions and len(data.positions) != len(data.groups):
        raise ClipfeedError(f"positions for {len(data.positions)} of {len(data.groups)} training groups")
    train_ix = [g for g, t in enumerate(data.times) if t < split_ts]
    valid_ix = [g for g, t in enumerate(data.times) if t >= split_ts] or train_ix[-max(1, len(train_ix) // 10) :]

    def rows(ix: list[int]) -> _Rows:
        return _Rows(
            np.concatenate([data.features[g] for g in ix]),
            np.concatenate([data.labels[g] for g in ix]),
            [data.groups[g] for g in ix],
            np.concatenate([data.positions[g] for g in ix]) if data.positions else None,
        )

    return (rows(train_ix), rows(valid_ix)), (len(train_ix), len(valid_ix))


def _fit(
    cfg: RecommenderConfig,
    names: list[str],
    train: tuple[np.ndarray, _Rows, np.ndarray],
    valid: tuple[np.ndarray, _Rows, np.ndarray],
    extra: dict[str, Any],
) -> tuple[lgb.Booster, float]:
    """One LambdaRank booster from ``init_score`` (x, rows, start score), early-stopped on ``valid``;
    returns it and its best validation NDCG@10."""
    rc = cfg.ranker
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
    } | extra

    def dataset(part: tuple[np.ndarray, _Rows, np.ndarray], ref: lgb.Dataset | None = None) -> lgb.Dataset:
        x, r, start = part
        return lgb.Dataset(
            x,
            r.y,
            group=r.groups,
            feature_name=names,
            init_score=start,
            position=r.position,
            reference=ref,
            free_raw_data=False,
        )

    dtrain = dataset(train)
    evals: dict[str, Any] = {}
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=rc.num_boost_round,
        valid_sets=[dataset(valid, dtrain)],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(rc.early_stopping_rounds, verbose=False), lgb.record_evaluation(evals)],
    )
    return booster, float(evals["valid"]["ndcg@10"][booster.best_iteration - 1])


def _content(x: np.ndarray, blind: Sequence[int]) -> np.ndarray:
    """The rows as a content booster sees them: collaborative features zeroed, and the ``blind``
    columns (the item features, for boosters trained since they were hidden)."""
    out = x.copy()
    out[:, _COLLAB] = 0.0
    out[:, blind] = 0.0
    return out


def prior_score(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The hand-weighted prior (``PRIOR_WEIGHTS``, or a model's own ``weights`` in schema order)."""
    out: np.ndarray = x.astype(np.float64) @ (_PRIOR if weights is None else weights)
    return out


class Ranker:
    """A trained LambdaRank ranker bound to the feature schema it was trained on: a content booster
    (every feature but the collaborative ones) and, for a hybrid, a residual booster on the
    collaborative features and the history length, trained on top of the content score, with the
    collaborative model those features came from (saved beside it).

    The residual is how the ranker learns the hand-over from cold to warm: it sees only
    ``RESIDUAL_FEATURES``, which are constant across one cold user's candidates, so a cold user's
    ranking is exactly the content ranking; for warm users it adds what the collaborative signals
    are worth at that history length, and early stopping keeps it near zero where they add nothing.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        meta: dict[str, Any],
        collab: CollabModel | None = None,
        residual: lgb.Booster | None = None,
    ) -> None:
        self.booster = booster
        self.meta = meta
        # the columns this booster was trained without (models saved before item features were
        # hidden have no such entry: they saw them, and still do)
        self._blind = [FEATURES.index(f) for f in meta.get("booster_blind", []) if f in FEATURES]
        # The prior its booster was trained on top of, saved with the model (models saved before
        # it was: the code's PRIOR_WEIGHTS, which they were trained with), so that changing the
        # code's weights cannot silently change a trained model's scores.
        saved = meta.get("prior_weights")
        self._prior = _PRIOR if saved is None else np.array([float(saved.get(f, 0.0)) for f in FEATURES])
        self.collab = collab
        self.residual = residual if collab is not None else None
        # native-code copies of the boosters for predict() (see compile()); None: LightGBM predicts
        self.compiled: CompiledForest | None = None
        self.compiled_residual: CompiledForest | None = None

    def content_only(self) -> Ranker:
        """The same ranker without its collaborative part (the ``content`` system)."""
        out = Ranker(self.booster, {**self.meta, "collab": False, "residual": False})
        out.compiled = self.compiled
        return out

    def compile(self, cache_dir: Path) -> Ranker:
        """This ranker, predicting with its boosters compiled to native code by lleaves
        (:mod:`recommender.compiled`: the same scores, 5-7x faster per call); where lleaves is
        missing or disagrees with LightGBM, LightGBM keeps predicting. Returns ``self``."""
        self.compiled = compile_booster(self.booster, cache_dir)
        if self.residual is not None:
            self.compiled_residual = compile_booster(self.residual, cache_dir)
        return self

    @classmethod
    def train(
        cls,
        data: TrainingData,
        cfg: RecommenderConfig,
        split_ts: float,
        collab: CollabModel | None = None,
        params: dict[str, Any] | None = None,
    ) -> Ranker:
        """The content booster, then (with ``collab``) the collaborative residual on top of it.
        ``params`` adds LightGBM parameters (the distributed trainer in ``scale/`` adds its network
        ones: each worker trains on its own groups and validates on all of them)."""
        (train, valid), (n_train, n_valid) = _split(data, split_ts)
        booster, ndcg = _fit(
            cfg,
            list(FEATURES),
            (_content(train.x, _BLIND), train, prior_score(train.x)),
            (_content(valid.x, _BLIND), valid, prior_score(valid.x)),
            params or {},
        )
        meta: dict[str, Any] = {
            "features": list(FEATURES),
            "booster_blind": list(BOOSTER_BLIND),
            "prior_weights": dict(PRIOR_WEIGHTS),
            "config": cfg.model_dump(),
            "best_iteration": booster.best_iteration,
            "train_groups": n_train,
            "valid_groups": n_valid,
            "train_rows": int(sum(train.groups)),
            "valid_ndcg@10": ndcg,
            "position_bias": "lightgbm unbiased lambdarank (Dataset position)" if data.positions else "none",
            "collab": False,
            "residual": False,
        }
        ranker = cls(booster, meta)
        return ranker.fit_residual(data, cfg, split_ts, collab) if collab is not None else ranker

    def fit_residual(self, data: TrainingData, cfg: RecommenderConfig, split_ts: float, collab: CollabModel) -> Ranker:
        """This ranker's content booster plus a collaborative residual trained on top of its score
        (on one machine: four features; the distributed trainer calls it after the content booster)."""
        (train, valid), _ = _split(data, split_ts)
        content = self.content_only()
        residual, ndcg = _fit(
            cfg,
            list(RESIDUAL_FEATURES),
            (train.x[:, _RES], train, content.predict(train.x)),
            (valid.x[:, _RES], valid, content.predict(valid.x)),
            {
                # more co-engagement or a higher factor score never makes a clip less likely
                "monotone_constraints": [1 if f in MONOTONE_UP else 0 for f in RESIDUAL_FEATURES],
                "monotone_constraints_method": "advanced",
            },
        )
        meta = self.meta | {
            "collab": True,
            "residual": True,
            "content_valid_ndcg@10": self.meta.get("content_valid_ndcg@10", self.meta["valid_ndcg@10"]),
            "valid_ndcg@10": ndcg,
            "residual_best_iteration": residual.best_iteration,
        }
        return Ranker(self.booster, meta, collab, residual)

    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / MODEL_FILE), num_iteration=self.booster.best_iteration)
        (path / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")
        if self.collab is not None:
            self.collab.save(path)
        if self.residual is not None:
            self.residual.save_model(str(path / RESIDUAL_FILE), num_iteration=self.residual.best_iteration)

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
        # A ranker trained with collaborative features needs the model they came from.
        collab = CollabModel.load(path) if meta.get("collab") else None
        residual = lgb.Booster(model_file=str(path / RESIDUAL_FILE)) if meta.get("residual") and collab else None
        return cls(lgb.Booster(model_file=str(path / MODEL_FILE)), meta, collab, residual)

    @property
    def config(self) -> RecommenderConfig:
        return RecommenderConfig.model_validate(self.meta["config"])

    def booster_input(self, x: np.ndarray) -> np.ndarray:
        """Feature rows as this ranker's content booster sees them (the columns it was trained
        without zeroed)."""
        return _content(x, self._blind)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The prior score plus the boosted correction learned from logged sessions (plus the
        collaborative residual of a hybrid)."""
        fast, fast_res = self.compiled, self.compiled_residual
        xc = self.booster_input(x)
        boosted = fast.predict(xc) if fast else self.booster.predict(xc, num_threads=1)
        out: np.ndarray = prior_score(x, self._prior) + boosted
        if self.residual is not None and len(x):
            res = x[:, _RES]
            if (res == res[0]).all():
                # a cold user: the residual's inputs are the same for every candidate, so is its
                # output (one row instead of all: a LightGBM call costs ~1 µs per row)
                res = res[:1]
            out += fast_res.predict(res) if fast_res else self.residual.predict(res, num_threads=1)
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the score: the prior's (weight x value) plus the boosters'
        (LightGBM ``pred_contrib``); the last column is the boosters' bias."""
        out = np.asarray(
            self.booster.predict(self.booster_input(x), pred_contrib=True, num_threads=1), dtype=np.float64
        )
        out[:, :-1] += x.astype(np.float64) * self._prior
        if self.residual is not None:
            res = np.asarray(self.residual.predict(x[:, _RES], pred_contrib=True, num_threads=1), dtype=np.float64)
            out[:, _RES] += res[:, :-1]
            out[:, -1] += res[:, -1]
        return out
