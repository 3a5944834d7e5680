// Prometheus text exposition -> the console's live figures (pure functions, tested in the browser).

function parseValue(text) {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

// name -> [{labels, value}] for every sample line of the text format.
export function parsePrometheus(text) {
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const lm of m[2].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      }
    }
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: parseValue(m[3]) });
  }
  return out;
}

// Cumulative buckets of a histogram summed over the series whose labels pass `keep`: [{le, count}].
export function histogramBuckets(samples, name, keep = () => true) {
  const byLe = new Map();
  for (const s of samples.get(`${name}_bucket`) ?? []) {
    if (!keep(s.labels)) continue;
    const le = parseValue(s.labels.le);
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
}

// Like PromQL's histogram_quantile: linear within the bucket; the highest finite bound for +Inf.
export function histogramQuantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1].count;
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      const inBucket = b.count - prevCount;
      return prevLe + (b.le - prevLe) * (inBucket > 0 ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

function total(samples, name) {
  return (samples.get(name) ?? []).reduce((acc, s) => acc + s.value, 0);
}

const V1 = (labels) => (labels.route ?? "").startsWith("/v1/");

// The figures the side panel shows, from the previous and the current scrape (prev may be null):
// latency quantiles over the window between the scrapes when requests fell in it, else since start.
export function summarize(prev, cur, dtSeconds) {
  const now = histogramBuckets(cur, "clipfeed_request_seconds", V1);
  let buckets = now;
  let windowed = false;
  if (prev && dtSeconds > 0) {
    const before = new Map(histogramBuckets(prev, "clipfeed_request_seconds", V1).map((b) => [b.le, b.count]));
    const delta = now.map((b) => ({ le: b.le, count: b.count - (before.get(b.le) ?? 0) }));
    if (delta.length && delta[delta.length - 1].count > 0) {
      buckets = delta;
      windowed = true;
    }
  }
  const events = total(cur, "clipfeed_events_total");
  const cache = cur.get("clipfeed_tag_cache_hit_ratio");
  return {
    p50: histogramQuantile(0.5, buckets),
    p99: histogramQuantile(0.99, buckets),
    windowed,
    requests: buckets.length ? buckets[buckets.length - 1].count : 0,
    eventsPerS: prev && dtSeconds > 0 ? Math.max(0, events - total(prev, "clipfeed_events_total")) / dtSeconds : null,
    events,
    cacheHit: cache && cache.length ? cache[0].value : null,
    fallbacks: total(cur, "clipfeed_fallbacks_total"),
  };
}
