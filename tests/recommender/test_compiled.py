"""The ranker's trees compiled by lleaves: the same scores as LightGBM, cached by content, and
LightGBM whenever the compiled forest is missing, broken or wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from cli.wiring import Stack
from recommender import FeedBuilder, Ranker
from recommender import compiled as compiled_mod
from recommender.compiled import compile_booster, probe_rows


def _booster(seed: int = 0) -> lgb.Booster:
    """A small LambdaRank booster in code, with NaNs in its training data (missing-value branches)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 6))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.clip(np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1] * x[:, 2]) + 1.5, 0, 3).astype(int)
    data = lgb.Dataset(x, y, group=[20] * 30)
    params = {"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1, "seed": seed}
    return lgb.train(params, data, num_boost_round=15)


def test_compiled_forest_scores_equal_lightgbm_on_new_rows(tmp_path: Path) -> None:
    booster = _booster()
    forest = compile_booster(booster, tmp_path)
    assert forest is not None
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) * 2
    x[rng.random(x.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(forest.predict(x), booster.predict(x))
    # float32 and non-contiguous input, as the feature builder makes them
    x32 = np.asfortranarray(x.astype(np.float32))
    np.testing.assert_array_equal(forest.predict(x32), booster.predict(x32.astype(np.float64)))


def test_compiled_forests_are_cached_by_model_text(tmp_path: Path) -> None:
    a, b = _booster(0), _booster(1)
    assert compile_booster(a, tmp_path) is not None
    files = sorted(tmp_path.glob("forest-*.bin"))
    assert len(files) == 1 and files[0].with_suffix(".sha256").is_file()
    stamp = files[0].stat().st_mtime_ns
    again = compile_booster(a, tmp_path)  # from the cache: not rewritten
    assert again is not None and files[0].stat().st_mtime_ns == stamp
    assert compile_booster(b, tmp_path) is not None  # another model: its own file
    assert len(list(tmp_path.glob("forest-*.bin"))) == 2
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no scratch directories left


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no digest"])
def test_a_damaged_cache_file_is_never_loaded_and_is_replaced(tmp_path: Path, damage: str) -> None:
    # LLVM aborts the process on a damaged object file, so this test passing means it was not loaded
    booster = _booster()
    assert compile_booster(booster, tmp_path) is not None
    (cached,) = tmp_path.glob("forest-*.bin")
    if damage == "garbage":
        cached.write_bytes(b"not an object file")
    elif damage == "truncated":
        cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    else:
        cached.with_suffix(".sha256").unlink()
    forest = compile_booster(booster, tmp_path)
    assert forest is not None
    x = probe_rows(booster, n=50, seed=3)
    np.testing.assert_array_equal(forest.predict(x), booster.predict(x))
    assert compiled_mod._intact(cached)


def test_lightgbm_serves_when_lleaves_is_missing_or_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _booster()
    monkeypatch.setattr(compiled_mod, "compiler_versions", lambda: None)
    assert compile_booster(booster, tmp_path) is None
    monkeypatch.undo()

    real = compiled_mod.CompiledForest.predict
    monkeypatch.setattr(compiled_mod.CompiledForest, "predict", lambda self, x: real(self, x) + 1e-6)
    assert compile_booster(booster, tmp_path) is None
    assert not list(tmp_path.glob("forest-*"))  # a forest that disagrees is not kept


def test_probe_rows_reach_both_sides_of_the_splits() -> None:
    booster = _booster()
    leaves = np.asarray(booster.predict(probe_rows(booster), pred_leaf=True))
    reached = sum(len(np.unique(leaves[:, t])) for t in range(leaves.shape[1]))
    total = sum(t["num_leaves"] for t in booster.dump_model()["tree_info"])
    assert reached / total > 0.9


def test_a_compiled_ranker_builds_the_same_feeds(stack: Stack, tiny_ranker: Ranker, tmp_path: Path) -> None:
    plain = copy.copy(tiny_ranker)
    fast = copy.copy(tiny_ranker).compile(tmp_path)
    assert fast.compiled is not None
    assert (fast.compiled_residual is not None) == (tiny_ranker.residual is not None)
    assert plain.compiled is None
    users = sorted(stack.world.users)[:40]
    from recommender import ContextUpdater, replay

    upd = ContextUpdater(stack.cfg.signals)
    for uid in users:
        ctx = replay(upd, stack.catalog, stack.tagging, stack.world.users[uid])
        a = FeedBuilder(stack.catalog, plain, stack.cfg).build(ctx, 10, user_key=uid)
        b = FeedBuilder(stack.catalog, fast, stack.cfg).build(ctx, 10, user_key=uid)
        assert [(i.clip_id, i.score) for i in a.items] == [(i.clip_id, i.score) for i in b.items]
    assert fast.content_only().compiled is fast.compiled


def test_serving_compiles_the_ranker_unless_told_not_to(small_world: Path, tmp_path: Path) -> None:
    from cli.wiring import build_services
    from clipfeed.settings import Settings

    on = build_services(Settings(cache_dir=tmp_path), small_world).builder.ranker
    assert on is not None and on.compiled is not None and list((tmp_path / "compiled").glob("forest-*.bin"))
    off = build_services(Settings(cache_dir=tmp_path / "off", compile_ranker=False), small_world).builder.ranker
    assert off is not None and off.compiled is None and off.compiled_residual is None
