// The circuit dashboard: polls /api/state, draws the nodes, workers and channels of the mesh,
// and keeps a few minutes of samples in the page for the charts (channel rates in and out,
// worker CPU and memory). No library: tables are built with the DOM, charts are inline SVG.
"use strict";

const POLL_MS = 2000;
/** Samples kept per chart: 5 minutes at one poll every 2 s. */
const KEEP = 150;
const SVG = "http://www.w3.org/2000/svg";

/** Channel name -> { t, sent, received, rin: [], rout: [] }. */
const chanHistory = new Map();
/** "node/worker" -> { cpu: [], rss: [] }. */
const workerHistory = new Map();

function push(ring, value) {
  ring.push(value);
  if (ring.length > KEEP) ring.shift();
}

// ---- formatting -------------------------------------------------------------------------

function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function fmtCount(n) {
  return n == null ? "–" : Number(n).toLocaleString("en-US");
}

function fmtRate(r) {
  if (r == null) return "–";
  if (r >= 1000) return Math.round(r).toLocaleString("en-US");
  if (r >= 10) return r.toFixed(0);
  return r.toFixed(1);
}

function fmtAge(sinceMs, nowMs) {
  if (!sinceMs) return "–";
  let s = Math.max(0, Math.floor((nowMs - sinceMs) / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d > 0) return d + "d" + h + "h";
  if (h > 0) return h + "h" + m + "m";
  if (m > 0) return m + "m" + s + "s";
  return s + "s";
}

// ---- DOM helpers ------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v != null) node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function badge(state) {
  return el("span", { class: "badge " + state }, state);
}

function fillBody(table, rows, columns, empty) {
  const body = document.querySelector("#" + table + " tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
    return;
  }
  for (const row of rows) body.append(row);
}

// ---- charts -----------------------------------------------------------------------------

/**
 * A sparkline of one or more series (arrays of numbers or nulls, oldest first) sharing one
 * y scale from 0. `data-points` tells how many samples it draws.
 */
function spark(kind, series, opts) {
  const w = 140;
  const h = 30;
  const points = Math.max(0, ...series.map((s) => s.values.length));
  const chart = svg("svg", {
    class: "spark " + kind,
    width: w,
    height: h,
    viewBox: "0 0 " + w + " " + h,
    "data-points": points,
    role: "img",
  });
  const peak = Math.max(opts.floor || 0, ...series.flatMap((s) => s.values.filter((v) => v != null)));
  chart.append(svg("line", { class: "axis", x1: 0, y1: h - 0.5, x2: w, y2: h - 0.5 }));
  // Time runs left to right; the newest sample is at the right edge. Until a minute of
  // samples is in, the chart spans one minute.
  const span = Math.max(points, 30);
  const x = (i) => ((span - points + i) / (span - 1)) * w;
  // A fifth of headroom above the peak, so that a steady line stays clear of the label.
  const y = (v) => (peak > 0 ? h - 1 - (v / (peak * 1.25)) * (h - 2) : h - 1);
  for (const s of series) {
    let d = "";
    let first = null;
    let last = null;
    s.values.forEach((v, i) => {
      if (v == null) return;
      d += (d === "" ? "M" : "L") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      if (first == null) first = i;
      last = i;
    });
    if (d === "") continue;
    if (s.area) {
      const area = d + "L" + x(last).toFixed(1) + " " + (h - 1) + "L" + x(first).toFixed(1) + " " + (h - 1) + "Z";
      chart.append(svg("path", { class: "area-" + s.cls, d: area }));
    }
    chart.append(svg("path", { class: s.cls, d }));
  }
  const label = svg("text", { x: 2, y: 8 });
  label.textContent = opts.label(peak);
  chart.append(label);
  const title = svg("title", {});
  title.textContent = opts.title;
  chart.append(title);
  return chart;
}

// ---- sections ---------------------------------------------------------------------------

function renderNodes(state) {
  const rows = state.nodes.map((n) =>
    el(
      "tr",
      { "data-node": n.name },
      el("td", { class: "name" }, n.name, n.is_self ? el("span", { class: "muted" }, " (this node)") : null),
      el("td", {}, badge(n.state)),
      el("td", { class: "muted" }, n.addr || "–"),
      el("td", { class: "num" }, fmtCount(n.workers)),
      el("td", { class: "num" }, fmtCount((n.channels || []).length)),
      el("td", { class: "num" }, n.load != null ? Number(n.load).toFixed(2) : "–"),
      el("td", { class: "muted" }, n.version || "–"),
      el("td", { class: "num" }, fmtAge(n.started_at_ms, state.at_ms)),
      el("td", {}, ...Object.entries(n.labels || {}).map(([k, v]) => el("span", { class: "label" }, k + "=" + v))),
    ),
  );
  fillBody("nodes", rows, 9, "no node");
  document.getElementById("nodes-count").textContent = state.nodes.length;
}

function renderWorkers(state) {
  const seen = new Set();
  const rows = state.workers.map((w) => {
    const key = w.node + "/" + w.name;
    seen.add(key);
    let hist = workerHistory.get(key);
    if (!hist) {
      hist = { cpu: [], rss: [] };
      workerHistory.set(key, hist);
    }
    const u = w.usage;
    push(hist.cpu, u && u.cpu_percent != null ? u.cpu_percent : null);
    push(hist.rss, u ? u.rss_bytes : null);
    const cpu = spark("cpu", [{ values: hist.cpu, cls: "cpu", area: true }], {
      floor: 5,
      label: (p) => p.toFixed(0) + "%",
      title: "CPU of " + w.name + ", percent of one core",
    });
    const mem = spark("mem", [{ values: hist.rss, cls: "mem", area: true }], {
      floor: 1024 * 1024,
      label: fmtBytes,
      title: "Resident memory of " + w.name,
    });
    return el(
      "tr",
      { "data-worker": w.name, "data-node": w.node },
      el("td", { class: "name" }, w.name),
      el("td", {}, w.node),
      el("td", { title: w.reason || "" }, badge(w.state)),
      el("td", { class: "num" }, w.pid != null ? w.pid : "–"),
      el("td", { class: "num" }, fmtCount(w.restarts)),
      el("td", { class: "num" }, u && u.cpu_percent != null ? u.cpu_percent.toFixed(1) + "%" : "–"),
      el("td", {}, cpu),
      el("td", { class: "num" }, u ? fmtBytes(u.rss_bytes) : "–"),
      el("td", {}, mem),
      el("td", { class: "num" }, w.state === "running" ? fmtAge(w.started_at_ms, state.at_ms) : "–"),
      el("td", { class: "command", title: w.command }, w.command),
    );
  });
  for (const key of workerHistory.keys()) if (!seen.has(key)) workerHistory.delete(key);
  fillBody("workers", rows, 11, "no worker");
  const running = state.workers.filter((w) => w.state === "running").length;
  document.getElementById("workers-count").textContent = running + " running of " + state.workers.length;
}

function renderChans(state) {
  const seen = new Set();
  const rows = state.chans.map((c) => {
    seen.add(c.name);
    let hist = chanHistory.get(c.name);
    if (!hist) {
      hist = { t: null, sent: 0, received: 0, rin: [], rout: [] };
      chanHistory.set(c.name, hist);
    }
    // Rates from the totals between two polls; a total that went down (the owner restarted,
    // a new leader) starts again.
    let rin = null;
    let rout = null;
    if (hist.t != null && state.at_ms > hist.t) {
      const dt = (state.at_ms - hist.t) / 1000;
      rin = c.sent >= hist.sent ? (c.sent - hist.sent) / dt : null;
      rout = c.received >= hist.received ? (c.received - hist.received) / dt : null;
      push(hist.rin, rin);
      push(hist.rout, rout);
    }
    hist.t = state.at_ms;
    hist.sent = c.sent;
    hist.received = c.received;
    const rates = spark("rate", [
      { values: hist.rin, cls: "in" },
      { values: hist.rout, cls: "out" },
    ], {
      floor: 1,
      label: (p) => fmtRate(p) + "/s",
      title: "Messages per second into (sent) and out of (received) " + c.name,
    });
    const held = c.len + c.in_flight;
    const bar = el("span", {});
    const share = c.capacity > 0 ? Math.min(1, held / c.capacity) : 0;
    bar.style.width = (share * 100).toFixed(1) + "%";
    const depth = el(
      "div",
      { class: "depth" },
      el("div", { class: "bar" + (share >= 1 ? " full" : "") }, bar),
      el("span", { class: "num" }, fmtCount(c.len) + " / " + fmtCount(c.capacity)),
    );
    const owner = c.owner || "–";
    const replicas = (c.replicas || []).length;
    return el(
      "tr",
      { "data-chan": c.name },
      el("td", { class: "name" }, c.name, c.closed ? el("span", { class: "badge closed" }, "closed") : null),
      el("td", {}, owner, replicas > 0 ? el("span", { class: "muted" }, " (" + replicas + " replicas)") : null),
      el("td", {}, depth),
      el("td", { class: "num" }, fmtCount(c.in_flight)),
      el("td", { class: "num" }, fmtCount(c.waiting_senders) + " / " + fmtCount(c.waiting_receivers)),
      el("td", { class: "num" }, fmtCount(c.senders) + " / " + fmtCount(c.receivers)),
      el("td", { class: "num", "data-sent": c.sent }, fmtCount(c.sent)),
      el("td", { class: "num" }, fmtCount(c.received)),
      el("td", { class: "num" }, fmtCount(c.redelivered || 0)),
      el(
        "td",
        { class: "num" },
        el("span", { class: "key in" }, fmtRate(rin)),
        " / ",
        el("span", { class: "key out" }, fmtRate(rout)),
      ),
      el("td", {}, rates),
    );
  });
  for (const key of chanHistory.keys()) if (!seen.has(key)) chanHistory.delete(key);
  fillBody("chans", rows, 11, "no channel");
  document.getElementById("chans-count").textContent = state.chans.length;
}

function renderSummary(state) {
  const up = state.nodes.filter((n) => n.state === "alive" || n.state === "suspect").length;
  const time = new Date(state.at_ms).toLocaleTimeString();
  document.getElementById("summary").textContent =
    up + " of " + state.nodes.length + " nodes up · seen from " + state.node + " · " + time;
}

function setStatus(kind, text) {
  const status = document.getElementById("status");
  status.dataset.state = kind;
  status.textContent = text;
}

// ---- polling ----------------------------------------------------------------------------

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    const state = await response.json();
    if (!response.ok) throw new Error(state.error || response.statusText);
    renderSummary(state);
    renderNodes(state);
    renderWorkers(state);
    renderChans(state);
    setStatus("ok", "live");
  } catch (e) {
    setStatus("error", "cannot reach the daemon: " + e.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
