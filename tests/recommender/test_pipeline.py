from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cli.wiring import Stack
from clipfeed.errors import ClipfeedError
from recommender import FEATURES, SYSTEMS, ContextUpdater, FeedBuilder, Ranker, UserContext, evaluate, replay
from recommender.candidates import TagVectorCache, generate, sibling_guard
from recommender.config import FeedConfig, RecommenderConfig
from recommender.evaluate import Truth
from recommender.features import compute
from recommender.pipeline import SearchTagging


def _cold_users(stack: Stack) -> list[str]:
    truth = Truth.load(stack.world)
    return sorted(u for u, t in truth.users.items() if t["cold"])


def _ctx(stack: Stack, uid: str) -> UserContext:
    return replay(ContextUpdater(stack.cfg.signals), stack.catalog, stack.tagging, stack.world.users[uid])


def test_candidates_exclude_seen_and_respect_bounds(stack: Stack) -> None:
    warm = next(u for u, log in sorted(stack.world.users.items()) if len(log.events) > 30)
    ctx = _ctx(stack, warm)
    assert ctx.seen
    cands = generate(ctx, stack.catalog, stack.cfg.candidates, TagVectorCache(stack.catalog))
    ids = {stack.catalog.ids[i] for i in cands.index}
    assert not ids & set(ctx.seen)
    assert stack.cfg.candidates.min_candidates <= len(cands.index) <= stack.cfg.candidates.max_candidates
    assert all(cands.sources[i] for i in cands.index)


def test_sibling_guard_keeps_soccer_fans_off_baseball(stack: Stack) -> None:
    from clipfeed.protocols import FilteredTag, TopicScore

    ctx = UserContext()
    ContextUpdater().on_search(
        ctx, "손흥민 골", 1.0, [FilteredTag("손흥민 골", 1.0, (TopicScore("533", 0.99),), True, "")]
    )
    guard = sibling_guard(ctx, stack.catalog)
    assert "545" in guard and "533" not in guard
    cands = generate(ctx, stack.catalog, stack.cfg.candidates, TagVectorCache(stack.catalog))
    assert not [i for i in cands.index if stack.catalog.topic[i] == "545"]


def test_feature_schema_is_checked_on_load(tiny_ranker: Ranker, tmp_path: Path) -> None:
    tiny_ranker.save(tmp_path / "m")
    assert Ranker.load(tmp_path / "m").meta["features"] == list(FEATURES)
    meta = json.loads((tmp_path / "m" / "ranker.json").read_text())
    meta["features"] = [*meta["features"][:-1], "renamed_feature"]
    (tmp_path / "m" / "ranker.json").write_text(json.dumps(meta))
    with pytest.raises(ClipfeedError, match=r"feature schema differs.*renamed_feature"):
        Ranker.load(tmp_path / "m")
    with pytest.raises(ClipfeedError, match="no ranker here"):
        Ranker.load(tmp_path / "absent")


def test_prefetch_caches_what_tagging_one_search_at_a_time_gives(stack: Stack) -> None:
    """Prefetch tags and filters the world's searches in batches (one topic-model call per batch):
    each search's cached tags are the ones ``tag`` finds for it alone, decision for decision."""
    logs = [log for _, log in sorted(stack.world.users.items())]
    searches = [(q.query, [d.title for d in q.clicked_docs]) for log in logs for q in log.queries][:150]
    assert any(docs for _, docs in searches) and any(not docs for _, docs in searches)
    batched = SearchTagging(stack.tagging.tagger, stack.tagging.topic_model)
    assert batched.prefetch(searches, batch_size=32) == len({SearchTagging.key(q, d) for q, d in searches})
    alone = SearchTagging(stack.tagging.tagger, stack.tagging.topic_model)
    for query, docs in searches:
        got = batched.lookup(query, docs)
        assert got is not None
        want = alone.tag(query, docs)
        for g, w in zip(got, want, strict=True):
            assert [(t.tag, t.keep, t.reason, [x.id for x in t.topics]) for t in g] == [
                (t.tag, t.keep, t.reason, [x.id for x in t.topics]) for t in w
            ]


def test_warm_tag_vectors_encode_every_known_tag_once_in_batches(stack: Stack) -> None:
    """A training run warms the tag-vector cache with every tag of the world's searches: large
    encoder batches up front, the cache grown to hold them, no encoder call during the sessions."""
    tags = stack.tagging.known_tags()
    assert tags and len(tags) == len(set(tags))
    enc = stack.catalog.encoder
    assert enc is not None
    calls: list[int] = []

    class Counting:
        def encode(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return enc.encode(texts)

    catalog = copy.copy(stack.catalog)
    catalog.encoder = Counting()  # type: ignore[assignment]
    vectors = TagVectorCache(catalog, size=10)
    assert vectors.warm(tags + tags[:5], batch_size=max(2, len(tags) // 3)) == len(tags)
    assert sum(calls) == len(tags) and len(calls) <= 4 and vectors.size >= len(tags)
    calls.clear()
    some = tags[:7]
    np.testing.assert_allclose(vectors.get(some), enc.encode(some), rtol=1e-5, atol=1e-6)
    assert not calls and vectors.warm(tags) == 0  # all cached, nothing encoded again


def test_features_have_schema_width_and_are_finite(stack: Stack) -> None:
    ctx = _ctx(stack, _cold_users(stack)[0])
    x = compute(ctx, stack.catalog, TagVectorCache(stack.catalog), list(range(20)))
    assert x.shape == (20, len(FEATURES)) and np.isfinite(x).all()


def test_tiny_ranker_beats_popularity_on_cold_users(stack: Stack, tiny_ranker: Ranker) -> None:
    assert tiny_ranker.meta["best_iteration"] >= 1 and tiny_ranker.meta["train_rows"] > 1000
    res = evaluate(stack.world, stack.catalog, stack.tagging, tiny_ranker, stack.cfg, progress=False)
    for population in ("cold", "warm"):
        assert set(res[population]) == set(SYSTEMS)
        full, pop = res[population]["full"], res[population]["popularity"]
        assert full["ndcg@10"] > 2 * pop["ndcg@10"], res[population]
        assert full["topic_leak"] <= res[population]["random"]["topic_leak"] + 0.05
        assert set(full) >= {"ndcg@10", "map@10", "recall@50", "coverage", "diversity", "novelty", "topic_leak"}


def test_diversity_caps(stack: Stack, tiny_ranker: Ranker) -> None:
    cfg = RecommenderConfig(
        feed=FeedConfig(topic_cap_share=0.3, creator_cap_share=0.1, creator_gap=0, exploration_share=0.0)
    )
    builder = FeedBuilder(stack.catalog, tiny_ranker, cfg)
    for uid in _cold_users(stack)[:10]:
        feed = builder.build(_ctx(stack, uid), 10, explain=False)
        topics = Counter(it.topics[0] for it in feed.items)
        creators = Counter(stack.catalog.creator[stack.catalog.pos[it.clip_id]] for it in feed.items)
        if len(topics) >= math.ceil(10 / 3):  # caps bind only when enough topics exist
            assert max(topics.values()) <= 3
        if len(creators) >= 10:
            assert max(creators.values()) == 1


def _one_creator_on_top(stack: Stack, n_own: int = 6) -> tuple[list[int], np.ndarray, str]:
    """Candidate rows where one creator's clips hold the best scores, the rest of other creators."""
    cat = stack.catalog
    by_creator: dict[str, list[int]] = {}
    for i, c in enumerate(cat.creator):
        by_creator.setdefault(c, []).append(i)
    star = next(c for c, ix in sorted(by_creator.items()) if len(ix) >= n_own)
    own = by_creator[star][:n_own]
    others = [i for i in range(len(cat.ids)) if cat.creator[i] != star][:40]
    idx = own + others
    scores = np.array([10.0 - k for k in range(n_own)] + [1.0 - k / 100 for k in range(len(others))])
    return idx, scores, star


def test_creator_gap_spreads_a_strong_creator_instead_of_cutting_it(stack: Stack) -> None:
    idx, scores, star = _one_creator_on_top(stack)
    cat = stack.catalog

    def page(creator_cap_share: float, creator_gap: int) -> list[str]:
        feed = FeedConfig(
            topic_cap_share=1.0, exploration_share=0.0, creator_cap_share=creator_cap_share, creator_gap=creator_gap
        )
        cfg = RecommenderConfig(feed=feed)
        rows = FeedBuilder(cat, None, cfg)._diversify(idx, scores, 10)
        assert len(rows) == len(set(rows)) == 10
        return [cat.creator[idx[r]] for r in rows]

    assert page(creator_cap_share=1.0, creator_gap=0)[:6] == [star] * 6  # no rule: by score alone
    spread = page(creator_cap_share=1.0, creator_gap=1)
    assert [k for k, c in enumerate(spread) if c == star] == [0, 2, 4, 6, 8]  # every other slot
    gap2 = page(creator_cap_share=1.0, creator_gap=2)
    assert [k for k, c in enumerate(gap2) if c == star] == [0, 3, 6, 9]
    capped = page(creator_cap_share=0.2, creator_gap=1)  # 2 of a page of 10
    assert [k for k, c in enumerate(capped) if c == star] == [0, 2]


def test_diversity_fills_the_page_when_rules_cannot_hold(stack: Stack) -> None:
    idx, scores, _ = _one_creator_on_top(stack, n_own=6)
    own = idx[:6]
    cfg = RecommenderConfig(feed=FeedConfig(creator_cap_share=0.2, creator_gap=1, exploration_share=0.0))
    rows = FeedBuilder(stack.catalog, None, cfg)._diversify(own, scores[:6], 5)
    assert sorted(rows) == [0, 1, 2, 3, 4]  # one creator only: a full page, best first after the rule's picks
    assert rows[0] == 0


def test_models_saved_with_the_old_fixed_creator_cap_still_load() -> None:
    cfg = RecommenderConfig.model_validate({"feed": {"topic_cap_share": 0.7, "creator_cap": 2}})
    assert cfg.feed.creator_cap_share == FeedConfig().creator_cap_share
    with pytest.raises(ValueError, match="creator_cap_typo"):
        RecommenderConfig.model_validate({"feed": {"creator_cap_typo": 2}})


def test_exploration_share_and_no_sibling_exploration(stack: Stack, tiny_ranker: Ranker) -> None:
    cfg = RecommenderConfig(feed=FeedConfig(exploration_share=0.2))
    builder = FeedBuilder(stack.catalog, tiny_ranker, cfg)
    uid = _cold_users(stack)[1]
    ctx = _ctx(stack, uid)
    feed = builder.build(ctx, 10, user_key=uid)
    explored = [it for it in feed.items if "exploration" in it.explanation["sources"]]
    assert len(explored) == 2
    tax = stack.catalog.taxonomy
    mine = {tax.tier1_of(t) for t in ctx.topics}
    assert all(tax.tier1_of(it.topics[0]) not in mine for it in explored)


def test_explanations_cite_searches_and_features(stack: Stack, tiny_ranker: Ranker) -> None:
    builder = FeedBuilder(stack.catalog, tiny_ranker, stack.cfg)
    uid = _cold_users(stack)[0]
    ctx = _ctx(stack, uid)
    feed = builder.build(ctx, 10, user_key=uid)
    queries = {q.query for q in stack.world.users[uid].queries}
    cited = [it for it in feed.items if it.explanation.get("search")]
    assert cited, [it.explanation for it in feed.items]
    for it in cited:
        assert it.explanation["search"] in queries
        assert it.explanation["reason"].startswith(f"because you searched '{it.explanation['search']}'")
        assert len(it.explanation["top_features"]) == 3
        assert {f["feature"] for f in it.explanation["top_features"]} <= set(FEATURES)


def test_no_context_gives_a_fallback_with_a_reason(stack: Stack) -> None:
    feed = FeedBuilder(stack.catalog).build(UserContext(), 5)
    assert feed.fallback and len(feed.items) == 5
    assert all(it.explanation["reason"] == feed.fallback for it in feed.items)


def test_feed_follows_feedback_in_real_time(stack: Stack, tiny_ranker: Ranker) -> None:
    """After each feedback event the next feed moves in its direction (the real-time bar)."""
    builder = FeedBuilder(stack.catalog, tiny_ranker, stack.cfg)
    upd = ContextUpdater(stack.cfg.signals)
    uid = _cold_users(stack)[2]
    ctx = _ctx(stack, uid)
    before = builder.build(ctx, 10, explain=False)
    skipped = before.items[0]
    i = stack.catalog.pos[skipped.clip_id]
    share_before = sum(it.topics[0] == skipped.topics[0] for it in before.items)
    for n in range(3):
        upd.on_clip_event(
            ctx,
            "skip",
            stack.catalog.ids[i] if n == 0 else f"x{n}",
            stack.catalog.topic[i],
            stack.catalog.creator[i],
            ctx.updated_at + 60,
        )
    after = builder.build(ctx, 10, explain=False)
    assert skipped.clip_id not in {it.clip_id for it in after.items}
    assert sum(it.topics[0] == skipped.topics[0] for it in after.items) <= share_before


def test_the_booster_does_not_see_item_popularity_or_clip_coverage(stack: Stack, tiny_ranker: Ranker) -> None:
    from recommender.ranker import BOOSTER_BLIND, ITEM_FEATURES, PRIOR_ONLY, PRIOR_WEIGHTS

    assert tiny_ranker.meta["booster_blind"] == [*ITEM_FEATURES, *PRIOR_ONLY] == list(BOOSTER_BLIND)
    gain = dict(zip(FEATURES, tiny_ranker.booster.feature_importance("gain"), strict=True))
    assert all(gain[f] == 0 for f in BOOSTER_BLIND) and sum(gain.values()) > 0
    ctx = _ctx(stack, _cold_users(stack)[0])
    x = compute(ctx, stack.catalog, TagVectorCache(stack.catalog), list(range(40)))
    for f in BOOSTER_BLIND:
        bumped = x.copy()
        bumped[:, FEATURES.index(f)] += 0.25
        # only the prior's fixed weight (quality's, the coverage's; none for the rest) moves the score
        moved = tiny_ranker.predict(bumped) - tiny_ranker.predict(x)
        assert np.allclose(moved, 0.25 * PRIOR_WEIGHTS.get(f, 0.0), atol=1e-5), f


def test_clip_coverage_is_the_clip_side_idf_share_the_tags_use(stack: Stack) -> None:
    """For a user who searched one entity's travel, a clip about that entity's travel is fully
    covered, a clip about another entity's travel only partly (its entity word is not the user's),
    though the tag-side keyword overlap cannot tell the two apart when both hold the shared word."""
    from clipfeed.protocols import FilteredTag, TopicScore

    catalog = stack.catalog
    tag = "베트남 여행"
    ctx = UserContext()
    ContextUpdater().on_search(ctx, tag, 1.0, [FilteredTag(tag, 1.0, (TopicScore("80", 0.99),), True, "")])
    words = {"베트남", "여행"}
    known = [w for w in words if w in catalog.idf]
    assert known, "the small world's catalog has travel clips"
    idx = list(range(len(catalog.ids)))
    x = compute(ctx, catalog, TagVectorCache(catalog), idx)
    cover = x[:, FEATURES.index("clip_coverage")]
    assert ((cover >= 0) & (cover <= 1 + 1e-6)).all()
    for i in np.flatnonzero(cover > 0)[:50].tolist():
        toks = catalog.clip_tokens[i]
        want = sum(catalog.idf[w] for w in toks & words) / sum(catalog.idf[w] for w in toks)
        assert cover[i] == pytest.approx(want, rel=1e-5)
    none = [i for i in idx if not catalog.clip_tokens[i] & words]
    assert none and not cover[none].any()
    # same keyword overlap (the tag's shared word only), different coverage: the clip's extra words count
    kw = x[:, FEATURES.index("tag_keyword")]
    one_word = [i for i in idx if catalog.clip_tokens[i] & words == {"여행"}]
    assert len(one_word) >= 2  # 21 travel clips in the small world hold 여행 but not 베트남
    assert len({round(float(kw[i]), 5) for i in one_word}) == 1
    assert len({round(float(cover[i]), 5) for i in one_word}) > 1


def test_a_model_scores_with_the_prior_it_was_trained_on(tiny_ranker: Ranker, tmp_path: Path) -> None:
    """The prior's weights are saved with the model: a change to the code's weights does not change
    a trained model's scores; a model saved without them uses the code's (what it was trained on)."""
    from recommender.ranker import PRIOR_WEIGHTS

    assert tiny_ranker.meta["prior_weights"] == PRIOR_WEIGHTS
    tiny_ranker.save(tmp_path / "m")
    back = Ranker.load(tmp_path / "m")
    rng = np.random.default_rng(1)
    x = rng.random((30, len(FEATURES))).astype(np.float32)
    np.testing.assert_allclose(back.predict(x), tiny_ranker.predict(x), rtol=1e-6)
    doubled_meta = back.meta | {"prior_weights": {f: 2 * w for f, w in PRIOR_WEIGHTS.items()}}
    doubled = Ranker(back.booster, doubled_meta, back.collab, back.residual)
    prior = x.astype(np.float64) @ np.array([PRIOR_WEIGHTS.get(f, 0.0) for f in FEATURES])
    np.testing.assert_allclose(doubled.predict(x) - back.predict(x), prior, rtol=1e-5, atol=1e-6)
    legacy_meta = {k: v for k, v in back.meta.items() if k != "prior_weights"}
    legacy = Ranker(back.booster, legacy_meta, back.collab, back.residual)
    np.testing.assert_allclose(legacy.predict(x), back.predict(x), rtol=1e-6)


def test_a_model_saved_before_items_were_hidden_still_sees_them() -> None:
    import lightgbm as lgb

    from recommender.ranker import ITEM_FEATURES, PRIOR_WEIGHTS

    rng = np.random.default_rng(0)
    x = rng.random((400, len(FEATURES)))
    q = FEATURES.index("quality")
    y = (x[:, q] > 0.5).astype(int)  # a booster that ranks by quality alone
    booster = lgb.train(
        {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "seed": 0},
        lgb.Dataset(x, y, group=[20] * 20),
        num_boost_round=5,
    )
    meta = {"features": list(FEATURES), "config": RecommenderConfig().model_dump()}
    old, new = Ranker(booster, meta), Ranker(booster, meta | {"booster_blind": list(ITEM_FEATURES)})
    hi, lo = x[:5].copy(), x[:5].copy()
    hi[:, q], lo[:, q] = 0.9, 0.1
    prior_gap = 0.8 * PRIOR_WEIGHTS["quality"]
    assert (old.predict(hi) - old.predict(lo) > prior_gap + 1e-3).all()  # its trees still split on quality
    assert np.allclose(new.predict(hi) - new.predict(lo), prior_gap)
