// The delivery console (docs/CONSOLE.md). Everything shown comes from the documented admin API
// (spec/openapi.yaml) and every button calls it; the console keeps no state on the hub. Text
// from agents and receivers is untrusted: it only ever reaches the page as text nodes.
"use strict";

const TOKEN_KEY = "a2a-push-hub.admin-token";
const TENANT_KEY = "a2a-push-hub.tenant";
const main = document.getElementById("main");
const statusLine = document.getElementById("status");

// ---- small helpers -------------------------------------------------------------------------

/** An element with attributes and children (strings become text nodes, never markup). */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const svgNs = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const node = document.createElementNS(svgNs, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function badge(text) {
  return h("span", { class: `badge ${String(text).toLowerCase()}` }, text);
}

function when(iso) {
  if (!iso) return "—";
  const date = typeof iso === "number" ? new Date(iso) : new Date(iso);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function number(n) {
  return Number(n).toLocaleString("en-US");
}

function table(caption, headers, rows) {
  return h("div", { class: "scroll" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((name) =>
        h("th", { scope: "col", class: name.endsWith("#") ? "num" : null }, name.replace(/#$/, "") || h("span", { class: "skip" }, "Actions"))))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing to show.")))));
}

function say(message, isError) {
  statusLine.textContent = message;
  statusLine.classList.toggle("error", Boolean(isError));
}

function tenant() {
  return sessionStorage.getItem(TENANT_KEY) || "";
}

function shortState(state) {
  return String(state || "").replace(/^TASK_STATE_/, "").toLowerCase().replace(/_/g, "-");
}

// ---- the admin API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

class NeedsToken extends Error {}

function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** Calls the admin API; a problem+json answer becomes an ApiError with its detail. */
async function api(path, options) {
  const opts = options || {};
  const init = { method: opts.method || "GET", headers: authHeaders(opts.headers), cache: "no-store" };
  if (opts.method && opts.method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body || {});
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new NeedsToken();
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!response.ok) {
    const detail = body && typeof body === "object" ? (body.detail || body.title) : text;
    throw new ApiError(response.status, `${response.status}: ${detail || response.statusText}`);
  }
  return opts.text ? text : body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** A listing's query: across every tenant, or only the one in the header. */
function listQuery(params, everyTenant) {
  const search = new URLSearchParams(query(params).slice(1));
  if (!everyTenant) search.set("tenant", tenant());
  const text = search.toString();
  return text ? `?${text}` : "";
}

function tenantQuery(extra) {
  const params = Object.assign({}, extra);
  const search = new URLSearchParams(query(params).slice(1));
  search.set("tenant", tenant());
  return `?${search.toString()}`;
}

// ---- pages and routing ---------------------------------------------------------------------

let timers = [];
let streams = [];
let generation = 0;

function stopLive() {
  timers.forEach(clearInterval);
  streams.forEach((controller) => controller.abort());
  timers = [];
  streams = [];
}

/** Calls `refresh` every `ms` while this page is shown and the tab is visible. */
function every(ms, refresh) {
  const mine = generation;
  timers.push(setInterval(() => {
    if (mine === generation && document.visibilityState === "visible") refresh().catch(handleError);
  }, ms));
}

function handleError(error) {
  if (error instanceof NeedsToken) {
    showLogin();
  } else if (error && error.name === "AbortError") {
    // A stream of a page left behind.
  } else {
    say(error.message || String(error), true);
  }
}

const routes = [
  [/^\/overview$/, overviewPage],
  [/^\/tasks$/, tasksPage],
  [/^\/task\/([^/]*)\/(.+)$/, taskPage],
  [/^\/dead$/, deadPage],
  [/^\/configs$/, configsPage],
  [/^\/inbound$/, inboundPage],
  [/^\/inbound\/(.+)$/, subscriptionPage],
  [/^\/keys$/, keysPage],
];

async function route() {
  stopLive();
  generation += 1;
  const path = location.hash.replace(/^#/, "") || "/overview";
  const [pattern, page] = routes.find(([pattern]) => pattern.test(path)) || routes[0];
  const args = (path.match(pattern) || []).slice(1).map(decodeURIComponent);
  const section = path.split("/")[1];
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.dataset.page === section || (section === "task" && link.dataset.page === "tasks");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  try {
    await page(...args);
    const heading = main.querySelector("h1");
    if (heading) document.title = `${heading.textContent} · a2a-push-hub`;
    main.focus({ preventScroll: true });
  } catch (error) {
    handleError(error);
  }
}

function render(...children) {
  main.replaceChildren(...children.flat());
}

function showLogin() {
  stopLive();
  document.getElementById("sign-out").hidden = true;
  const input = h("input", { id: "admin-token", type: "password", autocomplete: "off", required: true });
  render(h("section", { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Admin token needed"),
    h("p", {}, "This hub's admin API asks for its ", h("code", {}, "server.admin_token"),
      ". It is kept in this tab only (session storage) and sent as ", h("code", {}, "Authorization: Bearer"), "."),
    h("form", {
      onsubmit: (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value);
        document.getElementById("sign-out").hidden = false;
        route();
      },
    }, h("label", { for: "admin-token" }, "Admin token"), input,
    h("button", { type: "submit", class: "primary" }, "Sign in"))));
  say(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "", Boolean(sessionStorage.getItem(TOKEN_KEY)));
  input.focus();
}

// ---- overview ------------------------------------------------------------------------------

/** Prometheus text → { "name{labels}": value }. */
function parseMetrics(text) {
  const values = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    values[line.slice(0, space)] = Number(line.slice(space + 1));
  }
  return values;
}

const SAMPLES = 150;
let samples = [];

function histogram(values, name) {
  const buckets = [];
  for (const [key, value] of Object.entries(values)) {
    const match = key.match(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`));
    if (match) buckets.push([match[1] === "+Inf" ? Infinity : Number(match[1]), value]);
  }
  return buckets.sort((a, b) => a[0] - b[0]);
}

/** The bucket bound under which `q` of the attempts between two samples fell, in ms. */
function quantile(before, after, q) {
  const total = after.length ? after[after.length - 1][1] - (before[before.length - 1] || [0, 0])[1] : 0;
  if (total <= 0) return null;
  for (let i = 0; i < after.length; i += 1) {
    const count = after[i][1] - (before[i] ? before[i][1] : 0);
    if (count >= q * total) return after[i][0] * 1000;
  }
  return null;
}

function sample(values) {
  return {
    at: Date.now(),
    delivered: values['a2a_push_hub_deliveries_total{outcome="delivered"}'] || 0,
    failed: (values['a2a_push_hub_deliveries_total{outcome="retry"}'] || 0) +
      (values['a2a_push_hub_deliveries_total{outcome="dead"}'] || 0),
    buckets: histogram(values, "a2a_push_hub_attempt_duration_seconds"),
  };
}

function rates(from, to) {
  const seconds = Math.max((to.at - from.at) / 1000, 0.001);
  return {
    delivered: Math.max(to.delivered - from.delivered, 0) / seconds,
    failed: Math.max(to.failed - from.failed, 0) / seconds,
    p50: quantile(from.buckets, to.buckets, 0.5),
    p99: quantile(from.buckets, to.buckets, 0.99),
  };
}

function card(label, value, tone) {
  return h("div", { class: `card ${tone || ""}` }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function ms(value) {
  if (value === null || value === undefined) return "—";
  return value === Infinity ? "> 30 s" : value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

/** A line chart of up to two series over the samples' times; described for screen readers. */
function chart(title, unit, series) {
  const width = 600;
  const height = 160;
  const pad = { left: 44, right: 8, top: 8, bottom: 20 };
  const all = series.flatMap((one) => one.values.filter((v) => v !== null && Number.isFinite(v)));
  const top = Math.max(1, ...all) * 1.1;
  const count = Math.max(...series.map((one) => one.values.length), 2);
  const x = (i) => pad.left + (i / (count - 1)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const latest = series.map((one) => `${one.name} ${format(one.values[one.values.length - 1], unit)}`).join(", ");
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}: now ${latest}` },
    s("line", { class: "axis", x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom }),
    s("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom }),
    s("text", { x: 2, y: pad.top + 10 }, format(top, unit)),
    s("text", { x: 2, y: height - pad.bottom }, "0"),
    s("text", { x: pad.left, y: height - 4 }, `last ${Math.round((count * 2) / 60 * 10) / 10} min`));
  series.forEach((one, index) => {
    const points = one.values.map((v, i) => (v === null || !Number.isFinite(v) ? null : `${x(i)},${y(v)}`)).filter(Boolean);
    if (points.length) svg.append(s("polyline", { class: `s${index}`, points: points.join(" ") }));
  });
  return h("figure", {}, h("figcaption", {}, title), svg,
    h("div", { class: "legend" }, series.map((one, index) => h("span", { class: `k${index}` }, `${one.name}: ${format(one.values[one.values.length - 1], unit)}`))));
}

function format(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return unit === "ms" ? ms(value) : `${value >= 10 ? Math.round(value) : value.toFixed(1)}${unit}`;
}

async function overviewPage() {
  samples = [];
  const refresh = async () => {
    const [metricsText, origins, dead, disabled, suspended] = await Promise.all([
      api("/metrics", { text: true }),
      api("/api/v1/origins"),
      api(`/api/v1/deliveries${tenantQuery({ state: "dead", limit: 100 })}`),
      api(`/api/v1/configs${listQuery({ state: "disabled", limit: 100 }, false)}`),
      api(`/api/v1/configs${listQuery({ state: "suspended", limit: 100 }, false)}`),
    ]);
    const values = parseMetrics(metricsText);
    samples.push(sample(values));
    if (samples.length > SAMPLES) samples.shift();
    const series = samples.slice(1).map((now, i) => rates(samples[i], now));
    const now = series.length ? series[series.length - 1] : { delivered: null, failed: null, p50: null, p99: null };
    const open = (origins.origins || []).filter((o) => o.circuit && o.circuit.state !== "closed");
    const deadCount = dead.deliveries.length + (dead.nextCursor ? "+" : "");
    const counted = (page) => page.configs.length + (page.nextCursor ? "+" : "");
    const total = (outcome) => values[`a2a_push_hub_deliveries_total{outcome="${outcome}"}`] || 0;
    render(
      h("h1", {}, "Overview"),
      h("section", { "aria-labelledby": "now-title" },
        h("h2", { id: "now-title" }, "Now"),
        h("div", { class: "cards", id: "overview-cards" },
          card("Pending", number(values.a2a_push_hub_deliveries_pending || 0)),
          card("Due, not yet attempted", number(values.a2a_push_hub_deliveries_due || 0)),
          card("Oldest due", `${(values.a2a_push_hub_delivery_lag_seconds || 0).toFixed(1)} s`,
            (values.a2a_push_hub_delivery_lag_seconds || 0) > 5 ? "warn" : ""),
          card("In flight", number(values.a2a_push_hub_attempts_in_flight || 0)),
          card("Delivered / s", format(now.delivered, "")),
          card("Failed attempts / s", format(now.failed, ""), now.failed > 0 ? "warn" : ""),
          card("Latency p50 / p99", `${ms(now.p50)} / ${ms(now.p99)}`),
          card("Open circuits", number(open.length), open.length ? "bad" : ""),
          card("Dead letters", deadCount, dead.deliveries.length ? "bad" : ""),
          card("Disabled configs", counted(disabled), disabled.configs.length ? "bad" : ""),
          card("Suspended configs", counted(suspended), suspended.configs.length ? "warn" : ""))),
      h("p", { class: "muted" }, `Since this node started: ${number(total("delivered"))} delivered, `,
        `${number(total("retry"))} attempts to retry, ${number(total("dead"))} dead. `,
        "Rates and latency are measured between refreshes (every 2 s) from ", h("code", {}, "/metrics"), "; ",
        "dead letters and configs count the tenant in the header."),
      h("section", { "aria-labelledby": "plots-title" },
        h("h2", { id: "plots-title" }, "Over time"),
        h("div", { class: "charts" },
          chart("Delivery rate", "/s", [
            { name: "delivered", values: series.map((r) => r.delivered) },
            { name: "failed", values: series.map((r) => r.failed) }]),
          chart("Attempt latency", "ms", [
            { name: "p50", values: series.map((r) => r.p50) },
            { name: "p99", values: series.map((r) => r.p99) }]))),
      h("section", { "aria-labelledby": "circuits-title" },
        h("h2", { id: "circuits-title" }, "Open circuits"),
        table("Origins whose circuit breaker is open or probing on this node",
          ["Origin", "State", "Failures#", "Last failure", "Pending#"],
          open.map((o) => h("tr", {},
            h("td", { class: "mono" }, o.origin), h("td", {}, badge(o.circuit.state)),
            h("td", { class: "num" }, number(o.consecutiveFailures)),
            h("td", {}, o.lastFailure ? `${o.lastFailure.errorClass}${o.lastFailure.status ? ` ${o.lastFailure.status}` : ""} at ${when(o.lastFailure.at)}` : "—"),
            h("td", { class: "num" }, number(o.pending.count)))))),
      h("section", { "aria-labelledby": "dead-title" },
        h("h2", { id: "dead-title" }, "Newest dead letters"),
        deadTable(dead.deliveries.slice(-10).reverse(), null)),
    );
  };
  await refresh();
  every(2000, refresh);
}

// ---- tasks ---------------------------------------------------------------------------------

function taskLink(tenantName, taskId) {
  return h("a", { href: `#/task/${encodeURIComponent(tenantName)}/${encodeURIComponent(taskId)}` }, taskId);
}

async function tasksPage() {
  const q = h("input", { id: "task-q", name: "q", autocomplete: "off", spellcheck: "false" });
  const state = h("select", { id: "task-state", name: "state" },
    ["", "submitted", "working", "input-required", "auth-required", "completed", "failed", "canceled", "rejected"]
      .map((value) => h("option", { value }, value || "any")));
  const everyTenant = h("input", { id: "task-all-tenants", type: "checkbox", checked: true });
  const results = h("div", { id: "task-results" });
  let cursor = null;
  const search = async (more) => {
    const page = await api(`/api/v1/tasks${listQuery({
      q: q.value.trim(), state: state.value, limit: 50, after: more ? cursor : null,
    }, everyTenant.checked)}`);
    cursor = page.nextCursor;
    const rows = page.tasks.map((t) => h("tr", {},
      h("td", { class: "mono" }, taskLink(t.tenant, t.taskId)),
      h("td", { class: "mono" }, t.tenant || "(default)"),
      h("td", {}, badge(shortState(t.state))),
      h("td", { class: "num" }, number(t.lastSequence)),
      h("td", { class: "num" }, number(t.artifacts)),
      h("td", {}, when(t.updatedAt))));
    const list = table(`${page.tasks.length} task${page.tasks.length === 1 ? "" : "s"}${cursor ? " (more below)" : ""}`,
      ["Task", "Tenant", "State", "Events#", "Artifacts#", "Updated"], rows);
    results.querySelector(".actions")?.remove();
    if (more) results.append(list); else results.replaceChildren(list);
    if (cursor) results.append(h("div", { class: "actions" }, h("button", { type: "button", onclick: () => search(true).catch(handleError) }, "More tasks")));
  };
  render(
    h("h1", {}, "Tasks"),
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); search(false).catch(handleError); } },
      h("div", {}, h("label", { for: "task-q" }, "Task id contains"), q),
      h("div", {}, h("label", { for: "task-state" }, "State"), state),
      h("div", {}, h("label", { for: "task-all-tenants" }, "Every tenant"), everyTenant),
      h("div", {}, h("button", { type: "submit", class: "primary" }, "Search"))),
    results);
  await search(false);
}

function eventSummary(event) {
  if (event.statusUpdate) return `status → ${shortState(event.statusUpdate.status && event.statusUpdate.status.state)}`;
  if (event.artifactUpdate) {
    const artifact = event.artifactUpdate.artifact || {};
    const parts = (artifact.parts || []).length;
    return `artifact ${artifact.name || artifact.artifactId || ""} (${parts} part${parts === 1 ? "" : "s"})`;
  }
  if (event.task) return `task snapshot, ${shortState(event.task.status && event.task.status.state)}`;
  if (event.message) return "message";
  return "event";
}

function attemptItem(attempt) {
  return h("li", {},
    h("strong", {}, `#${attempt.number}`), " ", when(attempt.startedAt), " · ",
    attempt.status ? `HTTP ${attempt.status}` : "no answer", " · ", `${attempt.durationMs} ms`, " · ",
    badge(attempt.errorClass),
    attempt.error ? h("div", { class: "muted" }, attempt.error) : null,
    (attempt.credentials || []).length ? h("div", { class: "mono" }, attempt.credentials.join(" · ")) : null,
    attempt.responseSnippet ? h("div", { class: "muted" }, "answer: ", h("code", {}, attempt.responseSnippet)) : null);
}

async function replayOne(id) {
  await api(`/api/v1/deliveries/${encodeURIComponent(id)}/replay`, { method: "POST" });
  say(`Delivery ${id} replayed: it is attempted once more, in its lane's order.`);
}

function deliveryRow(delivery, attempts, onChange, openIds) {
  // Open by default where something went wrong; a person's own opening or closing wins.
  const open = openIds.has(delivery.id) || (!openIds.closed.has(delivery.id) && delivery.state !== "delivered" && delivery.attempts > 0);
  const details = h("details", { "data-delivery": delivery.id, open },
    h("summary", {}, `Attempts (${delivery.attempts})`),
    attempts ? h("ul", { class: "attempts" }, attempts.map(attemptItem)) : h("p", { class: "muted" }, "Loading…"));
  details.addEventListener("toggle", async () => {
    if (details.open) { openIds.add(delivery.id); openIds.closed.delete(delivery.id); } else { openIds.delete(delivery.id); openIds.closed.add(delivery.id); }
    if (details.open && !attempts) {
      const detail = await api(`/api/v1/deliveries/${encodeURIComponent(delivery.id)}`).catch(handleError);
      if (detail) details.replaceChildren(details.firstChild, h("ul", { class: "attempts" }, detail.attemptLog.map(attemptItem)));
    }
  });
  const replayable = delivery.state !== "pending" && delivery.state !== "skipped";
  return h("tr", { "data-delivery-row": delivery.id },
    h("td", { class: "mono" }, delivery.configId),
    h("td", {}, badge(delivery.state), delivery.manualReplay ? h("span", { class: "muted" }, " (replay)") : null),
    h("td", {}, delivery.nextAttemptAt ? when(delivery.nextAttemptAt) : "—"),
    h("td", {}, delivery.lastError ? h("span", { class: "muted" }, delivery.lastError) : "—", details),
    h("td", {}, replayable ? h("button", {
      type: "button", "aria-label": `Replay delivery ${delivery.sequence} to ${delivery.configId}`,
      onclick: () => replayOne(delivery.id).then(onChange).catch(handleError),
    }, "Replay") : null));
}

async function taskPage(tenantName, taskId) {
  const tq = (extra) => `?${new URLSearchParams(Object.assign({ tenant: tenantName }, extra)).toString()}`;
  const openIds = new Set();
  openIds.closed = new Set();
  let shown = "";
  const refresh = async () => {
    const [view, events, deliveries] = await Promise.all([
      api(`/api/v1/tasks/${encodeURIComponent(taskId)}${tq({})}`),
      api(`/api/v1/tasks/${encodeURIComponent(taskId)}/events${tq({ limit: 1000 })}`),
      api(`/api/v1/deliveries${tq({ taskId, limit: 1000 })}`),
    ]);
    const fingerprint = JSON.stringify([view, events.events.length, deliveries.deliveries]);
    if (fingerprint === shown) return;
    shown = fingerprint;
    // Attempt logs up front for a short task, on opening a delivery for a long one.
    const eager = deliveries.deliveries.length <= 40;
    const details = eager
      ? await Promise.all(deliveries.deliveries.map((d) => api(`/api/v1/deliveries/${encodeURIComponent(d.id)}`)))
      : [];
    const attemptsOf = new Map(details.map((d) => [d.id, d.attemptLog]));
    const bySequence = new Map();
    for (const delivery of deliveries.deliveries) {
      if (!bySequence.has(delivery.sequence)) bySequence.set(delivery.sequence, []);
      bySequence.get(delivery.sequence).push(delivery);
    }
    const sequences = new Set([...events.events.map((e) => e.sequence), ...bySequence.keys()]);
    const eventOf = new Map(events.events.map((e) => [e.sequence, e]));
    const counts = view.deliveries || {};
    const state = view.task ? shortState(view.task.status && view.task.status.state) : "no events yet";
    const replayDead = async () => {
      const outcome = await api(`/api/v1/deliveries:replay${tq({})}`, { method: "POST", body: { taskId, state: "dead" } });
      say(`Replayed ${outcome.replayed.length} dead deliveries${outcome.refused.length ? `; refused ${outcome.refused.length}: ${outcome.refused.map((r) => r.reason).join("; ")}` : ""}.`);
      await refresh();
    };
    const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
    render(
      h("h1", {}, "Task ", h("span", { class: "mono" }, taskId)),
      h("dl", { class: "facts" },
        h("dt", {}, "Tenant"), h("dd", {}, tenantName || "(default)"),
        h("dt", {}, "State"), h("dd", { id: "task-state-now" }, badge(state)),
        h("dt", {}, "Context"), h("dd", { class: "mono" }, (view.task && view.task.contextId) || "—"),
        h("dt", {}, "Events"), h("dd", {}, number(view.lastSequence)),
        h("dt", {}, "Deliveries"), h("dd", { id: "task-counts" },
          Object.entries(counts).map(([name, n]) => `${name} ${n}`).join(" · ")),
        h("dt", {}, "Configs"), h("dd", {}, view.configs.map((c) => h("div", {},
          h("span", { class: "mono" }, c.id), " → ", h("span", { class: "mono" }, c.url), " ", badge(c.state))))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", disabled: !counts.dead, onclick: () => replayDead().catch(handleError) },
          `Replay all dead (${counts.dead || 0})`)),
      h("h2", {}, "Timeline"),
      h("ol", { class: "timeline", id: "timeline" }, [...sequences].sort((a, b) => a - b).map((sequence) => {
        const event = eventOf.get(sequence);
        return h("li", { "data-sequence": sequence },
          h("div", { class: "event" }, `#${sequence} `, event ? eventSummary(event.event) : "(event no longer stored)",
            event ? h("span", { class: "muted" }, ` · ${when(event.receivedAt)}`) : null),
          event ? h("details", {}, h("summary", {}, "Event JSON"), h("pre", {}, JSON.stringify(event.event, null, 2))) : null,
          table(`Deliveries of event #${sequence}`, ["Config", "State", "Next attempt", "Last error / attempts", ""],
            (bySequence.get(sequence) || []).map((d) => deliveryRow(d, eager ? attemptsOf.get(d.id) : null, refresh, openIds))));
      })),
    );
    if (focused) {
      const again = [...main.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === focused);
      if (again) again.focus();
    }
  };
  await refresh();
  every(3000, refresh);
}

// ---- dead letters --------------------------------------------------------------------------

function deadTable(deliveries, selected) {
  return table(`${deliveries.length} dead deliver${deliveries.length === 1 ? "y" : "ies"}`,
    [selected ? "Select" : null, "Task", "Config", "Seq#", "Attempts#", "Last error", "Dead since", ""].filter(Boolean),
    deliveries.map((d) => h("tr", { "data-delivery-row": d.id },
      selected ? h("td", {}, h("input", {
        type: "checkbox", "aria-label": `Select delivery ${d.sequence} of ${d.taskId} to ${d.configId}`,
        onchange: (e) => (e.target.checked ? selected.add(d.id) : selected.delete(d.id)),
      })) : null,
      h("td", { class: "mono" }, taskLink(d.tenant, d.taskId)),
      h("td", { class: "mono" }, d.configId),
      h("td", { class: "num" }, number(d.sequence)),
      h("td", { class: "num" }, number(d.attempts)),
      h("td", { class: "muted" }, d.lastError || "—"),
      h("td", {}, when(d.updatedAt)),
      h("td", {}, h("button", {
        type: "button", "aria-label": `Replay delivery ${d.sequence} of ${d.taskId} to ${d.configId}`,
        onclick: () => replayOne(d.id).catch(handleError),
      }, "Replay")))));
}

function isoFrom(input) {
  return input.value ? new Date(input.value).toISOString() : "";
}

async function deadPage() {
  const taskId = h("input", { id: "dead-task", autocomplete: "off", spellcheck: "false" });
  const configId = h("input", { id: "dead-config", autocomplete: "off", spellcheck: "false" });
  const after = h("input", { id: "dead-after", type: "datetime-local" });
  const before = h("input", { id: "dead-before", type: "datetime-local" });
  const results = h("div", { id: "dead-results" });
  const selected = new Set();
  const filter = () => ({
    taskId: taskId.value.trim(), configId: configId.value.trim(),
    createdAfter: isoFrom(after), createdBefore: isoFrom(before),
  });
  const search = async () => {
    selected.clear();
    const page = await api(`/api/v1/deliveries${tenantQuery(Object.assign({ state: "dead", limit: 500 }, filter()))}`);
    results.replaceChildren(deadTable(page.deliveries, selected),
      page.nextCursor ? h("p", { class: "muted" }, "More than 500 match: narrow the filter, or replay all matching.") : "");
  };
  const replaySelected = async () => {
    const ids = [...selected];
    if (!ids.length) { say("Select the deliveries to replay first."); return; }
    for (const id of ids) await api(`/api/v1/deliveries/${encodeURIComponent(id)}/replay`, { method: "POST" });
    say(`Replayed ${ids.length} selected deliver${ids.length === 1 ? "y" : "ies"}.`);
    await search();
  };
  const replayMatching = async () => {
    const body = Object.fromEntries(Object.entries(Object.assign({ state: "dead" }, filter())).filter(([, v]) => v));
    const outcome = await api(`/api/v1/deliveries:replay${tenantQuery({})}`, { method: "POST", body });
    say(`Replayed ${outcome.replayed.length} dead deliveries${outcome.refused.length ? `, refused ${outcome.refused.length}` : ""}${outcome.more ? "; more match, replay again" : ""}.`);
    await search();
  };
  render(
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Deliveries that used up their retries, or whose receiver answered 410 Gone. A replay attempts each once more, in its lane's order."),
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); search().catch(handleError); } },
      h("div", {}, h("label", { for: "dead-task" }, "Task id"), taskId),
      h("div", {}, h("label", { for: "dead-config" }, "Config id"), configId),
      h("div", {}, h("label", { for: "dead-after" }, "Created after"), after),
      h("div", {}, h("label", { for: "dead-before" }, "Created before"), before),
      h("div", {}, h("button", { type: "submit", class: "primary" }, "Filter"))),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => replaySelected().catch(handleError) }, "Replay selected"),
      h("button", { type: "button", class: "danger", onclick: () => replayMatching().catch(handleError) }, "Replay all matching")),
    results);
  await search();
}

// ---- configs -------------------------------------------------------------------------------

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

function windowText(w) {
  if (!w) return "—";
  const latency = w.latencyMs ? `, p50 ${w.latencyMs.p50} ms, p99 ${w.latencyMs.p99} ms` : "";
  return `${w.attempts} attempts, ${w.succeeded} succeeded, ${w.failed} failed${latency}`;
}

async function configsPage() {
  const q = h("input", { id: "config-q", autocomplete: "off", spellcheck: "false" });
  const state = h("select", { id: "config-state" }, ["", "active", "suspended", "disabled"].map((v) => h("option", { value: v }, v || "any")));
  const everyTenant = h("input", { id: "config-all-tenants", type: "checkbox", checked: true });
  const results = h("div", { id: "config-results" });
  const search = async () => {
    const page = await api(`/api/v1/configs${listQuery({ q: q.value.trim(), state: state.value, limit: 200 }, everyTenant.checked)}`);
    results.replaceChildren(table(`${page.configs.length} config${page.configs.length === 1 ? "" : "s"}`,
      ["Task", "Config", "URL", "State", "Receives", "Credentials", ""],
      page.configs.flatMap((c) => {
        const panel = h("tr", { hidden: true }, h("td", { colspan: 7 }));
        const base = `/api/v1/tasks/${encodeURIComponent(c.taskId)}/configs/${encodeURIComponent(c.id)}`;
        const tq = `?tenant=${encodeURIComponent(c.tenant)}`;
        const showHealth = async () => {
          const health = await api(`${base}/health${tq}`);
          panel.hidden = false;
          panel.firstChild.replaceChildren(h("h3", {}, `Health of ${c.id}`), facts([
            ["State", badge(health.state)],
            ["Failing streak", health.consecutiveFailures ? `${health.consecutiveFailures} failures since ${when(health.failingSince)}` : "none"],
            ["Last failure", health.lastFailure ? `${health.lastFailure.errorClass}${health.lastFailure.status ? ` ${health.lastFailure.status}` : ""} at ${when(health.lastFailure.at)}` : "—"],
            ["Suspends at", health.suspendsAt ? when(health.suspendsAt) : "—"],
            ["Last success", when(health.lastSuccessAt)],
            ["Last hour", windowText(health.windows["1h"])],
            ["Last day", windowText(health.windows["24h"])],
            ["Pending", `${health.pending.count}${health.pending.oldest ? `, oldest ${when(health.pending.oldest)}` : ""}`],
            ["Circuit", health.circuit ? badge(health.circuit.state) : "—"],
          ]));
        };
        const enable = async () => {
          await api(`${base}:enable${tq}`, { method: "POST" });
          say(`Config ${c.id} is active again; its held deliveries are due now, in order.`);
          await search();
        };
        const auth = [c.hasToken ? "token" : null, c.authenticationScheme ? `${c.authenticationScheme}${c.hasCredentials ? "" : " (hub JWT)"}` : null].filter(Boolean).join(", ");
        return [h("tr", {},
          h("td", { class: "mono" }, taskLink(c.tenant, c.taskId)),
          h("td", { class: "mono" }, c.id),
          h("td", { class: "mono" }, c.url),
          h("td", {}, badge(c.state)),
          h("td", {}, c.filter.events || "matching a pattern"),
          h("td", {}, auth || "none"),
          h("td", {}, h("div", { class: "actions" },
            h("button", { type: "button", "aria-label": `Health of config ${c.id}`, onclick: () => showHealth().catch(handleError) }, "Health"),
            c.state !== "active" ? h("button", { type: "button", "aria-label": `Enable config ${c.id}`, onclick: () => enable().catch(handleError) }, "Enable") : null))),
        panel];
      })));
  };
  render(
    h("h1", {}, "Push configs"),
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); search().catch(handleError); } },
      h("div", {}, h("label", { for: "config-q" }, "Task id contains"), q),
      h("div", {}, h("label", { for: "config-state" }, "State"), state),
      h("div", {}, h("label", { for: "config-all-tenants" }, "Every tenant"), everyTenant),
      h("div", {}, h("button", { type: "submit", class: "primary" }, "Search"))),
    results);
  await search();
}

// ---- inbound -------------------------------------------------------------------------------

function requirements(sub) {
  return [
    sub.hasToken ? "token" : null,
    sub.authenticationScheme ? `Authorization ${sub.authenticationScheme}` : null,
    sub.jwksUrl ? "JWT (peer JWKS)" : null,
    sub.hasWebhookSecret || (sub.webhookPublicKeys || []).length ? "signature" : null,
  ].filter(Boolean).join(", ") || "nothing";
}

async function inboundPage() {
  const results = h("div", { id: "subscription-results" });
  let cursor = null;
  const load = async (more) => {
    const page = await api(`/api/v1/subscriptions?limit=100${more ? `&after=${encodeURIComponent(cursor)}` : ""}`);
    cursor = page.nextCursor;
    const count = page.subscriptions.length;
    const list = table(`${count} subscription${count === 1 ? "" : "s"}${cursor ? " (more below)" : ""}`,
      ["Subscription", "Task", "Requires", "Forwards to", "Agent"],
      page.subscriptions.map((sub) => h("tr", {},
        h("td", { class: "mono" }, h("a", { href: `#/inbound/${encodeURIComponent(sub.id)}` }, sub.id)),
        h("td", { class: "mono" }, sub.taskId || "any"),
        h("td", {}, requirements(sub)),
        h("td", { class: "mono" }, sub.forwardTo || "—"),
        h("td", { class: "mono" }, sub.agent ? sub.agent.url : "—"))));
    results.querySelector(".actions")?.remove();
    if (more) results.append(list); else results.replaceChildren(list);
    if (cursor) results.append(h("div", { class: "actions" }, h("button", { type: "button", onclick: () => load(true).catch(handleError) }, "More subscriptions")));
  };
  render(
    h("h1", {}, "Inbound subscriptions"),
    h("p", { class: "muted" }, "Where peer agents push; each push is verified before it is accepted."),
    results);
  await load(false);
}

/** Reads a server-sent event stream with the admin token (EventSource cannot send one). */
async function follow(path, onEvent) {
  const controller = new AbortController();
  streams.push(controller);
  const response = await fetch(path, { headers: authHeaders({ Accept: "text/event-stream" }), signal: controller.signal });
  if (response.status === 401) throw new NeedsToken();
  if (!response.ok || !response.body) throw new ApiError(response.status, `${response.status}: the event stream was refused`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) {
        try { onEvent(JSON.parse(data)); } catch (_) { /* a comment or keep-alive */ }
      }
    }
  }
}

function receiptRow(r) {
  return h("tr", { "data-receipt": r.number },
    h("td", { class: "num" }, number(r.number)),
    h("td", {}, when(r.receivedAtMs)),
    h("td", {}, badge(r.verdict), h("span", { class: "muted" }, ` ${r.status}`)),
    h("td", { class: "mono" }, r.taskId || "—"),
    h("td", {}, h("ul", { class: "attempts" }, (r.checks || []).map((c) =>
      h("li", {}, c.passed ? "✔ " : "✘ ", h("strong", {}, c.name), `: ${c.detail}`)))),
    h("td", {}, h("ul", { class: "attempts" }, (r.notes || []).map((n) => h("li", {}, n)))));
}

async function subscriptionPage(id) {
  const base = `/api/v1/subscriptions/${encodeURIComponent(id)}`;
  const sub = await api(base);
  const stream = h("ul", { class: "stream", id: "live-events", "aria-live": "polite", "aria-relevant": "additions" });
  const receipts = h("div", { id: "receipts" });
  const refresh = async () => {
    const page = await api(`${base}/receipts`);
    const newest = page.receipts.slice().reverse();
    receipts.replaceChildren(table(`${page.receipts.length} receipts, newest first`,
      ["No.#", "Received", "Verdict", "Task", "Checks", "Conformance notes"], newest.map(receiptRow)));
  };
  render(
    h("h1", {}, "Subscription ", h("span", { class: "mono" }, id)),
    facts([
      ["Push URL", h("span", { class: "mono" }, sub.url)],
      ["Task", sub.taskId || "any"],
      ["Requires", requirements(sub)],
      ["Freshness", `${sub.toleranceSeconds} s`],
      ["Forwards to", sub.forwardTo || "—"],
      ["Agent", sub.agent ? `${sub.agent.url} (${sub.agent.binding})` : "—"],
    ]),
    h("h2", {}, "Accepted events, live"),
    stream,
    h("h2", {}, "Receipts"),
    receipts);
  await refresh();
  every(3000, refresh);
  follow(`${base}/events`, (item) => {
    stream.prepend(h("li", { "data-sequence": item.sequence },
      h("strong", {}, `#${item.sequence}`), " ", h("span", { class: "mono" }, item.taskId), " · ",
      item.event ? eventSummary(item.event) : "event", " · ", when(item.receivedAtMs)));
  }).catch(handleError);
}

// ---- keys ----------------------------------------------------------------------------------

async function keysPage() {
  const list = await api("/api/v1/keys");
  const rotate = async () => {
    if (!window.confirm("Rotate the signing keys? New keys sign from now on; the old ones stay in the JWKS for the grace period.")) return;
    await api("/api/v1/keys:rotate", { method: "POST" });
    say("Signing keys rotated.");
    await keysPage();
  };
  render(
    h("h1", {}, "Signing keys"),
    h("p", { class: "muted" }, "Private keys never leave the hub; receivers verify with the public JWKS below, served at ",
      h("code", {}, "/.well-known/jwks.json"), " on the public listener."),
    table(`${list.keys.length} keys`, ["Key id", "Algorithm", "State", "Created", "Retires"],
      list.keys.map((k) => h("tr", { "data-kid": k.kid },
        h("td", { class: "mono" }, k.kid), h("td", {}, k.alg), h("td", {}, badge(k.state)),
        h("td", {}, when(k.createdAtMs)), h("td", {}, k.retireAtMs ? when(k.retireAtMs) : "—")))),
    h("div", { class: "actions" }, h("button", { type: "button", class: "danger", onclick: () => rotate().catch(handleError) }, "Rotate keys")),
    h("h2", {}, "Published JWKS"),
    h("p", { class: "muted" }, `${(list.jwks.keys || []).length} public keys, as receivers fetch them.`),
    h("pre", { id: "jwks" }, JSON.stringify(list.jwks, null, 2)));
}

// ---- start ---------------------------------------------------------------------------------

const tenantInput = document.getElementById("tenant");
tenantInput.value = tenant();
document.getElementById("tenant-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TENANT_KEY, tenantInput.value.trim());
  route();
});
tenantInput.addEventListener("change", () => {
  sessionStorage.setItem(TENANT_KEY, tenantInput.value.trim());
  route();
});
const signOut = document.getElementById("sign-out");
signOut.hidden = !sessionStorage.getItem(TOKEN_KEY);
signOut.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  signOut.hidden = true;
  route();
});
window.addEventListener("hashchange", () => {
  signOut.hidden = !sessionStorage.getItem(TOKEN_KEY);
  route();
});
route();
