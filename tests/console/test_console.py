"""The feed console end to end: headless Chromium against a real `clipfeed serve` (embedded Redis).

Every action goes through the page (typing, clicking) and is checked on what the page shows and on
what the API then holds; screenshots land in $CLIPFEED_ARTIFACTS/console (default .cache/artifacts/console).
Set CLIPFEED_UPDATE_SCREENSHOT=1 to rewrite the README's docs/console.png.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Any

import pytest

from tests.console.conftest import API_KEY, ROOT, artifacts_dir

pytestmark = pytest.mark.redis


def open_console(page: Any, user: str, query: str = "") -> None:
    page.goto(f"{page.base}/console/{query}")
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    page.fill("#user-id", user)
    page.click("#load-user")
    page.locator("#feed[data-version]").wait_for()


def send_search(page: Any, query: str, docs: str = "") -> None:
    version = page.get_attribute("#feed", "data-version") or ""
    page.fill("#query", query)
    page.fill("#docs", docs)
    page.click("#send-search")
    page.locator(f"#ctx-searches li[data-query='{query}']").wait_for()
    if not page.is_hidden("#feed-view"):
        page.locator(f"#feed:not([data-version='{version}'])").wait_for()


def click_and_wait_for_feed(page: Any, target: Any) -> None:
    """Clicks an action on a card and waits for the feed the console fetches after it."""
    version = page.get_attribute("#feed", "data-version")
    target.click()
    page.locator(f"#feed:not([data-version='{version}'])").wait_for()


def feed_ids(page: Any) -> list[str]:
    return [str(x) for x in page.eval_on_selector_all("#feed .card", "els => els.map(e => e.dataset.clipId)")]


def api_get(page: Any, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{page.base}{path}", timeout=5) as r:
        return json.load(r)  # type: ignore[no-any-return]


def test_search_shows_tags_then_context_then_a_personal_feed(page: Any) -> None:
    open_console(page, "console-search")
    assert page.get_attribute("#feed", "data-fallback") == "true"  # cold start: popular clips
    assert "no search intent" in page.text_content("#fallback")
    before = feed_ids(page)
    assert len(before) == 12

    page.fill("#query", "손흥민 골 하이라이트")  # typing previews the tags live (POST /v1/tags)
    row = page.locator("#tags .tag-row[data-tag='손흥민 골 하이라이트']")
    row.wait_for()
    assert row.get_attribute("data-keep") == "true"
    assert "Soccer" in row.text_content() and "on topic" in row.text_content()
    assert page.text_content("#ctx-searches") == "none yet"  # nothing sent yet

    send_search(page, "손흥민 골 하이라이트")
    assert page.get_attribute("#feed", "data-fallback") == "false"
    assert page.text_content("#fallback") == "none (personalised)" and page.text_content("#arm") == "full"
    assert page.text_content("#tagging") in {"tagger", "cache"}  # answered within the request's wait
    assert page.locator("#ctx-tags li[data-tag='손흥민 골 하이라이트']").count() == 1
    after = feed_ids(page)
    assert after != before
    first = page.locator("#feed .card").first
    assert first.locator(".chip.topic").first.get_attribute("data-topic") == "533"  # Soccer
    assert "손흥민 골 하이라이트" in first.locator(".reason").text_content()
    assert first.locator(".features li").count() == 3  # top feature contributions
    title = first.locator(".title").text_content()
    card = api_get(page, f"/v1/clips?ids={after[0]}")["clips"][0]
    assert title == card["title"]
    # the API holds the real event
    ctx = api_get(page, "/v1/users/console-search/context")
    assert [s["query"] for s in ctx["searches"]] == ["손흥민 골 하이라이트"]

    page.locator("#metrics[data-ready='true']").wait_for()
    page.wait_for_timeout(2200)  # one more scrape: a live window
    assert re.fullmatch(r"\d+(\.\d)? ms", page.text_content("#m-p50"))
    assert re.fullmatch(r"\d+(\.\d)? ms", page.text_content("#m-p99"))
    assert re.search(r"\((\d+) total\)", page.text_content("#m-eps"))
    assert page.text_content("#m-cache").endswith("%")


def test_skip_watch_like_follow_send_real_events_and_the_feed_follows(page: Any) -> None:
    user = "console-feedback"
    open_console(page, user)
    send_search(page, "오타니 홈런")
    ids = feed_ids(page)
    skipped = ids[0]
    click_and_wait_for_feed(page, page.locator(f"#feed .card[data-clip-id='{skipped}'] button[data-action='skip']"))
    assert skipped not in feed_ids(page)
    assert page.get_attribute("#context-panel", "data-clip-events") == "1"
    skip = page.locator("#ctx-topics li[data-topic='545']")  # Baseball
    assert float(skip.get_attribute("data-skip")) > 0 and "skip" in skip.text_content()

    card = page.locator("#feed .card").first
    watched = card.get_attribute("data-clip-id")
    card.locator("input[type='range']").fill("0.9")
    assert card.locator("button[data-action='watch']").text_content() == "Watch 90%"
    click_and_wait_for_feed(page, card.locator("button[data-action='watch']"))
    assert page.get_attribute("#context-panel", "data-clip-events") == "2"
    assert watched not in feed_ids(page)

    card = page.locator("#feed .card").first
    click_and_wait_for_feed(page, card.locator("button[data-action='like']"))
    assert page.get_attribute("#context-panel", "data-clip-events") == "3"

    card = page.locator("#feed .card").first
    creator = api_get(page, f"/v1/clips?ids={card.get_attribute('data-clip-id')}")["clips"][0]["creator_id"]
    click_and_wait_for_feed(page, card.locator("button[data-action='follow']"))
    assert page.locator(f"#ctx-creators li[data-creator='{creator}']").count() == 1
    ctx = api_get(page, f"/v1/users/{user}/context")
    assert ctx["clip_events"] == 4  # a follow is a feedback event too
    assert next(c for c in ctx["creators"] if c["id"] == creator)["follow"] > 0
    follow_buttons = page.locator("#feed .card button[data-action='unfollow']")
    assert follow_buttons.count() >= 1  # cards of a followed creator now offer unfollow


def test_compare_view_shows_the_full_system_and_the_raw_keyword_baseline(page: Any) -> None:
    open_console(page, "console-argentina")
    send_search(page, "볼리비아 비자", "이과수 폭포 투어 후기")
    send_search(page, "아르헨티나")
    page.click("#tab-compare")
    page.locator("#compare-view[data-ready='true']").wait_for()
    assert page.is_hidden("#feed-view")
    full = page.locator("#compare-full .mini-card")
    raw = page.locator("#compare-raw .mini-card")
    assert full.count() == 10 and raw.count() == 10
    tiers_full = [full.nth(i).get_attribute("data-tier1") for i in range(10)]
    tiers_raw = [raw.nth(i).get_attribute("data-tier1") for i in range(10)]
    # the trip planner: the full system stays on travel, raw keywords drift to Argentine politics/football
    off_full, off_raw = (sum(t != "Travel" for t in tiers) for tiers in (tiers_full, tiers_raw))
    assert tiers_full.count("Travel") >= 7 and off_raw >= off_full + 3 and {"Politics", "Sports"} & set(tiers_raw)
    assert "아르헨티나" in page.text_content("#compare-raw")
    assert "Travel" in page.text_content("#compare-full .mix")
    page.screenshot(path=str(artifacts_dir() / "compare-view.png"))
    if os.environ.get("CLIPFEED_UPDATE_SCREENSHOT"):
        save_readme_screenshot(page)


def save_readme_screenshot(page: Any) -> None:
    """docs/console.png: the compare view at laptop size, quantised to a small palette PNG."""
    from PIL import Image

    raw = artifacts_dir() / "readme-raw.png"
    page.set_viewport_size({"width": 1280, "height": 1080})
    page.locator("#toast").wait_for(state="hidden")
    page.wait_for_timeout(2200)  # a metrics scrape after the searches
    page.screenshot(path=str(raw))
    Image.open(raw).convert("RGB").quantize(colors=128).save(ROOT / "docs" / "console.png", optimize=True)
    assert (ROOT / "docs" / "console.png").stat().st_size < 300_000


@pytest.mark.parametrize("width", [360, 390])
def test_phone_width_renders_without_horizontal_overflow(page: Any, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    open_console(page, f"console-phone-{width}")
    send_search(page, "볼리비아 비자", "이과수 폭포 투어 후기 — a very long clicked document title that must wrap")
    overflow = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    scroll, client = page.evaluate(overflow)
    assert scroll <= client == width
    box = page.locator("#feed .card").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    page.click("#tab-compare")
    page.locator("#compare-view[data-ready='true']").wait_for()
    scroll, client = page.evaluate(overflow)
    assert scroll <= client == width


def test_korean_and_english_ui(page: Any) -> None:
    open_console(page, "console-lang")
    assert page.text_content("#tab-feed") == "Feed"
    page.click("#lang-toggle")
    assert page.get_attribute("html", "lang") == "ko"
    assert page.text_content("#tab-feed") == "피드" and page.text_content("#send-search") == "검색 보내기"
    assert page.get_attribute("#query", "placeholder").startswith("예:")
    page.reload()  # the choice is kept
    page.locator("#feed[data-version]").wait_for()
    assert page.text_content("#tab-compare") == "비교"
    page.click("#lang-toggle")
    assert page.text_content("#tab-compare") == "Compare"


def test_api_text_is_shown_as_text_never_as_html(page: Any) -> None:
    open_console(page, "console-xss")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    evil = "<img src=x onerror=alert(1)> 손흥민"
    send_search(page, evil)
    assert page.locator("#ctx-searches li strong").first.text_content() == evil
    assert page.locator("#tags .tag-row").first.locator(".tag").text_content() == evil
    assert page.locator("img").count() == 0 and dialogs == []


def test_wrong_api_key_is_reported_and_nothing_is_written(page: Any) -> None:
    page.allowed_errors.append("status of 401")  # the browser logs the refused writes
    open_console(page, "console-nokey")
    page.fill("#api-key", "wrong")
    page.press("#api-key", "Enter")
    page.fill("#query", "손흥민")
    page.click("#send-search")
    toast = page.locator("#toast[data-kind='error']")
    toast.wait_for()
    assert "API key" in toast.text_content()
    assert api_get(page, "/v1/users/console-nokey/context")["searches"] == []


def test_metrics_parser_in_the_browser(page: Any) -> None:
    page.goto(f"{page.base}/console/")
    text = "\n".join(
        [
            "# TYPE clipfeed_request_seconds histogram",
            'clipfeed_request_seconds_bucket{le="0.01",route="/v1/users/{user_id}/feed"} 50.0',
            'clipfeed_request_seconds_bucket{le="0.1",route="/v1/users/{user_id}/feed"} 99.0',
            'clipfeed_request_seconds_bucket{le="+Inf",route="/v1/users/{user_id}/feed"} 100.0',
            'clipfeed_request_seconds_bucket{le="0.01",route="/metrics"} 1000.0',
            'clipfeed_request_seconds_bucket{le="0.1",route="/metrics"} 1000.0',
            'clipfeed_request_seconds_bucket{le="+Inf",route="/metrics"} 1000.0',
            'clipfeed_events_total{status="accepted"} 30.0',
            'clipfeed_events_total{status="duplicate"} 10.0',
            "clipfeed_tag_cache_hit_ratio 0.75",
        ]
    )
    result = page.evaluate(
        """async (text) => {
            const m = await import('/console/metrics.js');
            const cur = m.parsePrometheus(text);
            const prev = m.parsePrometheus(text.replace('30.0', '10.0'));
            return m.summarize(prev, cur, 4);
        }""",
        text,
    )
    assert result["p50"] == pytest.approx(0.01)  # /metrics scrapes do not count
    assert result["p99"] == pytest.approx(0.1)
    assert result["eventsPerS"] == pytest.approx(5.0) and result["events"] == 40
    assert result["cacheHit"] == 0.75 and result["windowed"] is False  # no request fell in the window
