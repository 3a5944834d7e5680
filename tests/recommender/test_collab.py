"""Collaborative signals: co-engagement and the ALS factor model as candidates and features for warm
users, nothing for cold ones; out-of-fold training features; save/load; the history-length curve."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cli.wiring import Stack, fit_collab, hybrid_curve
from clipfeed.errors import ClipfeedError
from clipfeed.records import Event, EventType
from recommender import FeedBuilder, Ranker, UserContext
from recommender.candidates import generate
from recommender.collab import CollabConfig, CollabModel, cf_ranking
from recommender.features import COL, compute
from recommender.offline import HISTORY_BUCKETS
from recommender.signals import ContextUpdater

T0 = datetime(2026, 3, 1, tzinfo=UTC)
IDS = [f"c{i}" for i in range(12)]


def _watch(user: str, clip: str, n: int, ratio: float = 0.9) -> Event:
    return Event(
        event_id=f"{user}-{clip}-{n}",
        user_id=user,
        ts=T0 + timedelta(minutes=n),
        type=EventType.WATCH,
        clip_id=clip,
        watch_ratio=ratio,
    )


def _two_taste_events() -> list[Event]:
    """Users 0-19 like c0-c3, users 20-39 like c6-c9; c4, c5, c10, c11 only get short watches."""
    events = []
    for u in range(40):
        liked = IDS[0:4] if u < 20 else IDS[6:10]
        # each user likes three of their group's four clips, so every clip is co-liked with the others
        for n, clip in enumerate(c for k, c in enumerate(liked) if k != u % 4):
            events.append(_watch(f"u{u}", clip, n))
        events.append(_watch(f"u{u}", IDS[4 if u < 20 else 10], 9, ratio=0.1))  # a short watch: not a like
    return events


@pytest.fixture(scope="module")
def model() -> CollabModel:
    # two tastes: a rank-2 structure
    return CollabModel.fit(_two_taste_events(), IDS, CollabConfig(factors=2, iterations=20, candidates=5))


def test_interactions_count_only_positives() -> None:
    m, users = CollabModel.interactions(_two_taste_events(), IDS)
    assert len(users) == 40
    assert m.shape == (40, 12)
    assert m[:, [4, 5, 10, 11]].nnz == 0  # short watches and untouched clips carry no like
    assert m.nnz == 40 * 3


def test_warm_user_gets_co_engaged_and_factor_candidates_from_their_taste(model: CollabModel) -> None:
    cands = model.candidates({"c0": 1.0, "c1": 1.0}, top=3)
    co = [c for c, _ in cands["coengage"]]
    fac = [c for c, _ in cands["factor"]]
    assert co and set(co) <= {"c2", "c3"}  # co-liked with c0/c1 by the same users, the liked ones excluded
    assert fac[:2] and set(fac[:2]) <= {"c2", "c3"}
    assert not {"c0", "c1"} & set(co + fac)
    other = model.candidates({"c7": 1.0}, top=3)
    assert {c for c, _ in other["factor"][:2]} <= {"c6", "c8", "c9"}


def test_cold_user_gets_no_collaborative_candidates_or_features(model: CollabModel) -> None:
    assert model.candidates({}, top=5) == {"coengage": [], "factor": []}
    assert model.user_vector({}) is None
    s = model.scores({}, IDS, list(range(12)))
    assert not s.cf_score.any() and not s.coengage.any()
    assert cf_ranking(model, {}, set(), 5) == []
    assert model.candidates({"not-in-catalog": 1.0}, top=5) == {"coengage": [], "factor": []}


def test_scores_rank_the_users_taste_above_the_other(model: CollabModel) -> None:
    s = model.scores({"c0": 1.0}, IDS, [1, 2, 7, 8])
    assert min(s.cf_score[:2]) > max(s.cf_score[2:])
    assert min(s.coengage[:2]) > 0 and not s.coengage[2:].any()


def test_fold_in_is_implicits_own_user_step() -> None:
    """The serving-time fold-in (numpy, from the item factors alone) scores clips exactly as implicit's
    ``recommend(recalculate_user=True)`` does for the same liked clips."""
    from implicit.als import AlternatingLeastSquares
    from scipy import sparse

    m, _ = CollabModel.interactions(_two_taste_events(), IDS)
    cfg = CollabConfig(factors=4, iterations=20, regularization=0.1, alpha=10.0)
    # use_cg=False: implicit solves the user step exactly (Cholesky), as the fold-in does
    als = AlternatingLeastSquares(
        factors=4, regularization=0.1, alpha=10.0, iterations=20, random_state=0, use_cg=False
    )
    als.fit(m, show_progress=False)
    ours = CollabModel(IDS, np.asarray(als.item_factors), CollabModel._coengagement(m, cfg), cfg)
    liked = {"c0": 1.0, "c1": 0.5, "c7": 1.0}
    row = sparse.csr_matrix(np.array([[liked.get(c, 0.0) for c in IDS]], dtype=np.float32))
    ids, theirs = als.recommend(0, row, N=len(IDS), recalculate_user=True, filter_already_liked_items=False)
    u = ours.user_vector(liked)
    assert u is not None
    assert np.allclose((ours.item_factors @ u)[ids], theirs, atol=1e-3)


def test_save_load_round_trip_and_errors(model: CollabModel, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    back = CollabModel.load(tmp_path / "m")
    assert back.ids == model.ids and back.cfg == model.cfg
    liked = {"c0": 1.0, "c2": 0.5}
    a, b = model.scores(liked, IDS, list(range(12))), back.scores(liked, IDS, list(range(12)))
    assert np.allclose(a.cf_score, b.cf_score, atol=1e-2) and np.allclose(a.coengage, b.coengage, atol=1e-3)
    # factors are stored as float16: the same clips come back (near-ties may swap places)
    for source in ("coengage", "factor"):
        assert {c for c, _ in back.candidates(liked, 3)[source]} == {c for c, _ in model.candidates(liked, 3)[source]}
    with pytest.raises(ClipfeedError, match="no collaborative model"):
        CollabModel.load(tmp_path / "missing")
    (tmp_path / "m" / "collab.npz").write_bytes(b"not a zip")
    with pytest.raises(ClipfeedError, match="unreadable"):
        CollabModel.load(tmp_path / "m")


def test_fit_without_positives_is_a_clear_error() -> None:
    with pytest.raises(ClipfeedError, match="no positive clip events"):
        CollabModel.fit([_watch("u", "c0", 0, ratio=0.1)], IDS)


def test_context_keeps_liked_clips_decayed_and_bounded() -> None:
    upd = ContextUpdater()
    ctx = UserContext()
    upd.on_clip_event(ctx, "watch", "a", "533", "cr", ts=1.0, watch_ratio=0.9)
    upd.on_clip_event(ctx, "watch", "b", "533", "cr", ts=2.0, watch_ratio=0.1)  # short: not liked
    upd.on_clip_event(ctx, "like", "a", "533", "cr", ts=3.0)
    assert set(ctx.liked) == {"a"} and ctx.liked["a"] == pytest.approx(1.9, abs=1e-3)
    upd.on_clip_event(ctx, "skip", "c", "533", "cr", ts=3.0 + 7 * 86400)  # one half-life later
    assert ctx.liked["a"] == pytest.approx(0.95, abs=1e-3)
    assert UserContext.from_dict(ctx.to_dict()).liked == ctx.liked
    old = ctx.to_dict()
    del old["liked"]  # a context stored before the field existed
    assert UserContext.from_dict(old).liked == {}


def test_world_warm_user_gets_collaborative_candidates_and_features(stack: Stack, tiny_ranker: Ranker) -> None:
    collab = tiny_ranker.collab
    assert collab is not None  # train_ranker fits one by default and the ranker carries it
    builder = FeedBuilder(stack.catalog, tiny_ranker, stack.cfg)
    liked_users = [
        (u, log)
        for u, log in sorted(stack.world.users.items())
        if any(e.type is EventType.WATCH and (e.watch_ratio or 0) >= 0.5 for e in log.events)
    ]
    from recommender import replay

    upd = ContextUpdater(stack.cfg.signals)
    ctx = replay(upd, stack.catalog, stack.tagging, liked_users[0][1])
    assert ctx.liked
    cands = generate(ctx, stack.catalog, stack.cfg.candidates, builder.vectors, collab=collab)
    sources = {s for ss in cands.sources.values() for s in ss}
    assert {"coengage", "factor"} & sources
    x = compute(ctx, stack.catalog, builder.vectors, cands.index, None, collab)
    assert x[:, COL["cf_score"]].any() and x[:, COL["liked_sim"]].any()
    # a cold user (searches only): no collaborative candidate, all collaborative features 0
    cold = replace(ctx, liked={})
    cold_cands = generate(cold, stack.catalog, stack.cfg.candidates, builder.vectors, collab=collab)
    assert not {"coengage", "factor"} & {s for ss in cold_cands.sources.values() for s in ss}
    xc = compute(cold, stack.catalog, builder.vectors, cold_cands.index, None, collab)
    assert not xc[:, [COL["cf_score"], COL["coengage"], COL["liked_sim"]]].any()
    # the content-only builder ignores the ranker's collaborative model
    assert FeedBuilder(stack.catalog, tiny_ranker, stack.cfg, use_collab=False).collab is None


def test_hybrid_ranker_saves_and_loads_its_collaborative_model(tiny_ranker: Ranker, tmp_path: Path) -> None:
    tiny_ranker.save(tmp_path)
    back = Ranker.load(tmp_path)
    assert back.meta["collab"] is True and back.collab is not None
    assert back.collab.ids == tiny_ranker.collab.ids  # type: ignore[union-attr]
    (tmp_path / "collab.json").unlink()
    with pytest.raises(ClipfeedError, match="no collaborative model"):
        Ranker.load(tmp_path)


def test_fit_collab_excludes_users(stack: Stack) -> None:
    everyone = fit_collab(stack)
    some = sorted(stack.world.users)[: len(stack.world.users) // 2]
    without = fit_collab(stack, exclude=some)
    assert int(without.meta["users"]) < int(everyone.meta["users"])  # type: ignore[call-overload]
    # rows of the stack's cached matrix fit the model the other users' events alone would fit
    skip = set(some)
    events = [e for e in stack.world.events if e.ts.timestamp() < stack.split and e.user_id not in skip]
    direct = CollabModel.fit(events, stack.catalog.ids, None, stack.cfg.signals.meaningful_watch_ratio)
    assert direct.meta == without.meta
    np.testing.assert_array_equal(direct.item_factors, without.item_factors)
    assert (direct.neighbours != without.neighbours).nnz == 0


def test_scores_alone_match_the_scores_of_a_served_side(model: CollabModel) -> None:
    """A training session asks for scores only (the candidates' rows are computed, nothing is
    cached); a served feed asks for candidates first and its scores come from the cached side:
    the same values either way."""
    liked = {"c0": 1.0, "c2": 0.5}
    idx = [1, 3, 5, 7, 11]
    fresh = CollabModel(model.ids, model.item_factors, model.neighbours, model.cfg, model.meta)
    alone = fresh.scores(liked, IDS, idx)
    assert not fresh._sides  # nothing cached for a side nobody asks for again
    fresh.candidates(liked, top=3)
    served = fresh.scores(liked, IDS, idx)
    np.testing.assert_allclose(alone.cf_score, served.cf_score, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alone.coengage, served.coengage, rtol=1e-6)
    assert alone.cf_score[0] > alone.cf_score[3] and alone.coengage[0] > 0  # c1 is their taste, c7 is not


@pytest.mark.slow
def test_history_curve_has_every_bucket_and_system(stack: Stack, tiny_ranker: Ranker) -> None:
    curve = hybrid_curve(stack, tiny_ranker, None, max_users=30)
    assert list(curve) == list(HISTORY_BUCKETS)
    for systems in curve.values():
        assert set(systems) == {"content", "cf", "full"}
        for v in systems.values():
            assert v["users"] == 0 or 0.0 <= v["mean"] <= 1.0
    assert curve["0"]["full"]["users"] > 0 and curve["1-4"]["full"]["users"] > 0


def test_hybrid_ranks_a_cold_user_exactly_as_its_content_part(stack: Stack, tiny_ranker: Ranker) -> None:
    """The collaborative residual sees only features that are constant across a cold user's
    candidates, so their order is the content ranking's; a warm user's can differ."""
    from recommender import replay

    assert tiny_ranker.residual is not None and tiny_ranker.meta["residual"] is True
    content = tiny_ranker.content_only()
    assert content.collab is None and content.residual is None
    upd = ContextUpdater(stack.cfg.signals)
    cold_log = next(log for _, log in sorted(stack.world.users.items()) if log.queries and not log.events)
    ctx = stack.catalog.view(replay(upd, stack.catalog, stack.tagging, cold_log))
    builder = FeedBuilder(stack.catalog, tiny_ranker, stack.cfg)
    idx = generate(ctx, stack.catalog, stack.cfg.candidates, builder.vectors, collab=tiny_ranker.collab).index
    x = compute(ctx, stack.catalog, builder.vectors, idx, None, tiny_ranker.collab)
    hybrid, alone = tiny_ranker.predict(x), content.predict(x)
    assert np.array_equal(np.argsort(-hybrid, kind="stable"), np.argsort(-alone, kind="stable"))
    assert np.ptp(hybrid - alone) < 1e-9  # one constant shift for the whole user
    # contributions still add up to the score
    contrib = tiny_ranker.contributions(x[:5])
    assert np.allclose(contrib.sum(axis=1), hybrid[:5], atol=1e-6)


def test_a_ranker_of_another_catalog_gets_a_collaborative_model_of_this_one(stack: Stack) -> None:
    """The shipped ranker's model was fitted on the default world's clips; on another world its clip
    ids name other clips, so loading for that world refits it there (and a bare FeedBuilder refuses it)."""
    from cli.wiring import for_catalog, load_ranker

    shipped = load_ranker(None)
    assert shipped is not None and shipped.collab is not None and shipped.residual is not None
    assert shipped.collab.ids != stack.catalog.ids
    assert FeedBuilder(stack.catalog, shipped, stack.cfg).collab is None
    bound = for_catalog(stack, shipped)
    assert bound.collab is not None and bound.collab.ids == stack.catalog.ids
    assert bound.residual is shipped.residual and bound.booster is shipped.booster
    assert load_ranker(None, stack).collab.ids == stack.catalog.ids  # type: ignore[union-attr]
