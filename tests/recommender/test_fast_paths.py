"""The vectorised feed path agrees with the plain definitions it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from cli.wiring import Stack
from clipfeed.text import tokens
from recommender import ContextUpdater, FeedBuilder, Ranker, UserContext, replay
from recommender.candidates import TagVectorCache, generate, sibling_guard
from recommender.topk import top_k


@pytest.mark.parametrize("seed", range(20))
def test_top_k_is_a_stable_full_sort_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    scores = rng.integers(0, 6, n).astype(np.float64)  # many ties
    for k in (0, 1, 5, n // 2, n, n + 3):
        assert top_k(scores, k).tolist() == np.argsort(-scores, kind="stable")[:k].tolist()


def _contexts(stack: Stack, n: int = 40) -> list[tuple[str, UserContext]]:
    users = sorted(stack.world.users)[:n]
    updater = ContextUpdater(stack.cfg.signals)
    return [(u, replay(updater, stack.catalog, stack.tagging, stack.world.users[u])) for u in users]


def test_keyword_ranking_matches_the_dict_scores_and_their_order(stack: Stack) -> None:
    catalog = stack.catalog
    for _, ctx in _contexts(stack):
        words = [w for t in ctx.tags for w in tokens(t)]
        scores = catalog.keyword_scores(words)
        clips, ranked = catalog.keyword_ranked(words)
        # the dict's insertion order breaks ties, as sorted() over its items does
        expected = sorted(scores.items(), key=lambda kv: -kv[1])
        assert clips.tolist() == [i for i, _ in expected]
        assert np.allclose(ranked, [s for _, s in expected], rtol=0, atol=1e-12)


def test_token_match_overlap_is_the_idf_share_per_clip_and_word_set(stack: Stack) -> None:
    catalog = stack.catalog
    sets = [{"여행", "아르헨티나"}, {"골"}, {"no-such-word"}, set()]
    idx = [0, 5, 9, 5, 17, 0]  # repeated clips get the same rows
    got = catalog.token_match(idx, sets)[0]
    for r, i in enumerate(idx):
        for j, ws in enumerate(sets):
            norm = sum(catalog.idf[w] for w in ws if w in catalog.idf)
            hit = sum(catalog.idf[w] for w in ws if w in catalog.idf and w in catalog.clip_tokens[i])
            assert got[r, j] == pytest.approx(hit / norm if norm else 0.0, abs=1e-6)
    # the word-set side computed once per feed and passed in gives the very same matrix
    np.testing.assert_array_equal(catalog.token_match(idx, sets, catalog.overlap_weights(sets))[0], got)
    assert catalog.token_match([], sets, catalog.overlap_weights(sets))[0].shape == (0, 4)


def test_candidates_follow_the_rules_of_each_source(stack: Stack) -> None:
    catalog, cfg = stack.catalog, stack.cfg.candidates
    for _, ctx in _contexts(stack):
        cands = generate(ctx, catalog, cfg, TagVectorCache(catalog))
        idx = cands.index
        assert len(set(idx)) == len(idx)
        guard = sibling_guard(ctx, catalog)
        assert not {catalog.topic[i] for i in idx} & guard
        assert not {catalog.ids[i] for i in idx} & set(ctx.seen)
        for i in idx:
            sources = cands.sources_of(i)
            assert sources
            if "popular" in sources:  # the fill only takes clips no other source proposed
                assert sources == {"popular"}
        if len(idx) < cfg.min_candidates:  # too few allowed clips in the whole catalog
            allowed = catalog.allowed(
                guard, np.array([catalog.pos[c] for c in ctx.seen if c in catalog.pos], dtype=np.int64)
            )
            assert allowed.sum() <= len(idx) + len(ctx.seen)


def test_collaborative_user_side_is_computed_once_and_matches_a_direct_fold_in(
    stack: Stack, tiny_ranker: Ranker
) -> None:
    model = tiny_ranker.collab
    assert model is not None
    liked = {c: 1.0 + k for k, c in enumerate(model.ids[:4])}
    side = model.user_side(liked)
    assert side is not None and model.user_side(dict(liked)) is side  # the same user again: reused
    y = model.item_factors[:4].astype(np.float64)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    conf = model.cfg.alpha * w
    a = model.gram + (y.T * (conf - 1.0)) @ y + model.cfg.regularization * np.eye(y.shape[1])
    u = np.linalg.solve(a, y.T @ conf)
    assert np.allclose(side.vector, u, atol=1e-5)
    dense = model.neighbours[:4].toarray()
    assert np.allclose(side.coengage, w @ dense / w.sum(), atol=1e-6)
    s = model.scores(liked, stack.catalog.ids, list(range(10)))
    assert np.allclose(s.cf_score, (model.item_factors[:10] @ u).astype(np.float32), atol=1e-4)
    other = model.user_side({model.ids[5]: 1.0})
    assert other is not side


def test_feeds_are_deterministic_and_skip_rows_when_not_logged(stack: Stack, tiny_ranker: Ranker) -> None:
    builder = FeedBuilder(stack.catalog, tiny_ranker)
    for user, ctx in _contexts(stack, 15):
        a = builder.build(UserContext.from_dict(ctx.to_dict()), 20, user_key=user)
        b = builder.build(UserContext.from_dict(ctx.to_dict()), 20, user_key=user, served_rows=False)
        assert [(it.clip_id, it.score, it.explanation) for it in a.items] == [
            (it.clip_id, it.score, it.explanation) for it in b.items
        ]
        assert b.features is None and (a.features is not None or a.fallback)
