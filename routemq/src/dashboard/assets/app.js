// routemq dashboard. Job data goes into the page only as text nodes, never parsed as markup.
"use strict";

const REFRESH_MS = 2000;
let session = null;
let timer = null;
// Bumped at each navigation: an answer that arrives for an earlier page is dropped.
let generation = 0;
// The navigation whose page is on screen.
let drawn = -1;
// An action's result, shown once instead of the next "updated" line.
let flash = null;

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

async function api(path, options) {
  const init = Object.assign({ headers: {} }, options || {});
  if (init.method === "POST") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = session.csrf;
    init.body = JSON.stringify(init.body || {});
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.status + " " + response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function status(text, error) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("error", !!error);
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return (value * 1000).toFixed(value < 0.01 ? 2 : 1) + " ms";
  return value.toFixed(2) + " s";
}

function localTime(iso) {
  const date = new Date(/(Z|[+-]\d\d:\d\d)$/.test(iso) ? iso : iso + "Z");
  return isNaN(date) ? iso : date.toLocaleString();
}

function page(gen, ...children) {
  if (gen !== generation) return;
  const shown = children.flat().filter((child) => child !== null && child !== undefined && child !== false);
  document.getElementById("page").replaceChildren(...shown);
  drawn = gen;
}

function schedule(gen, fn, ms) {
  if (gen !== generation) return;
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

// ---- overview ----------------------------------------------------------------------------

function chart(minutes) {
  const width = 1200, height = 180, top = 16, bottom = 22;
  const max = Math.max(1, ...minutes.map(m => m.succeeded + m.failed));
  const slot = width / minutes.length;
  const plot = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "jobs per minute, last hour" });
  const scale = (n) => (n / max) * (height - top - bottom);
  minutes.forEach((m, i) => {
    const x = i * slot + 1, w = Math.max(1, slot - 2);
    const ok = scale(m.succeeded), bad = scale(m.failed);
    const base = height - bottom;
    const label = `${new Date(m.minute).toLocaleTimeString()}: ${m.succeeded} succeeded, ${m.failed} failed`;
    plot.append(svg("rect", { class: "succeeded", x, y: base - ok, width: w, height: ok }, svg("title", {}, label)));
    plot.append(svg("rect", { class: "failed", x, y: base - ok - bad, width: w, height: bad }, svg("title", {}, label)));
  });
  plot.append(svg("text", { x: 0, y: height - 4 }, "-60 min"));
  plot.append(svg("text", { x: width / 2, y: height - 4, "text-anchor": "middle" }, "-30 min"));
  plot.append(svg("text", { x: width, y: height - 4, "text-anchor": "end" }, "now"));
  plot.append(svg("text", { x: width, y: 11, "text-anchor": "end" }, `${max} jobs/min`));
  return plot;
}

function queueTable(queues, now) {
  if (!queues.length) return h("p", { class: "muted" }, "No queues yet.");
  return h("table", { id: "queues" },
    h("thead", {}, h("tr", {}, h("th", {}, "Queue"), ["Ready", "Delayed", "Reserved", "Failed"].map(t => h("th", { class: "num" }, t)), h("th", { class: "num" }, "Oldest ready"))),
    h("tbody", {}, queues.map(q => h("tr", { "data-queue": q.queue },
      h("td", {}, q.queue),
      h("td", { class: "num ready" }, q.ready),
      h("td", { class: "num delayed" }, q.delayed),
      h("td", { class: "num reserved" }, q.reserved),
      h("td", { class: "num failed" + (q.failed ? " bad" : "") }, q.failed ? h("a", { href: "#/failed?queue=" + encodeURIComponent(q.queue) }, q.failed) : 0),
      h("td", { class: "num age" }, q.ready ? ago(q.oldest_ready_age_seconds * 1000) : "–")))));
}

function workerTable(data) {
  if (!data.workers_recorded) return h("p", { class: "muted" }, "This driver does not record workers.");
  if (data.workers_error) return h("p", { class: "bad" }, "Cannot read the workers' records: ", data.workers_error);
  const shown = data.workers.filter(w => w.state !== "stopped");
  const stopped = data.workers.length - shown.length;
  const note = stopped ? h("p", { class: "muted" }, `${stopped} worker(s) stopped in the last hour.`) : null;
  if (!shown.length) return h("div", {}, h("p", { class: "muted" }, "No worker is running."), note);
  return h("div", {}, h("table", { id: "workers" },
    h("thead", {}, h("tr", {}, ["State", "Host", "PID", "Queues", "Concurrency", "Holding", "Processed", "Failed", "Started"].map(t => h("th", { title: t === "Holding" ? "jobs running or reserved ahead" : null }, t)))),
    h("tbody", {}, shown.map(w => h("tr", { "data-worker": w.id },
      h("td", {}, h("span", { class: "pill " + w.state }, w.state)),
      h("td", {}, w.host), h("td", {}, w.pid), h("td", {}, w.queues.join(", ")),
      h("td", { class: "num" }, w.concurrency), h("td", { class: "num" }, w.running),
      h("td", { class: "num processed" }, w.processed), h("td", { class: "num" }, w.failed),
      h("td", { title: new Date(w.started_at).toLocaleString() }, ago(data.now - w.started_at) + " ago"))))), note);
}

async function showOverview(gen) {
  const data = await api("api/overview");
  const done = data.throughput.reduce((n, m) => n + m.succeeded, 0);
  const failed = data.throughput.reduce((n, m) => n + m.failed, 0);
  page(gen,
    h("h1", {}, "Overview"),
    h("section", { class: "card" }, queueTable(data.queues, data.now)),
    h("h2", {}, "Jobs per minute, last hour"),
    h("section", { class: "card" },
      h("div", { class: "legend" },
        h("span", {}, h("i", { class: "swatch ok" }), `succeeded (${done})`),
        h("span", {}, h("i", { class: "swatch bad" }), `failed attempts (${failed})`)),
      chart(data.throughput)),
    h("h2", {}, "Workers"),
    h("section", { class: "card" }, workerTable(data)));
  schedule(gen, () => refresh(showOverview, gen), REFRESH_MS);
}

// ---- failed jobs -------------------------------------------------------------------------

function params() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

function go(path, query) {
  const q = query ? query.toString() : "";
  const hash = path + (q ? "?" + q : "");
  // The same hash fires no hashchange: load the page again ourselves.
  if (location.hash === hash) navigate();
  else location.hash = hash;
}

function options(values, selected, all) {
  // A value chosen in the address stays shown even when this page's jobs do not have it.
  const choices = selected && !values.includes(selected) ? values.concat([selected]) : values;
  return [h("option", { value: "" }, all)].concat(choices.map(v => h("option", { value: v, selected: v === selected }, v)));
}

async function act(label, path, body, after) {
  if (!confirm(label)) return;
  try {
    const result = await api(path, { method: "POST", body });
    flash = Object.entries(result).map(([k, v]) => `${k}: ${v}`).join(", ");
    status(flash);
    after();
  } catch (error) {
    status(error.message, true);
  }
}

async function showFailed(gen) {
  const query = params();
  const data = await api("api/failed?" + query.toString());
  const form = h("form", { id: "failed-filter", class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("select", { name: "queue", onchange: () => apply() }, options(data.queues, query.get("queue") || "", "All queues")),
    h("select", { name: "job", onchange: () => apply() }, options(data.job_types, query.get("job") || "", "All job types")),
    h("select", { name: "hours", onchange: () => apply() },
      [["", "Any time"], ["1", "Last hour"], ["24", "Last 24 hours"], ["168", "Last 7 days"]].map(([v, t]) => h("option", { value: v, selected: (query.get("hours") || "") === v }, t))),
    h("input", { type: "search", name: "q", placeholder: "Search id, error or payload", value: query.get("q") || "" }),
    h("button", { type: "submit" }, "Search"));
  function apply() {
    const next = new URLSearchParams();
    for (const field of ["queue", "job", "hours", "q"]) {
      const value = form.elements[field].value.trim();
      if (value) next.set(field, value);
    }
    go("#/failed", next);
  }
  const queue = query.get("queue") || "";
  const scope = queue ? `queue ${queue}` : "every queue";
  // Retry all and flush act on whole queues: offered only when no other filter narrows the list.
  const narrowed = ["job", "hours", "q"].some((field) => query.get(field));
  const again = () => refresh(showFailed, gen);
  const actions = session.read_only ? null : h("div", { class: "actions" },
    h("button", { class: "retry-all primary", disabled: !data.total || narrowed, onclick: () => act(`Retry every failed job of ${scope}?`, "api/failed/retry-all", { queue }, again) }, "Retry all"),
    h("button", { class: "flush danger", disabled: !data.total || narrowed, onclick: () => act(`Delete every failed job of ${scope}? This cannot be undone.`, "api/failed/flush", { queue }, again) }, "Flush"),
    narrowed ? h("span", { class: "muted" }, "Retry all and Flush act on whole queues: clear the job type, time and search filters to use them.") : null);
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  const turn = (n) => { const next = new URLSearchParams(query); next.set("page", n); go("#/failed", next); };
  page(gen,
    h("h1", {}, "Failed jobs"),
    form,
    actions,
    data.total ? h("table", { id: "failed-list" },
      h("thead", {}, h("tr", {}, ["ID", "Queue", "Job", "Exception", "Failed at"].map(t => h("th", {}, t)))),
      h("tbody", { id: "failed-rows" }, data.items.map(row => h("tr", { class: "clickable", "data-id": row.id, onclick: () => go("#/failed/" + encodeURIComponent(row.id)) },
        h("td", {}, row.id), h("td", {}, row.queue), h("td", {}, row.job),
        h("td", { class: "exception" }, row.exception), h("td", {}, localTime(row.failed_at))))))
      : h("p", { class: "muted", id: "failed-empty" }, "No failed jobs match."),
    data.capped ? h("p", { class: "muted", id: "failed-capped" }, `Searching the newest ${data.scanned} failed jobs; older ones are left out.`) : null,
    h("div", { class: "pager" },
      h("button", { disabled: data.page <= 1, onclick: () => turn(data.page - 1) }, "← Newer"),
      h("span", { class: "muted" }, `${data.total} job(s), page ${data.page} of ${pages}`),
      h("button", { disabled: data.page >= pages, onclick: () => turn(data.page + 1) }, "Older →")));
}

async function showFailedJob(id, gen) {
  const job = await api("api/failed/" + encodeURIComponent(id));
  const back = () => go("#/failed");
  page(gen,
    h("h1", {}, "Failed job ", job.id),
    h("section", { class: "card", id: "failed-detail" },
      h("dl", { class: "facts" },
        h("dt", {}, "Job"), h("dd", {}, job.job),
        h("dt", {}, "Queue"), h("dd", {}, job.queue),
        h("dt", {}, "Connection"), h("dd", {}, job.connection),
        h("dt", {}, "Max tries"), h("dd", {}, job.max_tries === null ? "–" : job.max_tries),
        h("dt", {}, "Failed at"), h("dd", {}, localTime(job.failed_at), " (", ago(job.age_seconds * 1000), " ago)")),
      session.read_only ? null : h("div", { class: "actions" },
        h("button", { class: "retry primary", onclick: () => act(`Retry failed job ${job.id}?`, "api/failed/" + encodeURIComponent(job.id) + "/retry", {}, back) }, "Retry"),
        h("button", { class: "forget danger", onclick: () => act(`Delete failed job ${job.id}? This cannot be undone.`, "api/failed/" + encodeURIComponent(job.id) + "/forget", {}, back) }, "Forget")),
      h("h2", {}, "Exception"), h("pre", { class: "exception" }, job.exception),
      job.data === null ? null : [h("h2", {}, "Data"), h("pre", { class: "data" }, job.data)],
      h("h2", {}, "Envelope"), h("pre", { class: "payload" }, job.payload)),
    h("p", {}, h("a", { href: "#/failed" }, "← All failed jobs")));
}

// ---- job types, batches, schedules -------------------------------------------------------

async function showTypes(gen) {
  const { items: types, workers_error: error } = await api("api/job-types");
  page(gen,
    h("h1", {}, "Job types"),
    h("p", { class: "muted" }, "Runs of the last 10–20 minutes, summed over the workers of the last hour."),
    error ? h("p", { class: "bad" }, "Cannot read the workers' records: ", error) : null,
    types.length ? h("table", { id: "job-types" },
      h("thead", {}, h("tr", {}, ["Job", "Queue", "Max tries", "Timeout", "Retry after", "Runs", "Failure rate", "p50", "p95", "Defined at"].map(t => h("th", {}, t)))),
      h("tbody", {}, types.map(t => {
        const d = t.declared || {};
        return h("tr", { "data-job": t.name },
          h("td", {}, t.name, t.linked ? null : h("span", { class: "muted" }, " (not linked here)")),
          h("td", {}, d.queue || "–"), h("td", { class: "num" }, d.max_tries ?? "–"),
          h("td", { class: "num" }, d.timeout !== undefined ? d.timeout + " s" : "–"),
          h("td", { class: "num" }, d.retry_after !== undefined ? d.retry_after + " s" + (d.backoff ? " (backoff)" : "") : "–"),
          h("td", { class: "num runs" }, t.runs),
          h("td", { class: "num rate" + (t.failures ? " bad" : "") }, t.failure_rate === null ? "–" : (t.failure_rate * 100).toFixed(1) + " %"),
          h("td", { class: "num p50" }, seconds(t.p50_seconds)), h("td", { class: "num p95" }, seconds(t.p95_seconds)),
          h("td", { class: "muted" }, d.defined_at || ""));
      }))) : h("p", { class: "muted" }, "No job types are linked into this binary, and no worker ran any in the last hour."));
  schedule(gen, () => refresh(showTypes, gen), REFRESH_MS * 2);
}

async function showBatches(gen) {
  const data = await api("api/batches");
  if (!data.supported) { page(gen, h("h1", {}, "Batches"), h("p", { class: "muted" }, "This driver does not store batches.")); return; }
  page(gen,
    h("h1", {}, "Batches"),
    data.items.length ? h("table", { id: "batches" },
      h("thead", {}, h("tr", {}, ["Batch", "Name", "Progress", "Total", "Pending", "Processed", "Failed", "Created", "Finished"].map(t => h("th", {}, t)))),
      h("tbody", {}, data.items.map(b => {
        const done = b.total ? Math.round(100 * (b.processed + b.failed + b.cancelled) / b.total) : 100;
        return h("tr", { "data-batch": b.id },
          h("td", {}, b.id), h("td", {}, b.name || ""),
          h("td", {}, h("progress", { max: 100, value: done }), ` ${done}%`),
          h("td", { class: "num" }, b.total), h("td", { class: "num" }, b.pending), h("td", { class: "num" }, b.processed),
          h("td", { class: "num" + (b.failed ? " bad" : "") }, b.failed),
          h("td", {}, localTime(b.created_at)), h("td", {}, b.cancelled_at ? "cancelled" : b.finished_at ? localTime(b.finished_at) : "–"));
      }))) : h("p", { class: "muted" }, "No batches."));
  schedule(gen, () => refresh(showBatches, gen), REFRESH_MS * 2);
}

async function showSchedules(gen) {
  const data = await api("api/schedules");
  page(gen,
    h("h1", {}, "Schedules"),
    data.items.length ? h("table", { id: "schedules" },
      h("thead", {}, h("tr", {}, ["Name", "Job", "Cron", "Time zone", "Queue", "Next run", "Last run"].map(t => h("th", {}, t)))),
      h("tbody", {}, data.items.map(s => h("tr", {},
        h("td", {}, s.name), h("td", {}, s.job), h("td", {}, h("code", {}, s.cron)), h("td", {}, s.timezone),
        h("td", {}, s.queue || "(the job's)"), h("td", {}, s.next_run ? localTime(s.next_run) : "–"),
        h("td", {}, s.last_run ? localTime(s.last_run) : "–")))))
      : h("p", { class: "muted" }, "No schedules are served here: this binary registers none (routemq::cli::App::schedule), or this is queue-work without --schedule."));
}

// ---- routing -----------------------------------------------------------------------------

async function refresh(show, gen) {
  try {
    await show(gen);
    if (gen === generation) {
      status(flash || "updated " + new Date().toLocaleTimeString());
      flash = null;
    }
  } catch (error) {
    if (gen !== generation) return;
    status(error.message, true);
    // Never leave the previous page's content under this page's tab.
    if (drawn !== gen) page(gen, h("p", { class: "bad", id: "load-error" }, "Cannot load this page: ", error.message));
    if (error.status !== 404) schedule(gen, () => refresh(show, gen), REFRESH_MS * 2);
  }
}

function navigate() {
  clearTimeout(timer);
  const gen = ++generation;
  const path = (location.hash || "#/").split("?")[0];
  const name = path.startsWith("#/failed") ? "failed" : path === "#/types" ? "types" : path === "#/batches" ? "batches" : path === "#/schedules" ? "schedules" : "overview";
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === name);
  if (path.startsWith("#/failed/")) {
    const id = decodeURIComponent(path.slice("#/failed/".length));
    return refresh((g) => showFailedJob(id, g), gen);
  }
  return refresh({ failed: showFailed, types: showTypes, batches: showBatches, schedules: showSchedules, overview: showOverview }[name], gen);
}

async function start() {
  try {
    session = await api("api/session");
  } catch (error) {
    status(error.message, true);
    page(generation, h("p", { class: "bad" }, "Cannot reach the dashboard API: ", error.message));
    return;
  }
  document.getElementById("connection").textContent = `${session.connection} (${session.driver})${session.read_only ? " · read-only" : ""}`;
  window.addEventListener("hashchange", navigate);
  navigate();
}

start();
