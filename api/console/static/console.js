// The feed console: steer one user's feed through the public API and watch every stage react.
import { el, fmt, replaceChildren } from "./dom.js";
import { lang, setLang, t } from "./i18n.js";
import { parsePrometheus, summarize } from "./metrics.js";

const USER_ID = /^[A-Za-z0-9_.:\-]{1,128}$/;
const FEED_LIMIT = 12;
const COMPARE_LIMIT = 10;
const METRICS_EVERY_MS = 2000;
const $ = (id) => document.getElementById(id);

const state = {
  user: "",
  key: "",
  view: "feed",
  clock: 0, // the user's event clock (seconds): continues their own timeline so old history does not decay away
  clips: new Map(), // clip_id -> card data from /v1/clips
  topicNames: new Map(),
  following: new Set(),
  feedSeq: 0,
  tagSeq: 0,
  lastScrape: null,
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.key) headers["X-API-Key"] = state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const t0 = performance.now();
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, t("offline"));
  }
  const text = await res.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* a text body (metrics) */
  }
  if (!res.ok) {
    let message = data && typeof data === "object" ? data.error : String(text).slice(0, 200);
    if (data && Array.isArray(data.details)) message += `: ${data.details.map((d) => `${d.field} ${d.error}`).join("; ")}`;
    if (res.status === 401) message = t("needKey");
    throw new ApiError(res.status, typeof message === "string" ? message : JSON.stringify(message));
  }
  return { data, headers: res.headers, ms: performance.now() - t0 };
}

const userPath = (suffix) => `/v1/users/${encodeURIComponent(state.user)}/${suffix}`;

function toast(message, kind = "info") {
  const box = $("toast");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.hidden = true), kind === "error" ? 6000 : 2500);
}

function report(err) {
  toast(err instanceof ApiError && err.status ? t("error", { status: err.status, message: err.message }) : err.message, "error");
}

function nextTs() {
  state.clock = Math.max(state.clock + 1, 1);
  return state.clock;
}

function eventId(type) {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  return `console-${type}-${Date.now().toString(36)}-${rand[0].toString(36)}${rand[1].toString(36)}`;
}

async function sendEvent(event, label) {
  const body = { events: [{ event_id: eventId(event.type), user_id: state.user, ts: nextTs(), ...event }] };
  const { data } = await api("POST", "/v1/events", body);
  const result = data.results[0];
  if (result.status === "accepted") toast(t("sent", { type: label }));
  else if (result.status === "duplicate") toast(t("duplicate", { type: label }));
  else toast(t("rejected", { type: label, reason: result.reason ?? "" }), "error");
  return result;
}

// ---------------------------------------------------------------- clips and topic names

async function loadClips(ids) {
  const missing = [...new Set(ids)].filter((id) => !state.clips.has(id));
  for (let i = 0; i < missing.length; i += 50) {
    const { data } = await api("GET", `/v1/clips?ids=${missing.slice(i, i + 50).map(encodeURIComponent).join(",")}`);
    for (const clip of data.clips) {
      state.clips.set(clip.clip_id, clip);
      for (const topic of clip.topics) state.topicNames.set(topic.id, topic);
    }
  }
}

function topicLabel(id) {
  const topic = state.topicNames.get(id);
  return topic ? topic.name : id;
}

function topicChip(id) {
  const topic = state.topicNames.get(id);
  const tier = topic ? topic.tier1 : id;
  return el("span", { class: `chip topic tier-${hashClass(tier)}`, title: tier, "data-topic": id }, topicLabel(id));
}

function hashClass(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 8;
}

// ---------------------------------------------------------------- tags (student -> classifier)

function renderTags(data) {
  const list = $("tags");
  $("tagger-name").textContent = data ? t("tagger", { name: data.tagger }) : "";
  if (!data) {
    replaceChildren(list, el("li", { class: "muted" }, t("tagsEmpty")));
    return;
  }
  if (!data.tags.length) {
    replaceChildren(list, el("li", { class: "muted", "data-empty": "true" }, t("noTags")));
    return;
  }
  replaceChildren(
    list,
    data.tags.map((tag) => {
      for (const topic of tag.topics) if (!state.topicNames.has(topic.id)) state.topicNames.set(topic.id, { ...topic, tier1: topic.name });
      return el(
        "li",
        { class: `tag-row ${tag.keep ? "keep" : "drop"}`, "data-tag": tag.tag, "data-keep": String(tag.keep) },
        el(
          "div",
          { class: "tag-head" },
          el("span", { class: "chip signal" }, tag.signal),
          el("strong", { class: "tag" }, tag.tag),
          el("span", { class: "muted small" }, fmt(tag.score)),
          el("span", { class: `badge ${tag.keep ? "keep" : "drop"}` }, t(tag.keep ? "keep" : "drop")),
        ),
        el(
          "div",
          { class: "tag-topics" },
          el("span", { class: "arrow", "aria-hidden": "true" }, "→"),
          tag.topics.slice(0, 3).map((topic) => el("span", { class: "chip", "data-topic": topic.id }, `${topic.name} ${fmt(topic.p)}`)),
        ),
        el("div", { class: "reason small" }, tag.reason),
      );
    }),
  );
}

function searchInput() {
  const query = $("query").value.trim();
  const docs = $("docs")
    .value.split("\n")
    .map((d) => d.trim())
    .filter(Boolean)
    .slice(0, 20);
  return { query, docs };
}

async function previewTags() {
  const { query, docs } = searchInput();
  const seq = ++state.tagSeq;
  if (!query) {
    renderTags(null);
    return;
  }
  try {
    const { data } = await api("POST", "/v1/tags", { query, docs });
    if (seq === state.tagSeq) renderTags(data);
  } catch (err) {
    if (seq === state.tagSeq) report(err);
  }
}

let previewTimer = null;
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(previewTags, 300);
}

// ---------------------------------------------------------------- context

function renderContext(ctx) {
  const names = new Map(ctx.topics.map((tp) => [tp.id, tp.name]));
  for (const tp of ctx.topics) if (!state.topicNames.has(tp.id)) state.topicNames.set(tp.id, { id: tp.id, name: tp.name, tier1: tp.name });
  $("context-summary").textContent = t("contextSummary", { events: ctx.clip_events, seen: ctx.seen });
  $("context-panel").dataset.clipEvents = String(ctx.clip_events);
  const none = () => el("li", { class: "muted" }, t("none"));
  replaceChildren(
    $("ctx-tags"),
    ctx.tags.length
      ? ctx.tags.slice(0, 12).map((tg) =>
          el(
            "li",
            { "data-tag": tg.tag },
            el("strong", {}, tg.tag),
            " ",
            el("span", { class: "muted small" }, `${fmt(tg.weight)} · ${names.get(tg.topic) ?? tg.topic} · ${tg.signal}`),
          ),
        )
      : none(),
  );
  const signals = ["search", "doc_click", "watch", "skip", "engage"];
  replaceChildren(
    $("ctx-topics"),
    ctx.topics.some((tp) => signals.some((s) => tp[s] >= 0.005))
      ? ctx.topics.filter((tp) => signals.some((s) => tp[s] >= 0.005)).slice(0, 10).map((tp) =>
          el(
            "li",
            { "data-topic": tp.id, "data-skip": String(tp.skip), "data-watch": String(tp.watch) },
            el("strong", {}, tp.name),
            el(
              "span",
              { class: "signals small" },
              signals.filter((s) => tp[s] >= 0.005).map((s) => el("span", { class: `sig sig-${s}` }, `${s} ${fmt(tp[s])}`)),
            ),
          ),
        )
      : none(),
  );
  state.following = new Set(ctx.creators.filter((c) => c.follow > 0).map((c) => c.id));
  replaceChildren(
    $("ctx-creators"),
    ctx.creators.length
      ? ctx.creators.map((c) =>
          el(
            "li",
            { "data-creator": c.id },
            el("strong", {}, c.id),
            " ",
            el("span", { class: "muted small" }, `follow ${fmt(c.follow)} · watch ${fmt(c.watch)} · skip ${fmt(c.skip)} · engage ${fmt(c.engage)}`),
          ),
        )
      : none(),
  );
  replaceChildren(
    $("ctx-searches"),
    ctx.searches.length
      ? ctx.searches
          .slice(-8)
          .reverse()
          .map((s) =>
            el(
              "li",
              { "data-query": s.query },
              el("strong", {}, s.query),
              " ",
              el("span", { class: "small" }, s.tags.join(", ")),
              s.dropped.length ? el("span", { class: "small dropped" }, ` · ${t("dropped")}: ${s.dropped.join(", ")}`) : null,
              s.via && s.via !== "tagger" ? el("span", { class: "chip source" }, t("via", { via: s.via })) : null,
            ),
          )
      : none(),
  );
}

async function refreshContext(resetClock = false) {
  const { data } = await api("GET", userPath("context"));
  if (resetClock) {
    const last = Math.max(0, ...data.searches.map((s) => s.ts));
    state.clock = last > 0 ? last : Math.floor(Date.now() / 1000);
  }
  renderContext(data);
  return data;
}

// ---------------------------------------------------------------- feed

function featureList(features) {
  if (!features || !features.length) return null;
  return el(
    "ul",
    { class: "features small", "aria-label": t("features") },
    features.map((f) => el("li", {}, el("code", {}, f.feature), ` ${f.contribution >= 0 ? "+" : ""}${fmt(f.contribution)}`)),
  );
}

function feedCard(item, rank) {
  const clip = state.clips.get(item.clip_id);
  const ex = item.explanation ?? {};
  const ratio = el("input", { type: "range", min: "0.1", max: "1", step: "0.1", value: "0.8", "aria-label": t("watchRatio") });
  const watchBtn = el("button", { type: "button", class: "act watch", "data-action": "watch" }, t("watch", { pct: 80 }));
  ratio.addEventListener("input", () => (watchBtn.textContent = t("watch", { pct: Math.round(Number(ratio.value) * 100) })));
  const creator = clip ? clip.creator_id : null;
  const following = creator && state.following.has(creator);
  const act = (type, extra, label) => async () => {
    try {
      await sendEvent({ type, ...extra }, label);
      await refreshAll();
    } catch (err) {
      report(err);
    }
  };
  watchBtn.addEventListener("click", () => act("watch", { clip_id: item.clip_id, watch_ratio: Number(ratio.value) }, "watch")());
  return el(
    "article",
    { class: "card", "data-clip-id": item.clip_id, "data-rank": String(rank) },
    el("div", { class: "card-rank" }, String(rank)),
    el("h3", { class: "title" }, clip ? clip.title : item.clip_id),
    el(
      "div",
      { class: "meta small muted" },
      clip ? `${clip.creator_id} · ${clip.language} · ${Math.round(clip.duration_s)} s · ` : "",
      `score ${fmt(item.score, 3)}`,
    ),
    el("div", { class: "topics" }, item.topics.map(topicChip), (ex.sources ?? []).map((s) => el("span", { class: "chip source" }, s))),
    el("p", { class: "reason" }, ex.reason ?? ""),
    ex.search ? el("p", { class: "from small" }, `${t("because")}: “${ex.search}”${ex.tag && ex.tag !== ex.search ? ` → ${ex.tag}` : ""}`) : null,
    featureList(ex.top_features),
    el(
      "div",
      { class: "actions" },
      el("span", { class: "watch-group" }, ratio, watchBtn),
      el("button", { type: "button", class: "act", "data-action": "skip", on: { click: act("skip", { clip_id: item.clip_id }, "skip") } }, t("skip")),
      el("button", { type: "button", class: "act", "data-action": "like", on: { click: act("like", { clip_id: item.clip_id }, "like") } }, t("like")),
      creator
        ? el(
            "button",
            {
              type: "button",
              class: "act",
              "data-action": following ? "unfollow" : "follow",
              on: { click: act(following ? "unfollow" : "follow", { creator_id: creator }, following ? "unfollow" : "follow") },
            },
            t(following ? "unfollow" : "follow"),
          )
        : null,
    ),
  );
}

function renderStatus(feed, headers, ms) {
  $("arm").textContent = feed.arm;
  const header = headers.get("X-Clipfeed-Fallback");
  const fallback = feed.fallback || header;
  $("fallback").textContent = fallback ? `${feed.fallback ?? ""}${header ? ` [${header}]` : ""}` : t("fallbackNone");
  $("fallback").dataset.state = fallback ? "fallback" : "personal";
  $("feed-ms").textContent = t("feedMs", { ms: ms.toFixed(0), n: feed.items.length });
}

async function refreshFeed() {
  const seq = ++state.feedSeq;
  const { data, headers, ms } = await api("GET", userPath(`feed?limit=${FEED_LIMIT}&features=true`));
  await loadClips(data.items.map((i) => i.clip_id));
  if (seq !== state.feedSeq) return;
  renderStatus(data, headers, ms);
  $("feed-empty").hidden = data.items.length > 0;
  $("feed-empty").textContent = t("feedEmpty");
  const feed = $("feed");
  replaceChildren(feed, data.items.map((item, n) => feedCard(item, n + 1)));
  feed.dataset.version = String(seq);
  feed.dataset.fallback = data.fallback ? "true" : "false";
}

// ---------------------------------------------------------------- compare

function tierMix(items) {
  const counts = new Map();
  for (const item of items) {
    const topic = state.topicNames.get(item.topics[0]);
    const tier = topic ? topic.tier1 : item.topics[0];
    counts.set(tier, (counts.get(tier) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([tier, n]) => `${tier} ×${n}`).join(" · ");
}

function renderCompareColumn(column, items, other) {
  column.querySelector(".mix").textContent = tierMix(items);
  replaceChildren(
    column.querySelector(".mini-cards"),
    items.map((item, n) => {
      const clip = state.clips.get(item.clip_id);
      const ex = item.explanation ?? {};
      const topic = state.topicNames.get(item.topics[0]);
      return el(
        "li",
        { class: "mini-card", "data-clip-id": item.clip_id, "data-tier1": topic ? topic.tier1 : item.topics[0] },
        el("span", { class: "card-rank" }, String(n + 1)),
        el(
          "div",
          { class: "mini-body" },
          el("div", { class: "title" }, clip ? clip.title : item.clip_id),
          el("div", { class: "topics" }, item.topics.map(topicChip), other.has(item.clip_id) ? el("span", { class: "chip both" }, t("inBoth")) : null),
          el("div", { class: "reason small muted" }, ex.reason ?? ""),
        ),
      );
    }),
  );
  column.dataset.count = String(items.length);
}

async function refreshCompare() {
  const [full, raw] = await Promise.all([
    api("GET", userPath(`feed?limit=${COMPARE_LIMIT}`)),
    api("GET", userPath(`feed/baseline?system=raw_keywords&limit=${COMPARE_LIMIT}`)),
  ]);
  await loadClips([...full.data.items, ...raw.data.items].map((i) => i.clip_id));
  const fullIds = new Set(full.data.items.map((i) => i.clip_id));
  const rawIds = new Set(raw.data.items.map((i) => i.clip_id));
  renderCompareColumn($("compare-full"), full.data.items, rawIds);
  renderCompareColumn($("compare-raw"), raw.data.items, fullIds);
  $("compare-view").dataset.ready = "true";
}

// ---------------------------------------------------------------- metrics

async function scrapeMetrics() {
  try {
    const res = await fetch("/metrics", { headers: state.key ? { "X-API-Key": state.key } : {} });
    if (!res.ok) throw new Error(String(res.status));
    const samples = parsePrometheus(await res.text());
    const now = performance.now();
    const prev = state.lastScrape;
    const m = summarize(prev ? prev.samples : null, samples, prev ? (now - prev.at) / 1000 : 0);
    state.lastScrape = { samples, at: now };
    const ms = (s) => (s === null ? "—" : `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`);
    $("m-p50").textContent = ms(m.p50);
    $("m-p99").textContent = ms(m.p99);
    $("m-eps").textContent = t("eventsTotal", { rate: m.eventsPerS === null ? "—" : m.eventsPerS.toFixed(1), n: m.events });
    $("m-cache").textContent = m.cacheHit === null ? "—" : `${(m.cacheHit * 100).toFixed(0)} %`;
    $("m-fallbacks").textContent = String(m.fallbacks);
    $("m-window").textContent = m.windowed ? t("metricsLive", { s: Math.round(METRICS_EVERY_MS / 1000) }) : t("metricsTotal");
    $("metrics").dataset.ready = "true";
  } catch {
    $("m-window").textContent = t("metricsDown");
  }
}

function metricsLoop() {
  if (!document.hidden) scrapeMetrics();
  setTimeout(metricsLoop, METRICS_EVERY_MS);
}

// ---------------------------------------------------------------- wiring

async function refreshAll(resetClock = false) {
  if (!state.user) return;
  try {
    await refreshContext(resetClock);
    if (state.view === "compare") await refreshCompare();
    else await refreshFeed();
  } catch (err) {
    report(err);
  }
}

async function loadUser(id) {
  if (!USER_ID.test(id)) {
    toast(t("badUser"), "error");
    return;
  }
  state.user = id;
  $("user-id").value = id;
  localStorage.setItem("clipfeed.user", id);
  document.body.dataset.user = id;
  await refreshAll(true);
}

function setView(view) {
  state.view = view;
  $("feed-view").hidden = view !== "feed";
  $("compare-view").hidden = view !== "compare";
  $("tab-feed").setAttribute("aria-pressed", String(view === "feed"));
  $("tab-compare").setAttribute("aria-pressed", String(view === "compare"));
  refreshAll();
}

function toggleLang() {
  const next = setLang(lang() === "ko" ? "en" : "ko");
  localStorage.setItem("clipfeed.lang", next);
  $("lang-toggle").textContent = next === "ko" ? "English" : "한국어";
  refreshAll();
}

async function submitSearch(event) {
  event.preventDefault();
  if (!state.user) {
    toast(t("noUser"), "error");
    return;
  }
  const { query, docs } = searchInput();
  if (!query) {
    toast(t("needQuery"), "error");
    return;
  }
  try {
    const result = await sendEvent({ type: "search", query, clicked_docs: docs.map((title) => ({ title })) }, "search");
    const sentTs = state.clock;
    $("tagging").textContent = result.tagging ?? "—";
    if (result.tagging === "pending") {
      toast(t("taggingPending"));
      await Promise.all([previewTags(), waitForSearch(query, sentTs)]);
    }
    await Promise.all([previewTags(), refreshAll()]);
  } catch (err) {
    report(err);
  }
}

// A search whose tags are still being computed reaches the context later: poll it for a while.
async function waitForSearch(query, ts) {
  for (let i = 0; i < 30; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const ctx = await refreshContext();
    if (ctx.searches.some((s) => s.query === query && s.ts >= ts)) return;
  }
  toast(t("taggingLate"), "error");
}

function init() {
  const params = new URLSearchParams(location.search);
  const stored = localStorage.getItem("clipfeed.lang");
  const initial = params.get("lang") || stored || (navigator.language.startsWith("ko") ? "ko" : "en");
  setLang(initial);
  $("lang-toggle").textContent = lang() === "ko" ? "English" : "한국어";
  state.key = localStorage.getItem("clipfeed.apiKey") ?? "";
  $("api-key").value = state.key;
  const saveKey = (e) => {
    if (e) e.preventDefault();
    state.key = $("api-key").value.trim();
    localStorage.setItem("clipfeed.apiKey", state.key);
    schedulePreview();
  };
  $("api-key").addEventListener("change", saveKey);
  $("key-form").addEventListener("submit", saveKey);
  $("lang-toggle").addEventListener("click", toggleLang);
  $("user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadUser($("user-id").value.trim());
  });
  $("new-user").addEventListener("click", () => {
    const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    loadUser(`console-${rand}`);
  });
  $("tab-feed").addEventListener("click", () => setView("feed"));
  $("tab-compare").addEventListener("click", () => setView("compare"));
  $("refresh-feed").addEventListener("click", () => refreshAll());
  $("refresh-compare").addEventListener("click", () => refreshAll());
  $("query").addEventListener("input", schedulePreview);
  $("docs").addEventListener("input", schedulePreview);
  $("search-form").addEventListener("submit", submitSearch);
  renderTags(null);
  metricsLoop();
  const user = params.get("user") || localStorage.getItem("clipfeed.user");
  if (params.get("view") === "compare") setView("compare");
  if (user) loadUser(user);
  document.body.dataset.ready = "true";
}

init();
