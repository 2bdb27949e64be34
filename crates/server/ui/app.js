// The live page of `ssehub serve`. No library, no storage: the publisher key and the token
// typed in the forms live in this page's variables only, and everything received is written
// with textContent (never parsed as HTML).
"use strict";

const SAMPLES = 120; // two minutes at one stats event a second
const LOG_ENTRIES = 200; // the log keeps the newest this many
const COLOURS = {
  connections: "#2b6cb0",
  users: "#2f855a",
  topics: "#805ad5",
  pushes: "#dd6b20",
  deliveries: "#c53030",
};

/** A moving line chart drawn by hand on a canvas: the last SAMPLES values of a few series. */
class Chart {
  constructor(canvas, series) {
    this.canvas = canvas;
    this.series = series.map((name) => ({ name, colour: COLOURS[name], values: [] }));
  }

  add(sample) {
    for (const s of this.series) {
      s.values.push(sample[s.name]);
      if (s.values.length > SAMPLES) s.values.shift();
    }
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    const w = width / ratio;
    const h = height / ratio;
    const left = 44;
    const top = 8;
    const plotW = w - left - 8;
    const plotH = h - top - 18;
    g.clearRect(0, 0, w, h);

    let max = 0;
    for (const s of this.series) for (const v of s.values) max = Math.max(max, v);
    const scale = niceCeiling(max);

    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#718096";
    g.strokeStyle = "#e2e8f0";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = Math.round(top + plotH - (plotH * i) / 4) + 0.5;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(left + plotW, y);
      g.stroke();
      g.fillText(formatNumber((scale * i) / 4), left - 6, y);
    }
    g.textAlign = "left";
    g.textBaseline = "alphabetic";
    g.fillText(`last ${SAMPLES} s`, left, h - 4);

    const step = plotW / (SAMPLES - 1);
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const s of this.series) {
      if (s.values.length === 0) continue;
      g.strokeStyle = s.colour;
      g.beginPath();
      const offset = SAMPLES - s.values.length;
      s.values.forEach((v, i) => {
        const x = left + (offset + i) * step;
        const y = top + plotH - (plotH * v) / scale;
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      if (s.values.length === 1) g.lineTo(left + plotW, top + plotH - (plotH * s.values[0]) / scale);
      g.stroke();
    }
  }
}

/** The top of a chart's scale: the smallest of 4, or 1, 2, 4 or 8 times a power of ten, at or
 * above `value`, so that the four grid lines fall on round numbers. */
function niceCeiling(value) {
  if (!(value > 4)) return 4;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 4, 8, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function formatNumber(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(value < 10 && value % 1 ? 1 : 0)}`;
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

// --- the stats feed ---------------------------------------------------------------------------

const charts = [];
let previous = null;
let feed = null;

function openFeed() {
  feed = new EventSource("/stats/stream");
  feed.addEventListener("open", () => text("feed-state", "live"));
  feed.addEventListener("stats", (event) => {
    let stats;
    try {
      stats = JSON.parse(event.data);
    } catch {
      return;
    }
    // Rates from two readings: what grew, over the time between them.
    let pushes = 0;
    let deliveries = 0;
    if (previous && stats.uptime_ms > previous.uptime_ms) {
      const seconds = (stats.uptime_ms - previous.uptime_ms) / 1000;
      pushes = Math.max(0, stats.pushes - previous.pushes) / seconds;
      deliveries = Math.max(0, stats.success - previous.success) / seconds;
    }
    previous = stats;
    const sample = {
      connections: stats.connections,
      users: stats.users,
      topics: stats.topics,
      pushes,
      deliveries,
    };
    text("now-connections", formatNumber(sample.connections));
    text("now-users", formatNumber(sample.users));
    text("now-topics", formatNumber(sample.topics));
    text("now-pushes", formatNumber(pushes));
    text("now-deliveries", formatNumber(deliveries));
    for (const chart of charts) chart.add(sample);
  });
  feed.addEventListener("error", () => {
    // A network error: the browser reconnects by itself. A refusal (503: too many stats
    // streams) closes the source: try again later.
    if (feed.readyState === EventSource.CLOSED) {
      text("feed-state", "unavailable; retrying in 10 s");
      previous = null;
      setTimeout(openFeed, 10000);
    } else {
      text("feed-state", "reconnecting…");
      previous = null;
    }
  });
}

// --- the test-push form -----------------------------------------------------------------------

function listOf(value) {
  return value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

async function push(event) {
  event.preventDefault();
  const key = document.getElementById("push-key").value; // read now, kept nowhere
  const to = document.getElementById("push-to").value;
  const names = listOf(document.getElementById("push-names").value);
  const type = document.getElementById("push-type").value.trim();
  const pushed = { data: document.getElementById("push-data").value };
  if (type) pushed.event = type;
  const body = { events: [pushed] };
  if (to !== "broadcast") {
    if (names.length === 0) {
      text("push-result", `name at least one of the ${to}`);
      return;
    }
    body[to] = names;
  }
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  text("push-result", "pushing…");
  try {
    const response = await fetch("/push", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    const answer = await response.text();
    text("push-result", `${response.status}: ${answer}`);
  } catch (error) {
    text("push-result", `failed: ${error}`);
  }
}

// --- the log of a topic -----------------------------------------------------------------------

let source = null;

function stopLog() {
  if (source) source.close();
  source = null;
  document.getElementById("log-stop").disabled = true;
}

function logEntry(event) {
  const item = document.createElement("li");
  const when = document.createElement("time");
  when.textContent = new Date().toLocaleTimeString();
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = event.type;
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = event.lastEventId;
  const data = document.createElement("pre");
  data.textContent = event.data;
  item.append(when, " ", type, " ", id, data);
  const log = document.getElementById("log");
  log.prepend(item);
  while (log.childElementCount > LOG_ENTRIES) log.lastElementChild.remove();
}

function startLog(event) {
  event.preventDefault();
  stopLog();
  const topic = document.getElementById("log-topic").value.trim();
  const token = document.getElementById("log-token").value.trim(); // kept nowhere
  const params = new URLSearchParams();
  if (topic) params.set("topic", topic);
  if (token) params.set("access_token", token);
  const query = params.toString();
  source = new EventSource(`/events${query ? `?${query}` : ""}`);
  const types = new Set(listOf(document.getElementById("log-types").value));
  types.add("history-gap");
  for (const type of types) source.addEventListener(type, logEntry);
  source.addEventListener("open", () => text("log-state", `listening${topic ? ` to ${topic}` : ""}`));
  source.addEventListener("error", () => {
    text("log-state", source && source.readyState === EventSource.CLOSED
      ? "refused (check the topic and the token)"
      : "reconnecting…");
  });
  document.getElementById("log-stop").disabled = false;
}

// ---------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  charts.push(new Chart(document.getElementById("chart-online"), ["connections", "users"]));
  charts.push(new Chart(document.getElementById("chart-topics"), ["topics"]));
  charts.push(new Chart(document.getElementById("chart-rates"), ["pushes", "deliveries"]));
  for (const chart of charts) chart.draw();
  window.addEventListener("resize", () => charts.forEach((chart) => chart.draw()));
  document.getElementById("push-form").addEventListener("submit", push);
  document.getElementById("log-form").addEventListener("submit", startLog);
  document.getElementById("log-stop").addEventListener("click", () => {
    stopLog();
    text("log-state", "stopped");
  });
  openFeed();
});
