"""Approximate nearest-neighbour search over clip vectors: an HNSW index (hnswlib) built offline,
saved beside its config, loaded by the API, and updated for new clips without a full rebuild.

``exact_knn`` is the reference it is measured against (blocked numpy, so a million rows fit in a
few tens of MB of scratch), and ``recall_at_k`` the measure.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> vecs = rng.standard_normal((500, 16)).astype(np.float32)
>>> vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
>>> index = ClipVectorIndex.build([f"c{i}" for i in range(500)], vecs, AnnConfig(num_threads=1))
>>> ids, scores = index.knn(vecs[:2], k=3)
>>> ids[0][0], ids[1][0], bool(abs(scores[0, 0] - 1.0) < 1e-4)
('c0', 'c1', True)
>>> exact, _ = exact_knn(vecs, vecs[:2], 3)
>>> recall_at_k(ids, [[f"c{i}" for i in row] for row in exact])
1.0
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from clipfeed.errors import ClipfeedError

META_FILE = "ann.json"
INDEX_FILE = "ann.bin"
FORMAT = 1
# hnswlib's saveIndex header starts with six size_t: offsetLevel0, max_elements, cur_element_count,
# size_data_per_element, label_offset, offsetData; label_offset - offsetData is the vector's bytes.
_HEADER = struct.Struct("<6Q")


class AnnConfig(BaseModel):
    """HNSW parameters, saved in ``ann.json`` beside the index (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["ip", "cosine", "l2"] = Field(
        default="ip", description="ip for unit vectors (the catalog's), cosine normalises, l2 is squared distance."
    )
    M: int = Field(default=16, ge=2, le=256, description="Graph links per node: recall and memory grow with it.")
    ef_construction: int = Field(default=200, ge=1, description="Candidate list while building: quality vs time.")
    ef_search: int = Field(default=250, ge=1, description="Candidate list per query (at least k is always used).")
    num_threads: int = Field(default=2, ge=1, description="Threads for building and batched queries.")
    growth: float = Field(default=1.5, gt=1.0, description="Capacity multiplier when an update overflows it.")
    seed: int = Field(default=100, ge=0, description="Random seed of the level assignment.")


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where it is not available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ClipfeedError(f"vectors must be a 2-d array (rows x dim), got shape {vectors.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ClipfeedError(f"dimension mismatch: the index holds {dim}-d vectors, got {x.shape[1]}-d")
    return x


class ClipVectorIndex:
    """Clip ids -> vectors in an HNSW graph. ``knn`` returns similarities (higher is closer): the inner
    product for ``ip``, the cosine for ``cosine``, minus the squared distance for ``l2``.

    Not safe to ``add``/``remove`` while another thread queries (hnswlib's resize is not); queries
    from many threads at once are fine.
    """

    def __init__(self, cfg: AnnConfig, dim: int, index: hnswlib.Index, ids: list[str], deleted: set[str]) -> None:
        self.cfg = cfg
        self.dim = dim
        self._index = index
        self._ids = ids  # label -> clip id (labels are positions; removed clips keep theirs)
        self._label = {cid: i for i, cid in enumerate(ids)}
        self._deleted = deleted
        self._id_array: np.ndarray | None = None
        index.set_ef(cfg.ef_search)
        index.set_num_threads(cfg.num_threads)

    # -- building and updating -------------------------------------------------------------------

    @classmethod
    def build(
        cls, ids: Sequence[str], vectors: np.ndarray, cfg: AnnConfig | None = None, progress: bool = False
    ) -> ClipVectorIndex:
        """A new index over ``ids`` (one row of ``vectors`` each), capacity exactly ``len(ids)``."""
        cfg = cfg or AnnConfig()
        x = _as_matrix(vectors)
        if len(ids) != len(x):
            raise ClipfeedError(f"{len(ids)} ids for {len(x)} vectors")
        if len(set(ids)) != len(ids):
            raise ClipfeedError("duplicate clip ids: each clip goes into the index once")
        index = hnswlib.Index(space=cfg.space, dim=x.shape[1])
        index.init_index(
            max_elements=max(1, len(x)), M=cfg.M, ef_construction=cfg.ef_construction, random_seed=cfg.seed
        )
        out = cls(cfg, x.shape[1], index, [], set())
        out.add(ids, x, progress=progress)
        return out

    def add(self, ids: Sequence[str], vectors: np.ndarray, progress: bool = False) -> None:
        """Adds new clips (growing the capacity by ``cfg.growth`` when full); an id already present
        gets its vector replaced (and a removed one comes back)."""
        x = _as_matrix(vectors, self.dim)
        if len(ids) != len(x):
            raise ClipfeedError(f"{len(ids)} ids for {len(x)} vectors")
        if len(set(ids)) != len(ids):
            raise ClipfeedError("duplicate clip ids in one add: give each clip once")
        labels = np.empty(len(ids), dtype=np.int64)
        for j, cid in enumerate(ids):
            label = self._label.get(cid)
            if label is None:
                label = len(self._ids)
                self._label[cid] = label
                self._ids.append(cid)
            labels[j] = label
            self._deleted.discard(cid)
        self._id_array = None
        capacity = self._index.get_max_elements()
        if len(self._ids) > capacity:
            self._index.resize_index(max(len(self._ids), int(capacity * self.cfg.growth) + 1))
        step = max(1, min(len(x), 20_000))
        with tqdm(total=len(x), desc="ann: adding clips", unit="clip", disable=not progress) as bar:
            for s in range(0, len(x), step):
                self._index.add_items(x[s : s + step], labels[s : s + step], num_threads=self.cfg.num_threads)
                bar.update(min(step, len(x) - s))

    def remove(self, ids: Sequence[str]) -> None:
        """Marks clips deleted (they stop appearing in results; their slot stays until a rebuild)."""
        unknown = [cid for cid in ids if cid not in self._label]
        if unknown:
            raise ClipfeedError(f"not in the index: {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""))
        for cid in dict.fromkeys(ids):
            if cid not in self._deleted:
                self._index.mark_deleted(self._label[cid])
                self._deleted.add(cid)

    def sync(self, ids: Sequence[str], vectors: np.ndarray, progress: bool = False) -> dict[str, int]:
        """Makes the index hold exactly ``ids`` with these vectors, without a rebuild: new clips are
        added, changed vectors replaced, clips no longer listed removed. Returns the counts."""
        x = _as_matrix(vectors, self.dim)
        if len(ids) != len(x):
            raise ClipfeedError(f"{len(ids)} ids for {len(x)} vectors")
        wanted = set(ids)
        gone = [cid for cid in self.ids if cid not in wanted]
        kept = [j for j, cid in enumerate(ids) if cid in self]
        stored = self.vectors_of([ids[j] for j in kept])
        if self.cfg.space == "cosine":  # hnswlib keeps cosine vectors normalised
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        changed = [
            j for j, same in zip(kept, np.isclose(stored, x[kept], atol=1e-6).all(axis=1), strict=True) if not same
        ]
        new = [j for j, cid in enumerate(ids) if cid not in self]
        if gone:
            self.remove(gone)
        rows = changed + new
        if rows:
            self.add([ids[j] for j in rows], x[rows], progress=progress)
        return {
            "added": len(new),
            "replaced": len(changed),
            "removed": len(gone),
            "unchanged": len(kept) - len(changed),
        }

    # -- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids) - len(self._deleted)

    def __contains__(self, cid: object) -> bool:
        return cid in self._label and cid not in self._deleted

    @property
    def ids(self) -> list[str]:
        """The clips the index holds now (removed ones left out), in label order."""
        return [cid for cid in self._ids if cid not in self._deleted] if self._deleted else list(self._ids)

    @property
    def capacity(self) -> int:
        return int(self._index.get_max_elements())

    def set_ef_search(self, ef: int) -> None:
        """The candidate list per query from now on (recall against latency; saved with the index)."""
        self.cfg = self.cfg.model_copy(update={"ef_search": AnnConfig(ef_search=ef).ef_search})
        self._index.set_ef(self.cfg.ef_search)

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``ids`` (unit-normalised ones for ``cosine``), one row each."""
        missing = [cid for cid in ids if cid not in self]
        if missing:
            raise ClipfeedError(f"not in the index: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: np.ndarray = np.asarray(self._index.get_items([self._label[c] for c in ids]), dtype=np.float32)
        return out

    def memory_bytes(self) -> int:
        """Size of the index's graph and vectors (what ``save`` writes; the in-memory size is close)."""
        return int(self._index.index_file_size())

    def knn(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` nearest clips of each query row (fewer when the index holds fewer) and their
        similarities, best first. One query runs on this thread; batches use ``cfg.num_threads``."""
        q = _as_matrix(queries, self.dim)
        k = min(k, len(self))
        if k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))], np.zeros((len(q), 0), dtype=np.float32)
        threads = 1 if len(q) < 4 * self.cfg.num_threads else self.cfg.num_threads
        try:
            labels, dist = self._index.knn_query(q, k=k, num_threads=threads)
        except RuntimeError:
            # With many removed clips the search can come back short of k: widen the candidate list once.
            self._index.set_ef(max(2 * k, 2 * self.cfg.ef_search))
            try:
                labels, dist = self._index.knn_query(q, k=k, num_threads=threads)
            except RuntimeError as e:
                raise ClipfeedError(f"ANN search found fewer than k={k} clips: {e}") from e
            finally:
                self._index.set_ef(self.cfg.ef_search)
        if self._id_array is None:
            self._id_array = np.asarray(self._ids, dtype=object)
        found = self._id_array[labels.astype(np.int64)].tolist()
        scores = -dist if self.cfg.space == "l2" else 1.0 - dist
        return found, scores.astype(np.float32, copy=False)

    # -- files -----------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Writes ``ann.bin`` (the graph) and ``ann.json`` (config, dim, count, ids)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._index.save_index(str(path / INDEX_FILE))
        meta = {
            "format": FORMAT,
            "config": self.cfg.model_dump(),
            "dim": self.dim,
            "count": len(self),
            "ids": self._ids,
            "deleted": sorted(self._deleted),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, dim: int | None = None) -> ClipVectorIndex:
        """The index saved in ``directory``; ``dim``, when given, must match its vectors."""
        path = Path(directory)
        meta_path, index_path = path / META_FILE, path / INDEX_FILE
        if not meta_path.is_file() or not index_path.is_file():
            raise ClipfeedError(f"{path}: no ANN index here (build one with `clipfeed ranker index`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            cfg = AnnConfig.model_validate(meta["config"])
            ids, deleted, saved_dim = list(meta["ids"]), set(meta["deleted"]), int(meta["dim"])
            count = int(meta["count"])
        except (ValueError, KeyError, TypeError, ValidationError) as e:
            raise ClipfeedError(f"{meta_path}: corrupt ANN metadata: {e}") from e
        if meta.get("format") != FORMAT:
            raise ClipfeedError(f"{meta_path}: ANN format {meta.get('format')!r}, expected {FORMAT}: rebuild the index")
        if count != len(ids) - len(deleted) or not deleted <= set(ids):
            raise ClipfeedError(f"{meta_path}: corrupt ANN metadata: count {count} does not match its ids")
        if dim is not None and dim != saved_dim:
            raise ClipfeedError(f"{path}: dimension mismatch: the index holds {saved_dim}-d vectors, expected {dim}-d")
        with index_path.open("rb") as f:
            head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise ClipfeedError(f"{index_path}: corrupt ANN index (truncated header)")
        _, capacity, stored, _, label_offset, data_offset = _HEADER.unpack(head)
        if label_offset - data_offset != 4 * saved_dim:
            raise ClipfeedError(
                f"{index_path}: dimension mismatch: the file holds {(label_offset - data_offset) / 4:g}-d vectors, "
                f"{META_FILE} says {saved_dim}-d"
            )
        if stored != len(ids):
            raise ClipfeedError(f"{index_path}: holds {stored} vectors but {META_FILE} lists {len(ids)} ids")
        index = hnswlib.Index(space=cfg.space, dim=saved_dim)
        try:
            index.load_index(str(index_path), max_elements=int(capacity))
        except RuntimeError as e:
            raise ClipfeedError(f"{index_path}: corrupt ANN index: {e}") from e
        return cls(cfg, saved_dim, index, ids, deleted)


def exact_knn(
    base: np.ndarray, queries: np.ndarray, k: int, space: str = "ip", block_bytes: int = 64 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``base`` for each query, by the same similarity as the index
    (inner product, cosine, or minus squared L2): (row indices, scores), best first. Scans ``base``
    in blocks so the scratch stays near ``block_bytes`` whatever its size."""
    b = np.asarray(base, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if b.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ClipfeedError(f"dimension mismatch: base {b.shape}, queries {q.shape}")
    if space not in ("ip", "cosine", "l2"):
        raise ClipfeedError(f"space {space!r}: expected ip, cosine or l2")
    if space == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    k = min(k, len(b))
    nq = len(q)
    best_idx = np.zeros((nq, 0), dtype=np.int64)
    best_val = np.zeros((nq, 0), dtype=np.float32)
    if k <= 0:
        return best_idx, best_val
    rows = max(k, block_bytes // (4 * max(1, nq)))
    for s in range(0, len(b), rows):
        chunk = b[s : s + rows]
        if space == "cosine":
            chunk = chunk / np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
        sims = q @ chunk.T
        if space == "l2":  # -(|q|^2 - 2 q.b + |b|^2)
            sims = 2 * sims - np.einsum("ij,ij->i", chunk, chunk)[None, :] - np.einsum("ij,ij->i", q, q)[:, None]
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(sims, part, axis=1)
        all_idx = np.concatenate([best_idx, part + s], axis=1)
        all_val = np.concatenate([best_val, vals], axis=1)
        if all_idx.shape[1] > k:
            keep = np.argpartition(-all_val, k - 1, axis=1)[:, :k]
            all_idx = np.take_along_axis(all_idx, keep, axis=1)
            all_val = np.take_along_axis(all_val, keep, axis=1)
        best_idx, best_val = all_idx, all_val
    order = np.argsort(-best_val, axis=1, kind="stable")
    return np.take_along_axis(best_idx, order, axis=1), np.take_along_axis(best_val, order, axis=1)


def recall_at_k(approx: Sequence[Sequence[object]], exact: Sequence[Sequence[object]]) -> float:
    """Mean share of each query's exact neighbours that the approximate search found (k = the
    exact list's length)."""
    if len(approx) != len(exact):
        raise ClipfeedError(f"{len(approx)} approximate result lists for {len(exact)} exact ones")
    shares = [len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True) if len(e)]
    return float(np.mean(shares)) if shares else 1.0
