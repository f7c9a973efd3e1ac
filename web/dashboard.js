// Model dashboard for ops and the data team: everything is read from the admin API with the key
// typed in (kept for this browser tab only), every few seconds.
"use strict";

const KEY = "admin_api_key";
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let previousEvents = null;  // {at, total} of the last poll: the event rate is the difference
let timer = null;
let plotShown = false;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function admin(path) {
  const response = await fetch(path, {headers: {"X-API-Key": sessionStorage.getItem(KEY) || ""}});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(`${response.status} ${body.title || ""}: ${body.detail || ""}`);
    error.status = response.status;
    throw error;
  }
  return response;
}

// Version names are the UTC time they were trained: 20261128T233209864493Z.
function versionTime(version) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(version || "");
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

function age(date) {
  if (!date) return "?";
  const seconds = Math.max(0, (Date.now() - date.getTime()) / 1000);
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

const when = (iso) => iso ? new Date(iso).toLocaleString() : "—";

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  if (className) td.className = className;
  return td;
}

function rows(table, lines) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren(...lines.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

function tile(title, lines) {
  const box = document.createElement("div");
  box.className = "tile";
  const heading = document.createElement("h3");
  heading.textContent = title;
  box.append(heading);
  for (const line of lines) {
    const p = document.createElement("p");
    p.textContent = line;
    box.append(p);
  }
  return box;
}

function renderStatus(status) {
  const workers = status.workers.map((w) => tile(`worker ${w.worker}`, [
    `model ${w.model_version || "none"} (age ${age(versionTime(w.model_version))})`,
    `up since ${when(w.started_at)}, seen ${age(new Date(w.seen_at))} ago`,
  ]));
  const artifacts = tile("artifacts", [
    `current: ${status.artifacts.current || "none"}`,
    `${status.artifacts.on_disk.length} version(s) on disk`,
    status.artifacts.load_error ? `load error: ${status.artifacts.load_error}` : "loads cleanly",
  ]);
  $("models").replaceChildren(artifacts, ...workers);
  rows("jobs", Object.entries(status.jobs).map(([job, s]) => {
    const run = s.last_run;
    return [
      cell(job),
      cell(run ? when(run.started_at) : "never"),
      cell(s.running ? "running" : run ? run.outcome : "—", run && run.outcome),
      cell(run && run.seconds != null ? `${run.seconds.toFixed(1)} s` : ""),
      cell(run ? run.detail : ""),
      cell(when(s.next_run_at)),
    ];
  }));
  rows("variants", status.variants.map((v) => [
    cell(v.name), cell(`${Math.round(v.share * 100)} %`), cell(v.ranker),
    cell(Object.entries(v.weights).map(([k, w]) => `${k} ${w}`).join(", ")),
  ]));
  return status.row_counts;
}

function renderMetrics(summary, counts) {
  const total = Object.values(summary.events_ingested).reduce((a, b) => a + b, 0);
  const now = Date.now();
  let rate = "measuring…";
  if (previousEvents) {
    const seconds = (now - previousEvents.at) / 1000;
    rate = `${((total - previousEvents.total) / seconds).toFixed(1)} events/s now`;
  }
  previousEvents = {at: now, total};
  const byType = Object.entries(summary.events_ingested).map(([t, n]) => `${t}: ${n.toLocaleString()}`);
  const embeddings = Object.entries(summary.query_embeddings).map(([s, n]) => `${s}: ${n.toLocaleString()}`);
  const rankings = Object.entries(summary.home_rankings || {}).map(([s, n]) => `${s}: ${n.toLocaleString()}`);
  $("events").replaceChildren(
    tile("events stored by these workers", [rate, ...byType]),
    tile("rows in the database", Object.entries(counts).map(([k, n]) => `${k}: ${n.toLocaleString()}`)),
    tile("search query embeddings", embeddings.length ? embeddings : ["no search yet"]),
    tile("learned home rankings", rankings.length ? rankings : ["no known-user home yet"]),
  );
  const fmt = (v) => v == null ? "—" : v.toFixed(1);
  rows("latency", summary.routes.filter((r) => r.requests > 0).map((r) => [
    cell(`${r.method} ${r.route}`), cell(r.requests.toLocaleString()),
    cell(fmt(r.p50_ms)), cell(fmt(r.p95_ms)), cell(fmt(r.p99_ms)),
  ]));
}

function metricsTable(section, byName) {
  const table = document.createElement("table");
  const columns = ["hr@10", "ndcg@10", "mrr", "coverage", "diversity", "cases"];
  const head = document.createElement("tr");
  for (const name of [section, ...columns]) {
    const th = document.createElement("th");
    th.textContent = name;
    head.append(th);
  }
  table.append(head);
  for (const [name, m] of Object.entries(byName)) {
    const tr = document.createElement("tr");
    tr.append(cell(name), ...columns.map((c) => cell(
      typeof m[c] === "number" && !Number.isInteger(m[c]) ? m[c].toFixed(4) : m[c])));
    table.append(tr);
  }
  return table;
}

async function renderEvaluation() {
  let evaluation;
  try {
    evaluation = await (await admin("/admin/evaluation")).json();
  } catch (error) {
    if (error.status !== 404) throw error;
    $("evaluation-note").textContent = "No report yet: run python -m ml.evaluate.";
    return;
  }
  const report = evaluation.report;
  $("evaluation-note").textContent =
    `Written ${when(evaluation.written_at)}; split at ${report.cutoff}, ` +
    `${(report.test_events || 0).toLocaleString()} test events.`;
  const tables = ["home", "similar", "search"].filter((s) => report[s])
    .map((s) => metricsTable(s, report[s]));
  $("evaluation").replaceChildren(...tables);
  if (evaluation.has_plot && !plotShown) {
    const blob = await (await admin("/admin/evaluation/plot")).blob();
    $("evaluation-plot").src = URL.createObjectURL(blob);
    $("evaluation-plot").hidden = false;
    plotShown = true;
  }
}

async function refresh() {
  try {
    const status = await (await admin("/admin/status")).json();
    const counts = renderStatus(status);
    renderMetrics(await (await admin("/admin/metrics")).json(), counts);
    await renderEvaluation();
    $("dashboard").hidden = false;
    showError("");
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}; every ${REFRESH_MS / 1000} s.`;
  } catch (error) {
    $("dashboard").hidden = true;
    showError(error.status === 401 ? `Wrong or missing API key (${error.message})` : error.message);
    clearInterval(timer);
    timer = null;
  }
}

function start() {
  clearInterval(timer);
  previousEvents = null;
  refresh().then(() => { if (!$("dashboard").hidden) timer = setInterval(refresh, REFRESH_MS); });
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key-input").value);
  plotShown = false;
  start();
});

if (sessionStorage.getItem(KEY) !== null) start();
else showError("Type the admin API key (ADMIN_API_KEY) to open the dashboard.");
