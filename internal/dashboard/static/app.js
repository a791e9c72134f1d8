// Sparrow dashboard: metric charts (uPlot), stage timeline, config differences and the rollout viewer,
// over the JSON APIs of internal/dashboard. Plain JS, no framework.
"use strict";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const GROUPS = ["loss", "reward", "actor", "rollout", "staleness", "timing_s", "eval", "dsa", "bus", "moe", "other"];
const POLL_MS = 2000;

const state = {
  runs: [],        // /api/runs .runs
  since: [],       // per run: records read so far
  series: [],      // per run: Map metric -> Map x -> y
  offsets: [],     // per run: {order: [stage], max: {stage: step}, off: {stage: offset}}
  charts: new Map(), // metric -> {u, el}
  polls: 0,
};

function colour(i) { return COLOURS[i % COLOURS.length]; }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k == null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
  return r.json();
}

// groupOf names the chart group of a metric.
function groupOf(name) {
  if (name === "loss" || name === "lr" || name === "grad_norm" || name.startsWith("loss")) return "loss";
  const i = name.indexOf("/");
  const p = i < 0 ? "" : name.slice(0, i);
  return GROUPS.includes(p) ? p : "other";
}

function fmtDur(ms) {
  if (ms < 10000) return (ms / 1000).toFixed(2) + "s";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
}

function fmtNum(v) {
  if (v == null) return "—";
  if (Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0)) return v.toExponential(2);
  return (+v.toPrecision(4)).toString();
}

// ---- runs: legend, timeline, config differences ----

function renderRuns(data) {
  state.runs = data.runs;
  const legend = document.getElementById("runs-legend");
  legend.replaceChildren(...data.runs.map((r, i) =>
    el("span", { class: "legend-run" }, el("span", { class: "sw", style: "background:" + colour(i) }), r.name)));
  renderTimeline(data.runs);
  renderConfig(data);
}

function renderTimeline(runs) {
  const box = document.getElementById("timeline");
  let maxDur = 1;
  for (const r of runs) {
    if (!r.stages.length) continue;
    const t0 = Date.parse(r.stages[0].start);
    for (const s of r.stages) maxDur = Math.max(maxDur, Date.parse(s.end) - t0);
  }
  const rows = runs.map((r, i) => {
    const track = el("div", { class: "tl-track" });
    if (r.stages.length) {
      const t0 = Math.min(...r.stages.map(s => Date.parse(s.start)));
      r.stages.forEach((s, k) => {
        const a = Date.parse(s.start) - t0, b = Date.parse(s.end) - t0;
        const label = `${s.name} · steps ${s.first_step}–${s.last_step} · ${fmtDur(b - a)}`;
        const bar = el("div", { class: "tl-bar", title: label,
          style: `left:${100 * a / maxDur}%;width:${Math.max(0.5, 100 * (b - a) / maxDur)}%;background:${colour(i)};opacity:${k % 2 ? 0.7 : 1}` }, label);
        track.append(bar);
      });
    } else {
      track.append(el("span", { class: "hint" }, " no records yet"));
    }
    return el("div", { class: "tl-row" }, el("div", { class: "tl-name", title: r.dir }, r.name), track);
  });
  box.replaceChildren(...rows);
}

function renderConfig(data) {
  const box = document.getElementById("config");
  if (data.runs.length < 2) {
    box.replaceChildren(el("p", { class: "hint" }, "one run: add more run directories to compare their config.yaml"));
    return;
  }
  if (!data.config || !data.config.length) {
    box.replaceChildren(el("p", { class: "hint" }, "the runs' config.yaml files do not differ"));
    return;
  }
  const head = el("tr", {}, el("th", {}, "key"), ...data.runs.map((r, i) =>
    el("th", {}, el("span", { class: "sw", style: "background:" + colour(i) }), r.name)));
  const rows = data.config.map(d => el("tr", {}, el("td", {}, d.key), ...d.values.map(v => el("td", {}, v))));
  box.replaceChildren(el("table", {}, head, ...rows));
}

// ---- metrics ----

// xOf maps a record's (stage, step) to the run's global step: each stage continues after the steps of the
// stages before it.
function xOf(run, stage, step) {
  const o = state.offsets[run];
  if (!(stage in o.off)) {
    let off = 0;
    for (const s of o.order) off += o.max[s] || 0;
    o.order.push(stage);
    o.off[stage] = off;
    o.max[stage] = 0;
  }
  o.max[stage] = Math.max(o.max[stage], step);
  return o.off[stage] + step;
}

function addRecords(run, recs) {
  const touched = new Set();
  const ser = state.series[run];
  for (const r of recs) {
    const x = xOf(run, r.stage, r.step);
    for (const [k, v] of Object.entries(r.values)) {
      if (!ser.has(k)) ser.set(k, new Map());
      ser.get(k).set(x, v);
      touched.add(k);
    }
  }
  return touched;
}

function chartData(metric) {
  const xs = new Set();
  for (const ser of state.series) {
    const m = ser.get(metric);
    if (m) for (const x of m.keys()) xs.add(x);
  }
  const xsorted = [...xs].sort((a, b) => a - b);
  const data = [xsorted];
  for (const ser of state.series) {
    const m = ser.get(metric);
    data.push(xsorted.map(x => (m && m.has(x) ? m.get(x) : null)));
  }
  return data;
}

function groupBox(g) {
  let box = document.getElementById("group-" + g);
  if (box) return box.querySelector(".charts");
  const container = document.getElementById("groups");
  box = el("div", { id: "group-" + g, class: "group-box", "data-order": GROUPS.indexOf(g) },
    el("h3", {}, g === "loss" ? "loss · lr · grad_norm" : g + "/"), el("div", { class: "charts" }));
  const after = [...container.children].find(c => +c.dataset.order > GROUPS.indexOf(g));
  container.insertBefore(box, after || null);
  return box.querySelector(".charts");
}

// yRange pads a series' range; a range below float precision (is_ratio_mean: 1 ± 1e-8) is widened, since
// uPlot's ticks cannot step through it.
function yRange(u, min, max) {
  if (min == null || max == null || !isFinite(min) || !isFinite(max)) return [0, 1];
  const span = max - min, mag = Math.max(Math.abs(min), Math.abs(max));
  if (span <= mag * 1e-6 || span === 0) {
    const pad = mag > 0 ? mag * 1e-3 : 1;
    return [min - pad, max + pad];
  }
  return [min - span * 0.05, max + span * 0.05];
}

function ensureChart(metric) {
  const data = chartData(metric);
  const c = state.charts.get(metric);
  if (c) { c.u.setData(data); return; }
  const holder = el("div", { class: "chart", "data-metric": metric }, el("div", { class: "title" }, metric));
  const charts = groupBox(groupOf(metric));
  const after = [...charts.children].find(ch => ch.dataset.metric > metric);
  charts.insertBefore(holder, after || null);
  const opts = {
    width: 316, height: 170,
    scales: { x: { time: false }, y: { range: yRange } },
    legend: { show: true, live: true }, // the values under the cursor
    cursor: { points: { size: 6 } },
    series: [{ label: "step" }, ...state.runs.map((r, i) => ({
      label: r.name, stroke: colour(i), width: 1.5, spanGaps: true,
      points: { show: data[0].length < 40, size: 4, fill: colour(i) },
      value: (u, v) => fmtNum(v),
    }))],
    axes: [{}, { size: 72, values: (u, vals) => vals.map(fmtNum) }],
  };
  const u = new uPlot(opts, data, holder);
  state.charts.set(metric, { u, el: holder });
}

async function pollMetrics() {
  const touched = new Set();
  for (let i = 0; i < state.runs.length; i++) {
    const m = await getJSON(`api/metrics?run=${i}&since=${state.since[i]}`);
    if (m.reset) { // the run was resumed and its file trimmed: start over
      state.series[i] = new Map();
      state.offsets[i] = { order: [], max: {}, off: {} };
      for (const k of state.charts.keys()) touched.add(k);
    }
    state.since[i] = m.next;
    for (const k of addRecords(i, m.records)) touched.add(k);
  }
  for (const k of [...touched].sort()) ensureChart(k);
}

// ---- rollouts ----

// lpColour: green for a likely token (log π_old near 0) through yellow to red for log π_old <= -8.
function lpColour(lp) {
  const t = Math.min(1, Math.max(0, 1 + lp / 8));
  return `hsl(${Math.round(120 * t)},70%,80%)`;
}

function advColour(a, scale) {
  if (a == null) return "transparent";
  const t = Math.min(1, Math.abs(a) / (scale || 1));
  return `hsl(${a >= 0 ? 120 : 0},70%,${Math.round(96 - 22 * t)}%)`;
}

// tokenSpans renders the tokens [from, to) of a completion.
function tokenSpans(toks, from, to, byAdv, adv, advScale) {
  const out = [];
  for (let k = from; k < to; k++) {
    const t = toks[k];
    const p = Math.exp(t.lp);
    const title = `token ${k}: log π_old ${t.lp.toFixed(3)} (p ${p.toFixed(3)})` + (adv != null ? `, advantage ${fmtNum(adv)}` : "");
    const bg = byAdv ? advColour(adv, advScale) : lpColour(t.lp);
    out.push(el("span", { class: "tok", title, style: "background:" + bg }, t.t === "" ? "⟨eos⟩" : t.t));
  }
  return out;
}

const THINK_END = "</think>";
const TOOL_RE = /<[^<>]*(function_calls|tool_calls?|invoke)[^<>]*>/;

// conversation renders one completion as messages: the user prompt, the reasoning (up to </think>), the
// answer after it and, when it calls tools, the calls. Tokens (train lines) are coloured spans.
function conversation(prompt, text, toks, byAdv, adv, advScale) {
  const msgs = [el("div", { class: "msg user" }, el("span", { class: "role" }, "user"), prompt || "")];
  const te = text.indexOf(THINK_END);
  const ansStart = te < 0 ? (text.includes("<think>") ? text.length : 0) : te + THINK_END.length;
  const tm = text.slice(ansStart).search(TOOL_RE);
  const toolStart = tm < 0 ? text.length : ansStart + tm;
  const parts = [
    { cls: "reasoning", role: "assistant · reasoning", a: 0, b: ansStart },
    { cls: "answer", role: "assistant · answer", a: ansStart, b: toolStart },
    { cls: "tool", role: "assistant · tool calls", a: toolStart, b: text.length },
  ];
  // token ranges of each part by character offset (a token straddling a boundary stays with the earlier part)
  // token ranges of each part by the token's start offset (a token straddling a boundary stays with the
  // earlier part; the end-of-sentence token, at the end, with the last part that has text)
  const bounds = parts.map(() => [0, 0]);
  if (toks && toks.length) {
    let last = 0;
    parts.forEach((p, j) => { if (p.b > p.a) last = j; });
    let pos = 0;
    const owner = toks.map(t => {
      let j = parts.findIndex(p => pos < p.b);
      if (j < 0) j = last;
      pos += t.t.length;
      return j;
    });
    parts.forEach((p, j) => {
      const ks = owner.map((o, k) => (o === j ? k : -1)).filter(k => k >= 0);
      if (ks.length) bounds[j] = [ks[0], ks[ks.length - 1] + 1];
    });
  }
  parts.forEach((part, j) => {
    const hasText = part.b > part.a;
    const hasToks = toks && toks.length && bounds[j][1] > bounds[j][0];
    if (!hasText && !hasToks) return;
    const body = hasToks ? tokenSpans(toks, bounds[j][0], bounds[j][1], byAdv, adv, advScale) : [text.slice(part.a, part.b)];
    msgs.push(el("div", { class: "msg " + part.cls }, el("span", { class: "role" }, part.role), ...body));
  });
  return msgs;
}

function renderRollouts(data) {
  const box = document.getElementById("rollouts");
  const byAdv = document.getElementById("ro-colour").value === "adv";
  if (!data.lines.length) {
    box.replaceChildren(el("p", { class: "hint" }, "no rollouts of this kind logged (rl.log_samples N writes them)"));
    return;
  }
  const items = data.lines.map(line => {
    if (line.kind === "eval") {
      return el("div", { class: "group" },
        el("div", { class: "group-head" }, `eval task ${line.id} · ${line.env} · reference answer ${line.answer} · reward ${fmtNum(line.reward)} · ${line.correct ? "correct" : "wrong"} · ${line.finish_reason}`),
        el("div", { class: "completion" }, ...conversation(line.prompt, line.completion || "", null, false, null, 1)));
    }
    const comps = line.completions || [];
    const mean = comps.reduce((s, c) => s + c.reward, 0) / Math.max(1, comps.length);
    const advScale = Math.max(1e-9, ...comps.map(c => Math.abs(c.advantage || 0)));
    const head = el("div", { class: "group-head" },
      `group ${line.group_id} · ${line.env} · policy version ${line.policy_version}` +
      (line.answer ? ` · reference answer ${line.answer}` : "") + ` · mean reward ${fmtNum(mean)} · ${comps.length} completions`);
    const cs = comps.map((c, k) => {
      const parts = c.reward_parts ? Object.entries(c.reward_parts).map(([n, v]) => `${n} ${fmtNum(v)}`).join(", ") : "";
      return el("div", { class: "completion" },
        el("div", { class: "completion-head" }, el("b", {}, `#${k + 1}`), `reward ${fmtNum(c.reward)}`,
          parts ? el("span", { class: "parts" }, ` (${parts})`) : null,
          ` · advantage ${fmtNum(c.advantage)} · ${c.length} tokens · ${c.finish_reason}`),
        ...conversation(line.prompt, c.text, c.tokens, byAdv, c.advantage, advScale));
    });
    return el("div", { class: "group" }, head, ...cs);
  });
  box.replaceChildren(...items);
}

let lastRollouts = null;

async function loadRollouts(keepStep) {
  const run = document.getElementById("ro-run").value;
  const kind = document.getElementById("ro-kind").value;
  if (run === "") return;
  const sel = document.getElementById("ro-step");
  let q = `api/rollouts?run=${run}&kind=${kind}`;
  if (keepStep && sel.value) {
    const [stage, step] = JSON.parse(sel.value);
    q += `&stage=${encodeURIComponent(stage)}&step=${step}`;
  }
  const data = await getJSON(q);
  fillSteps(data, kind);
  lastRollouts = data;
  renderRollouts(data);
}

// fillSteps lists the steps of the kind in the step selector, the answer's step selected.
function fillSteps(data, kind) {
  const sel = document.getElementById("ro-step");
  const steps = data.steps.filter(s => s.kind === kind);
  sel.replaceChildren(...steps.map(s => {
    const o = el("option", { value: JSON.stringify([s.stage, s.step]) }, `${s.stage} · step ${s.step} (${s.lines})`);
    if (s.stage === data.stage && s.step === data.step) o.selected = true;
    return o;
  }));
}

// refreshRollouts, while a run runs: new steps join the selector; the shown step is re-drawn only when it
// had no lines yet (the newest step is shown once there is one).
async function refreshRollouts() {
  const run = document.getElementById("ro-run").value;
  const kind = document.getElementById("ro-kind").value;
  const sel = document.getElementById("ro-step");
  if (run === "") return;
  if (!lastRollouts || !lastRollouts.lines.length || !sel.value) return loadRollouts(false);
  const [stage, step] = JSON.parse(sel.value);
  const data = await getJSON(`api/rollouts?run=${run}&kind=${kind}&stage=${encodeURIComponent(stage)}&step=${step}`);
  fillSteps(data, kind);
}

function setupRollouts() {
  const sel = document.getElementById("ro-run");
  sel.replaceChildren(...state.runs.map((r, i) => el("option", { value: String(i) }, r.name)));
  const first = state.runs.findIndex(r => r.rollouts);
  if (first >= 0) sel.value = String(first);
  sel.onchange = () => loadRollouts(false).catch(showError);
  document.getElementById("ro-kind").onchange = () => loadRollouts(false).catch(showError);
  document.getElementById("ro-step").onchange = () => loadRollouts(true).catch(showError);
  const colourSel = document.getElementById("ro-colour");
  if (new URLSearchParams(location.search).get("colour") === "adv") colourSel.value = "adv"; // ?colour=adv
  colourSel.onchange = () => lastRollouts && renderRollouts(lastRollouts);
  return loadRollouts(false);
}

// ---- main loop ----

function showError(e) {
  document.getElementById("status").textContent = "error: " + e.message;
  console.error(e);
}

async function tick() {
  try {
    if (state.polls % 5 === 0) {
      renderRuns(await getJSON("api/runs"));
      await refreshRollouts();
    }
    await pollMetrics();
    state.polls++;
    const n = state.since.reduce((a, b) => a + b, 0);
    document.getElementById("status").textContent = `${state.runs.length} run(s) · ${n} records · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    showError(e);
  }
}

async function main() {
  try {
    renderRuns(await getJSON("api/runs"));
    state.since = state.runs.map(() => 0);
    state.series = state.runs.map(() => new Map());
    state.offsets = state.runs.map(() => ({ order: [], max: {}, off: {} }));
    state.polls = 1;
    await pollMetrics();
    await setupRollouts();
    document.getElementById("status").textContent = `${state.runs.length} run(s) · live`;
    if (location.hash) { // #SECTION puts that section first (a page built after the browser looked for the anchor)
      const target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "SECTION") target.parentNode.prepend(target);
    }
  } catch (e) {
    showError(e);
  }
  setInterval(tick, POLL_MS);
}

main();
