"""Collaborative signals for warm users: item-item co-engagement and an implicit-feedback factor model.

Both are fitted offline from logged clip events (the positives of :func:`positive_weight`:
meaningful watches, likes, shares, comments) and used twice: as candidate sources (``coengage``,
``factor``) and as ranker features (``coengage``, ``cf_score``). A cold user has no liked clips, so
both give nothing and the feed is exactly the content-based one.

The factor model is implicit's ALS (Hu, Koren & Volinsky 2008). Serving needs only its item factors:
a user's vector is folded in from the clips in their context with ALS's own least-squares step, so
a user's newest watch moves their vector at once, without refitting.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from threadpoolctl import threadpool_limits

from clipfeed.errors import ClipfeedError
from clipfeed.records import Event
from recommender.signals import positive_weight
from recommender.topk import top_k

MODEL_FILE = "collab.npz"
META_FILE = "collab.json"


class CollabConfig(BaseModel):
    """How the collaborative models are fitted and used."""

    model_config = ConfigDict(extra="forbid")

    factors: int = Field(default=32, ge=2, le=512, description="ALS latent dimensions.")
    regularization: float = Field(default=0.1, ge=0)
    alpha: float = Field(default=10.0, gt=0, description="Confidence per unit of positive weight (alpha*w).")
    iterations: int = Field(default=15, ge=1)
    neighbours: int = Field(default=50, ge=1, description="Co-engaged clips kept per clip.")
    min_users: int = Field(default=1, ge=1, description="Users two clips must share to count as co-engaged.")
    candidates: int = Field(default=30, ge=0, description="Candidates per collaborative source per feed.")
    seed: int = 0
    num_threads: int = Field(default=2, ge=1)


@dataclass
class CollabScores:
    """Per candidate: the factor model's score and the co-engagement with the user's liked clips."""

    cf_score: np.ndarray
    coengage: np.ndarray


@dataclass(frozen=True)
class UserSide:
    """One user's side of the collaborative model: which clips they liked (a mask over the model's
    clips), the folded-in factor vector, and every clip's factor score and co-engagement with the
    liked clips."""

    liked: np.ndarray
    vector: np.ndarray
    factor: np.ndarray
    coengage: np.ndarray

    @property
    def n_liked(self) -> int:
        return int(self.liked.sum())


class CollabModel:
    """Item factors and a sparse top-k co-engagement graph over one catalog's clips."""

    def __init__(
        self,
        ids: Sequence[str],
        item_factors: np.ndarray,
        neighbours: sparse.csr_matrix,
        cfg: CollabConfig,
        meta: dict[str, object] | None = None,
    ) -> None:
        self.ids = list(ids)
        self.pos = {c: i for i, c in enumerate(self.ids)}
        self.item_factors = item_factors.astype(np.float32)
        self.neighbours = neighbours.tocsr().astype(np.float32)
        self.cfg = cfg
        self.meta = meta or {}
        self.gram = (self.item_factors.T @ self.item_factors).astype(np.float64)  # Y^T Y, for the fold-in
        self._sides: dict[tuple[tuple[str, float], ...], UserSide | None] = {}
        # a side holds a float32 factor score, a float64 co-engagement and a bool per clip (13 bytes;
        # 17 leaves room for the dict and the arrays' headers)
        self._max_sides = max(1, int(64e6 // (17 * max(1, len(self.ids)))))
        self._binding: tuple[Sequence[str], np.ndarray, np.ndarray] | None = None

    # -- fitting ---------------------------------------------------------------------------------
    @staticmethod
    def interactions(
        events: Iterable[Event], ids: Sequence[str], meaningful: float = 0.5
    ) -> tuple[sparse.csr_matrix, list[str]]:
        """(users x clips matrix of summed positive weight, user ids) from logged events."""
        pos = {c: i for i, c in enumerate(ids)}
        weights: dict[tuple[str, int], float] = defaultdict(float)
        for e in events:
            i = pos.get(e.clip_id or "")
            if i is None:
                continue
            w = positive_weight(e.type.value, e.watch_ratio, meaningful)
            if w > 0:
                weights[(e.user_id, i)] += w
        users = sorted({u for u, _ in weights})
        row = {u: r for r, u in enumerate(users)}
        keys = list(weights)
        m = sparse.csr_matrix(
            (
                np.array([weights[k] for k in keys], dtype=np.float32),
                ([row[u] for u, _ in keys], [i for _, i in keys]),
            ),
            shape=(len(users), len(ids)),
        )
        return m, users

    @classmethod
    def fit(
        cls,
        events: Iterable[Event],
        ids: Sequence[str],
        cfg: CollabConfig | None = None,
        meaningful: float = 0.5,
        progress: bool = False,
    ) -> CollabModel:
        """Fits ALS and the co-engagement graph on the positives in ``events`` (pass only events
        before an evaluation split: the model must not see the future it is judged on)."""
        user_items, _ = cls.interactions(events, ids, meaningful)
        return cls.fit_matrix(user_items, ids, cfg, progress)

    @classmethod
    def fit_matrix(
        cls,
        user_items: sparse.csr_matrix,
        ids: Sequence[str],
        cfg: CollabConfig | None = None,
        progress: bool = False,
    ) -> CollabModel:
        """``fit`` from a users x clips matrix built by ``interactions`` (or rows of one: a model
        without some users is fitted on the others' rows, the same matrix ``interactions`` would
        build from their events alone)."""
        from implicit.als import AlternatingLeastSquares  # imported here: serving needs only the factors

        cfg = cfg or CollabConfig()
        if user_items.nnz == 0:
            raise ClipfeedError("no positive clip events (meaningful watches, likes) to fit collaborative signals on")
        # implicit asks for single-threaded BLAS: its own threads do the parallel work.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=cfg.num_threads,
                calculate_training_loss=False,
            )
            model.fit(user_items, show_progress=progress)
        factors = np.asarray(model.item_factors, dtype=np.float32)
        engaged = np.asarray((user_items > 0).sum(axis=0)).ravel()
        factors[engaged == 0] = 0.0  # a clip nobody liked has only its random initialisation
        meta: dict[str, object] = {
            "users": int(user_items.shape[0]),
            "clips_with_positives": int((engaged > 0).sum()),
            "positives": int(user_items.nnz),
        }
        return cls(ids, factors, cls._coengagement(user_items, cfg), cfg, meta)

    @staticmethod
    def _coengagement(user_items: sparse.csr_matrix, cfg: CollabConfig) -> sparse.csr_matrix:
        """Cosine between clips' sets of users who liked them (counts below ``min_users`` dropped), the
        ``neighbours`` strongest per clip."""
        liked = (user_items > 0).astype(np.float32).tocsc()
        co = (liked.T @ liked).tocsr()
        co.setdiag(0)
        co.data[co.data < cfg.min_users] = 0
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(liked.sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        co = sparse.diags(1 / norms) @ co @ sparse.diags(1 / norms)
        co = co.tocsr()
        rows, cols, vals = [], [], []
        for r in range(co.shape[0]):
            lo, hi = co.indptr[r], co.indptr[r + 1]
            if hi == lo:
                continue
            keep = np.argsort(-co.data[lo:hi], kind="stable")[: cfg.neighbours]
            rows += [r] * len(keep)
            cols += co.indices[lo:hi][keep].tolist()
            vals += co.data[lo:hi][keep].tolist()
        return sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=co.shape)

    # -- serving ---------------------------------------------------------------------------------
    def _liked(self, liked: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        known = [(self.pos[c], w) for c, w in liked.items() if c in self.pos and w > 0]
        if not known:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.array([i for i, _ in known]), np.array([w for _, w in known], dtype=np.float64)

    def user_vector(self, liked: Mapping[str, float]) -> np.ndarray | None:
        """ALS's least-squares step for one user, from their liked clips:
        ``u = (YᵀY + Yᵀ(C−I)Y + λI)⁻¹ YᵀCp`` with confidence ``C = alpha·w`` (implicit's convention for
        the weights it was fitted on); None without any."""
        side = self.user_side(liked)
        return side.vector if side is not None else None

    def user_side(self, liked: Mapping[str, float]) -> UserSide | None:
        """Everything a feed needs from one user's liked clips, computed once: a feed asks for both
        candidates and scores, and the fold-in and the neighbour rows are most of their cost. Recent
        users' are kept (the served log asks again for an exploration pick's row after the response), in
        a dict bounded to ~64 MB of arrays; single dict operations are safe across threads."""
        key = tuple(liked.items())
        if key in self._sides:
            return self._sides[key]
        idx, w = self._liked(liked)
        side = None
        if len(idx):
            u = self._fold_in(idx, w)
            mask = np.zeros(len(self.ids), dtype=bool)
            mask[idx] = True
            side = UserSide(mask, u, self.item_factors @ u, self._coengagement_with(idx, w))
        if len(self._sides) >= self._max_sides:
            self._sides.clear()
        self._sides[key] = side
        return side

    def _fold_in(self, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The user factor from liked model positions ``idx`` with weights ``w`` (``user_vector``)."""
        y = self.item_factors[idx].astype(np.float64)
        conf = self.cfg.alpha * w
        a = self.gram + (y.T * (conf - 1.0)) @ y + self.cfg.regularization * np.eye(y.shape[1])
        return np.linalg.solve(a, y.T @ conf).astype(np.float32)

    def _coengagement_with(self, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Every clip's weighted mean similarity to the liked clips ``idx``, from the liked clips'
        rows of the neighbour graph (read straight from the CSR arrays)."""
        nb = self.neighbours
        lo, lengths = nb.indptr[idx], nb.indptr[idx + 1] - nb.indptr[idx]
        # the liked rows' entries as one ragged range: lo[r], lo[r] + 1, ... for each row r
        at = np.arange(lengths.sum()) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        vals = nb.data[at] * np.repeat(w, lengths)
        co: np.ndarray = np.bincount(nb.indices[at], weights=vals, minlength=len(self.ids)) / w.sum()
        return co

    def _bound(self, catalog_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(catalog position -> model position, model position -> catalog position), -1 where the
        other side lacks the clip; cached per catalog id list (a feed builder serves one catalog)."""
        bound = self._binding
        if bound is not None and bound[0] is catalog_ids:
            return bound[1], bound[2]
        if list(catalog_ids) == self.ids:
            to_model = to_catalog = np.arange(len(self.ids), dtype=np.int64)
        else:
            to_model = np.array([self.pos.get(c, -1) for c in catalog_ids], dtype=np.int64)
            where = {c: i for i, c in enumerate(catalog_ids)}
            to_catalog = np.array([where.get(c, -1) for c in self.ids], dtype=np.int64)
        self._binding = (catalog_ids, to_model, to_catalog)
        return to_model, to_catalog

    def scores(self, liked: Mapping[str, float], catalog_ids: Sequence[str], idx: Sequence[int]) -> CollabScores:
        """Both collaborative features for the candidates ``idx`` (positions in ``catalog_ids``)."""
        n = len(idx)
        cf, co = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        if not n:
            return CollabScores(cf, co)
        mine = self._bound(catalog_ids)[0][np.asarray(idx, dtype=np.int64)]
        known = mine >= 0
        at = mine[known]
        key = tuple(liked.items())
        if key in self._sides:  # a served feed asked for candidates first: reuse its side
            side = self._sides[key]
            if side is not None:
                cf[known] = side.factor[at]
                co[known] = side.coengage[at]
            return CollabScores(cf, co)
        # Scores alone (a training session's rows): the candidates' factor scores only, instead of
        # the whole catalog's and a cached side nobody asks for again (half of the feature time
        # of a 1 M-impression training run went there).
        lidx, w = self._liked(liked)
        if len(lidx):
            cf[known] = self.item_factors[at] @ self._fold_in(lidx, w)
            co[known] = self._coengagement_with(lidx, w)[at]
        return CollabScores(cf, co)

    def _ranked(self, side: UserSide, top: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per source, model positions and scores of its ``top`` clips (liked clips excluded)."""
        out = {}
        for name, score in (("coengage", side.coengage), ("factor", side.factor)):
            head = top_k(score, top + side.n_liked)
            head = head[~side.liked[head]][:top]
            head = head[score[head] > 0]
            out[name] = (head, score[head].astype(np.float64))
        return out

    def candidates(self, liked: Mapping[str, float], top: int) -> dict[str, list[tuple[str, float]]]:
        """Per source (``coengage``, ``factor``): the ``top`` clips by that source's score (liked clips
        themselves excluded), as ``(clip_id, score)``; empty for a user with no liked clips."""
        side = self.user_side(liked)
        if side is None or top <= 0:
            return {"coengage": [], "factor": []}
        return {
            name: [(self.ids[j], s) for j, s in zip(at.tolist(), sc.tolist(), strict=True)]
            for name, (at, sc) in self._ranked(side, top).items()
        }

    def candidate_positions(
        self, liked: Mapping[str, float], catalog_ids: Sequence[str], extra: int = 0
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``candidates`` as catalog positions and scores, best first, ``cfg.candidates + extra`` per
        source before clips missing from the catalog are dropped (``extra``: room for seen clips)."""
        side = self.user_side(liked)
        if side is None or self.cfg.candidates <= 0:
            return {}
        to_catalog = self._bound(catalog_ids)[1]
        out = {}
        for name, (at, sc) in self._ranked(side, self.cfg.candidates + extra).items():
            where = to_catalog[at]
            out[name] = (where[where >= 0], sc[where >= 0])
        return out

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        nb = self.neighbours
        np.savez_compressed(
            path / MODEL_FILE,
            item_factors=self.item_factors.astype(np.float16),  # scores need no more precision; half the size
            nb_data=nb.data.astype(np.float16),
            nb_indices=nb.indices.astype(np.int32),
            nb_indptr=nb.indptr.astype(np.int64),
        )
        meta = {"config": self.cfg.model_dump(), "ids": self.ids, **self.meta}
        (path / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> CollabModel:
        path = Path(directory)
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
            arrays = np.load(path / MODEL_FILE)
        except FileNotFoundError as e:
            raise ClipfeedError(f"{path}: no collaborative model here ({e.filename} missing)") from e
        except (ValueError, OSError) as e:
            raise ClipfeedError(f"{path}: unreadable collaborative model ({e})") from e
        ids = [str(c) for c in meta.pop("ids")]
        cfg = CollabConfig.model_validate(meta.pop("config"))
        factors = arrays["item_factors"].astype(np.float32)
        if factors.shape != (len(ids), cfg.factors):
            raise ClipfeedError(f"{path}: factors {factors.shape} do not match {len(ids)} clips x {cfg.factors}")
        nb = sparse.csr_matrix(
            (arrays["nb_data"].astype(np.float32), arrays["nb_indices"], arrays["nb_indptr"]),
            shape=(len(ids), len(ids)),
        )
        return cls(ids, factors, nb, cfg, meta)

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / META_FILE).exists()


COLLAB_FOLDS = 5


def fold_of(user_id: str, folds: int = COLLAB_FOLDS) -> int:
    """A user's fold (stable across runs and machines): out-of-fold collaborative features for
    training, and the held-out users of the history-length curve."""
    return zlib.crc32(f"fold:{user_id}".encode()) % folds


def cf_ranking(model: CollabModel | None, liked: Mapping[str, float], exclude: set[str], n: int) -> list[str]:
    """The collaborative-only baseline (``cf``): the factor model's top clips, then co-engaged clips;
    nothing for a user with no liked clips (the caller tops up with popular clips)."""
    if model is None:
        return []
    cands = model.candidates(liked, n + len(exclude))
    out = [c for c, _ in cands["factor"] if c not in exclude][:n]
    have = set(out)
    out += [c for c, _ in cands["coengage"] if c not in exclude and c not in have][: n - len(out)]
    return out
