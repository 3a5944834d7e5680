"""ANN index (hnswlib): recall against exact search, save/load/update, clear errors, and the
embedding candidates it serves against the exact scan."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cli.main import main
from cli.wiring import Stack
from clipfeed.errors import ClipfeedError
from recommender.ann import AnnConfig, ClipVectorIndex, exact_knn, recall_at_k
from recommender.candidates import TagVectorCache, generate
from recommender.signals import TagAffinity, UserContext

CFG = AnnConfig(M=12, ef_construction=100, ef_search=64, num_threads=1)


def clustered(n: int, dim: int = 16, topics: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors around topic centres (what clip text vectors look like), not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim))
    x = centres[rng.integers(0, topics, n)] + 0.6 * rng.standard_normal((n, dim))
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def ids_of(n: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(2100)
    return x[:2000], x[2000:]  # the index, and held-out queries near it


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray]) -> ClipVectorIndex:
    return ClipVectorIndex.build(ids_of(2000), data[0], CFG)


def test_recall_against_exact_search(built: ClipVectorIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    exact, exact_scores = exact_knn(base, queries, 50)
    found, scores = built.knn(queries, 50)
    assert recall_at_k(found, [[f"c{j}" for j in row] for row in exact]) >= 0.95
    # similarities, not hnswlib's 1 - ip distance, best first
    assert scores.shape == (100, 50) and np.all(np.diff(scores, axis=1) <= 1e-6)
    assert np.allclose(scores[:, 0], exact_scores[:, 0], atol=1e-5)
    one, _ = built.knn(queries[0], 5)  # a single vector is one query
    assert len(one) == 1 and len(one[0]) == 5


@pytest.mark.parametrize("space", ["ip", "cosine", "l2"])
def test_exact_knn_blocked_matches_a_full_sort(space: str) -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((500, 8)).astype(np.float32)
    q = rng.standard_normal((7, 8)).astype(np.float32)
    idx, scores = exact_knn(base, q, 10, space, block_bytes=4 * 7 * 37)  # 37 rows a block
    if space == "cosine":
        b, qq = base / np.linalg.norm(base, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
        full = qq @ b.T
    elif space == "l2":
        full = -((q[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    else:
        full = q @ base.T
    assert np.array_equal(idx, np.argsort(-full, axis=1)[:, :10])
    assert np.allclose(scores, np.take_along_axis(full, idx, axis=1), atol=1e-4)
    index = ClipVectorIndex.build(ids_of(500), base, AnnConfig(space=space, ef_search=200, num_threads=1))
    found, ann_scores = index.knn(q, 10)
    assert recall_at_k(found, [[f"c{j}" for j in row] for row in idx]) >= 0.95
    assert np.allclose(ann_scores[:, 0], scores[:, 0], atol=1e-4)  # the same similarity as exact


def test_recall_at_k() -> None:
    assert recall_at_k([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]]) == 0.75
    with pytest.raises(ClipfeedError):
        recall_at_k([["a"]], [])


def test_save_load_round_trip(built: ClipVectorIndex, data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    built.save(tmp_path / "ann")
    meta = json.loads((tmp_path / "ann" / "ann.json").read_text())
    assert meta["dim"] == 16 and meta["count"] == 2000 and meta["ids"][:2] == ["c0", "c1"]
    assert meta["config"] == CFG.model_dump()
    loaded = ClipVectorIndex.load(tmp_path / "ann", dim=16)
    assert len(loaded) == 2000 and loaded.cfg == CFG and loaded.ids == built.ids
    a_ids, a_scores = built.knn(data[1], 20)
    b_ids, b_scores = loaded.knn(data[1], 20)
    assert a_ids == b_ids and np.array_equal(a_scores, b_scores)


def test_add_without_rebuild_grows_past_capacity(data: tuple[np.ndarray, np.ndarray]) -> None:
    base = data[0][:300]
    index = ClipVectorIndex.build(ids_of(300), base, CFG)
    assert index.capacity == 300
    new = clustered(250, seed=5)
    index.add(ids_of(250, "new"), new)  # more than the whole first capacity
    assert len(index) == 550 and index.capacity >= 550
    found, scores = index.knn(new, 3)
    assert [f[0] for f in found] == ids_of(250, "new")  # each new clip is its own nearest neighbour
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    old, _ = index.knn(base[:20], 1)
    assert [f[0] for f in old] == ids_of(20)  # the old ones are still found


def test_replace_and_remove(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    base = data[0][:400]
    index = ClipVectorIndex.build(ids_of(400), base, CFG)
    # re-adding an existing id replaces its vector: c0 now sits where c1 is
    index.add(["c0"], base[1:2])
    assert len(index) == 400 and np.allclose(index.vectors_of(["c0"]), base[1:2])
    assert set(index.knn(base[1], 2)[0][0]) == {"c0", "c1"}
    index.remove(["c5", "c6", "c5"])
    assert len(index) == 398 and "c5" not in index and "c5" not in index.ids
    found, _ = index.knn(base[5:7], 398)  # every live clip; the removed ones never
    assert all(len(f) == 398 and "c5" not in f and "c6" not in f for f in found)
    with pytest.raises(ClipfeedError, match="not in the index: nope"):
        index.remove(["nope"])
    index.save(tmp_path / "a")
    loaded = ClipVectorIndex.load(tmp_path / "a")
    assert len(loaded) == 398 and "c5" not in loaded.knn(base[5], 10)[0][0]
    loaded.add(["c5"], base[5:6])  # a removed clip comes back
    assert len(loaded) == 399 and loaded.knn(base[5], 1)[0][0] == ["c5"]


def test_sync_adds_replaces_and_removes_without_a_rebuild(data: tuple[np.ndarray, np.ndarray]) -> None:
    base = data[0][:300]
    index = ClipVectorIndex.build(ids_of(300), base, CFG)
    # the next catalog: c0..c9 gone, c10 re-encoded (its vector changed), 50 new clips
    ids = ids_of(300)[10:] + ids_of(50, "new")
    vecs = np.concatenate([base[10:], clustered(50, seed=9)])
    vecs[0] = base[0]
    assert index.sync(ids, vecs) == {"added": 50, "replaced": 1, "removed": 10, "unchanged": 289}
    assert len(index) == 340 and set(index.ids) == set(ids)
    assert np.allclose(index.vectors_of(ids), vecs)
    assert index.sync(ids, vecs) == {"added": 0, "replaced": 0, "removed": 0, "unchanged": 340}


def test_clear_errors(built: ClipVectorIndex, tmp_path: Path) -> None:
    with pytest.raises(ClipfeedError, match="no ANN index here"):
        ClipVectorIndex.load(tmp_path / "missing")
    with pytest.raises(ClipfeedError, match="dimension mismatch"):
        built.knn(np.zeros((1, 8), dtype=np.float32), 5)
    with pytest.raises(ClipfeedError, match="dimension mismatch"):
        built.add(["x"], np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(ClipfeedError, match="duplicate"):
        ClipVectorIndex.build(["a", "a"], np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ClipfeedError, match="3 ids for 2 vectors"):
        ClipVectorIndex.build(["a", "b", "c"], np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AnnConfig.model_validate({"m": 16})  # unknown keys are an error (the field is M)
    built.save(tmp_path / "ok")
    with pytest.raises(ClipfeedError, match="dimension mismatch: the index holds 16-d vectors, expected 32-d"):
        ClipVectorIndex.load(tmp_path / "ok", dim=32)
    meta_path = tmp_path / "ok" / "ann.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "dim": 8}))  # metadata that disagrees with the file
    with pytest.raises(ClipfeedError, match=r"file holds 16-d vectors, ann\.json says 8-d"):
        ClipVectorIndex.load(tmp_path / "ok")
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "bogus": 1}}))
    with pytest.raises(ClipfeedError, match="corrupt ANN metadata"):
        ClipVectorIndex.load(tmp_path / "ok")
    meta_path.write_text("{not json")
    with pytest.raises(ClipfeedError, match="corrupt ANN metadata"):
        ClipVectorIndex.load(tmp_path / "ok")
    meta_path.write_text(json.dumps(meta))
    bin_path = tmp_path / "ok" / "ann.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:1000])  # truncated
    with pytest.raises(ClipfeedError, match="corrupt ANN index"):
        ClipVectorIndex.load(tmp_path / "ok")
    bin_path.write_bytes(b"x" * 10)
    with pytest.raises(ClipfeedError, match="corrupt ANN index"):
        ClipVectorIndex.load(tmp_path / "ok")


def contexts(stack: Stack, n: int = 40) -> list[UserContext]:
    """Users with a few search tags each (and some seen clips, which the candidates exclude)."""
    rng = np.random.default_rng(0)
    queries = sorted({q.query for log in stack.world.users.values() for q in log.queries})
    out = []
    for u in range(n):
        tags = rng.choice(len(queries), size=int(rng.integers(1, 6)), replace=False)
        seen = [stack.catalog.ids[int(i)] for i in rng.choice(len(stack.catalog.ids), size=20 * (u % 3))]
        ctx = UserContext(
            tags={queries[int(t)]: TagAffinity(1.0, "", queries[int(t)], "search") for t in tags}, seen=seen
        )
        out.append(ctx)
    return out


def test_candidates_from_ann_match_the_exact_scan(stack: Stack) -> None:
    exact_catalog = stack.catalog
    assert exact_catalog.vectors is not None
    catalog = copy.copy(exact_catalog)  # the session's catalog stays exact
    catalog.attach_ann(ClipVectorIndex.build(catalog.ids, exact_catalog.vectors, AnnConfig(ef_search=10)))
    cfg = stack.cfg.candidates
    overlaps = []
    for ctx in contexts(stack):
        a = generate(ctx, exact_catalog, cfg, TagVectorCache(exact_catalog), use_topics=False)
        b = generate(ctx, catalog, cfg, TagVectorCache(catalog), use_topics=False)
        emb_a = {i for i, s in a.sources.items() if "embedding" in s}
        emb_b = {i for i, s in b.sources.items() if "embedding" in s}
        assert len(emb_a) == len(emb_b) == cfg.embedding_top
        overlaps.append(len(emb_a & emb_b) / len(emb_a))
        # the clips the index found instead are (nearly) as similar as the exact branch's weakest
        sims = (TagVectorCache(exact_catalog).get(list(ctx.tags)) @ exact_catalog.vectors.T).max(axis=0)
        weakest = min(float(sims[i]) for i in emb_a)
        assert np.mean([sims[i] >= weakest - 0.02 for i in emb_b - emb_a] or [True]) >= 0.9
        assert not {stack.catalog.ids[i] for i in emb_b} & set(ctx.seen)
    assert np.mean(overlaps) >= 0.97


def test_attach_checks_the_catalog(stack: Stack) -> None:
    catalog = copy.copy(stack.catalog)
    vecs = stack.catalog.vectors
    assert vecs is not None
    with pytest.raises(ClipfeedError, match="dimension mismatch"):
        catalog.attach_ann(ClipVectorIndex.build(catalog.ids, vecs[:, :8].copy(), CFG))
    with pytest.raises(ClipfeedError, match="1 catalog clips missing"):
        catalog.attach_ann(ClipVectorIndex.build(catalog.ids[1:], vecs[1:], CFG))
    with pytest.raises(ClipfeedError, match="vectors differ"):
        catalog.attach_ann(ClipVectorIndex.build(catalog.ids, vecs[::-1].copy(), CFG))
    assert catalog.ann is None


def test_cli_builds_an_index_the_catalog_accepts(
    stack: Stack, small_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ann"
    capsys.readouterr()
    argv = ["ranker", "index", "--world", str(small_world), "--out", str(out), "--m", "8", "--ef-construction", "50"]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == len(stack.catalog.ids) and summary["build_seconds"] >= 0
    assert summary["index_bytes"] > 0 and summary["config"]["M"] == 8
    index = ClipVectorIndex.load(out)
    copy.copy(stack.catalog).attach_ann(index)  # the API's check passes
    assert main(argv) == 0
    assert "CLIPFEED_ANN_DIR" in capsys.readouterr().out
    assert main([*argv, "--update", "--json"]) == 0  # the same catalog: nothing to change
    updated = json.loads(capsys.readouterr().out)["updated"]
    assert updated == {"added": 0, "replaced": 0, "removed": 0, "unchanged": len(stack.catalog.ids)}
    assert main(["ranker", "index", "--world", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_api_services_load_the_index_when_set(small_world: Path, tmp_path: Path) -> None:
    from cli.wiring import build_services
    from clipfeed.settings import Settings

    assert build_services(Settings(), small_world).catalog.ann is None  # unset: exact search
    assert main(["ranker", "index", "--world", str(small_world), "--out", str(tmp_path / "ann"), "--json"]) == 0
    services = build_services(Settings(ann_dir=tmp_path / "ann"), small_world)
    assert services.catalog.ann is not None and len(services.catalog.ann) == len(services.catalog.ids)
    with pytest.raises(ClipfeedError, match="no ANN index here"):
        build_services(Settings(ann_dir=tmp_path / "nope"), small_world)
