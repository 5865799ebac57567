// The Plugbus dashboard: plain JavaScript, no build step.
//
// What it shows comes pushed from the coordinator as server-sent events
// (GET /v1/overview for plugins, types and rates; GET /v1/stream for live
// events), read with fetch so that the API token can go along. Instances
// are read a page at a time, only for the plugin that is open. Server data
// reaches the DOM through textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 25;          // plugins and types per page
const INSTANCE_PAGE = 20; // instances per page
const MAX_EVENTS = 200;   // rows kept in the live event list

// ---- helpers ----------------------------------------------------------------

const tokenKey = "plugbus.token";
$("token").value = sessionStorage.getItem(tokenKey) || "";

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = $("token").value.trim();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function emptyRow(body, cols, text) {
  const tr = row([text]);
  tr.firstChild.colSpan = cols;
  tr.firstChild.className = "muted";
  body.replaceChildren(tr);
}

function list(v) { return Array.isArray(v) ? v.join(", ") : (v || ""); }

function badge(s) { return el("span", s || "unknown", "state " + String(s || "").toLowerCase()); }

function ago(t) {
  const ms = Date.parse(t);
  if (!t || isNaN(ms) || ms <= 0) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + "s ago" : s < 3600 ? Math.round(s / 60) + "m ago" : new Date(ms).toLocaleString();
}

function fmtRate(v) { return v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

const SVG = "http://www.w3.org/2000/svg";
function sparkline(values, cls) {
  const wrap = el("span");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark " + cls);
  svg.setAttribute("viewBox", "0 0 90 22");
  const n = values.length;
  const peak = Math.max(0, ...values);
  const pts = values.map((v, i) => {
    const x = n > 1 ? (i * 90) / (n - 1) : 0;
    const y = peak > 0 ? 21 - (v / peak) * 20 : 21;
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.appendChild(line);
  const last = n ? values[n - 1] : 0;
  const title = document.createElementNS(SVG, "title");
  title.textContent = "last " + fmtRate(last) + "/s, peak " + fmtRate(peak) + "/s";
  svg.appendChild(title);
  wrap.append(svg, el("span", fmtRate(last), "spark-label" + (cls === "failed" && last > 0 ? " fail" : "")));
  return wrap;
}

async function errorText(r) {
  const text = await r.text();
  try { const j = JSON.parse(text); if (j && j.error) return r.status + ": " + j.error; } catch (_) { /* not JSON */ }
  return r.status + " " + r.statusText + (text ? ": " + text : "");
}

function setStatus(id, text, bad) {
  $(id).textContent = text;
  $(id).className = bad ? "error" : "muted";
}

// stream reads server-sent events from url with fetch (EventSource cannot
// send the token) and calls on[event](data) for each, until the stream ends
// or signal aborts. It throws the reason it ended.
async function stream(url, on, signal) {
  const r = await fetch(url, { headers: headers(), signal, cache: "no-store" });
  if (!r.ok) throw new Error(await errorText(r));
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the coordinator closed the stream");
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? "" : line.slice(c + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") name = v; else if (field === "data") data.push(v);
      }
      if (data.length && on[name]) on[name](JSON.parse(data.join("\n")));
    }
  }
}

// keep runs start(signal) again whenever it ends, waiting longer after
// each failure (up to 10s), until restart or the page goes. It returns a
// function that restarts it at once.
function keep(start, onError) {
  let ctl = null;
  let wait = 500;
  let generation = 0;
  async function loop(gen) {
    while (gen === generation) {
      ctl = new AbortController();
      const begun = Date.now();
      try {
        await start(ctl.signal);
      } catch (err) {
        if (gen !== generation) return;
        onError(err);
      }
      if (Date.now() - begun > 10000) wait = 500;
      await new Promise((res) => setTimeout(res, wait));
      wait = Math.min(wait * 2, 10000);
    }
  }
  const restart = () => {
    generation++;
    if (ctl) ctl.abort();
    wait = 500;
    loop(generation);
  };
  restart();
  return restart;
}

// ---- plugins, types and rates (GET /v1/overview) ----------------------------

const view = {
  plugins: new Map(),   // name -> summary
  types: new Map(),     // type -> summary
  rates: new Map(),     // plugin -> {handled: [], failed: []}
  typeRates: new Map(), // type -> {handled: [], failed: []}
  samples: 60,
  pluginPage: 0,
  typePage: 0,
  open: null,           // plugin whose instances are shown
  instancePage: 0,
};

function series(map, key) {
  let s = map.get(key);
  if (!s) {
    s = { handled: new Array(view.samples).fill(0), failed: new Array(view.samples).fill(0) };
    map.set(key, s);
  }
  return s;
}

function push(map, keys, points) {
  for (const k of keys) {
    const s = series(map, k);
    const p = (points && points[k]) || [0, 0];
    s.handled.push(p[0]); s.handled.shift();
    s.failed.push(p[1]); s.failed.shift();
  }
}

function onSnapshot(snap) {
  view.samples = snap.samples || 60;
  view.plugins = new Map((snap.plugins || []).map((p) => [p.name, p]));
  view.types = new Map((snap.types || []).map((t) => [t.type, t]));
  view.rates = new Map(Object.entries(snap.rates || {}));
  view.typeRates = new Map(Object.entries(snap.type_rates || {}));
  renderPlugins();
  renderTypes();
  setStatus("status", "live · " + view.plugins.size + " plugins");
}

function onUpdate(u) {
  for (const p of u.changed || []) view.plugins.set(p.name, p);
  for (const n of u.removed || []) { view.plugins.delete(n); view.rates.delete(n); }
  for (const t of u.types_changed || []) view.types.set(t.type, t);
  for (const n of u.types_removed || []) { view.types.delete(n); view.typeRates.delete(n); }
  push(view.rates, view.plugins.keys(), u.rates);
  push(view.typeRates, view.types.keys(), u.type_rates);
  renderPlugins();
  renderTypes();
  if (view.open) loadInstances();
  setStatus("status", "live · " + view.plugins.size + " plugins · " + new Date(u.time).toLocaleTimeString());
}

function pager(id, page, total, size, go) {
  const p = $(id);
  p.replaceChildren();
  if (total <= size) {
    p.textContent = total ? total + " in all" : "";
    return;
  }
  const pages = Math.ceil(total / size);
  const prev = el("button", "‹", "secondary"); prev.type = "button"; prev.disabled = page <= 0;
  const next = el("button", "›", "secondary"); next.type = "button"; next.disabled = page >= pages - 1;
  prev.addEventListener("click", () => go(page - 1));
  next.addEventListener("click", () => go(page + 1));
  p.append(prev, el("span", (page * size + 1) + "–" + Math.min(total, (page + 1) * size) + " of " + total), next);
}

function counts(obj) {
  return Object.entries(obj || {}).filter(([, n]) => n > 0).map(([k, n]) => n + " " + k).join(", ");
}

// handlesCell lists the types a plugin handles, then the ones it answers
// requests for, and flags each one another plugin answers too: an invoke of
// it must name the plugin.
function handlesCell(p) {
  const cell = el("div", list(p.handles));
  if ((p.answers || []).length) cell.append(el("div", "answers " + list(p.answers), "desc answers"));
  for (const a of p.ambiguous || []) {
    const others = a.plugins.filter((n) => n !== p.name);
    cell.append(el("div", "ambiguous: " + a.type + " is also answered by " + others.join(", ") + "; invoke it with ?plugin=", "ambiguous"));
  }
  return cell;
}

function renderPlugins() {
  const body = $("plugins").tBodies[0];
  const filter = $("plugin-filter").value.trim().toLowerCase();
  let names = [...view.plugins.keys()].sort();
  if (filter) {
    names = names.filter((n) => {
      const p = view.plugins.get(n);
      return n.toLowerCase().includes(filter) || (p.handles || []).some((t) => t.toLowerCase().includes(filter));
    });
  }
  const pages = Math.max(1, Math.ceil(names.length / PAGE));
  view.pluginPage = Math.min(view.pluginPage, pages - 1);
  pager("plugin-pager", view.pluginPage, names.length, PAGE, (n) => { view.pluginPage = n; renderPlugins(); });
  if (names.length === 0) {
    emptyRow(body, 9, view.plugins.size ? "no plugin matches the filter" : "no plugins yet");
    return;
  }
  const rows = [];
  for (const name of names.slice(view.pluginPage * PAGE, (view.pluginPage + 1) * PAGE)) {
    const p = view.plugins.get(name);
    const s = series(view.rates, name);
    const title = el("div");
    title.append(el("strong", name));
    if (p.description) title.append(el("div", p.description, "desc"));
    const inst = el("div");
    inst.append(el("span", (p.states && p.states.running || 0) + "/" + p.instances + " running"));
    const modes = el("div");
    for (const [m, n] of Object.entries(p.modes || {})) modes.append(el("span", n + " " + m, "mode"));
    if (p.supervised) modes.append(el("span", p.supervised + " supervised", "mode"));
    if (p.hosts > 1) modes.append(el("span", p.hosts + " hosts", "mode"));
    inst.append(modes);
    const others = counts(Object.fromEntries(Object.entries(p.states || {}).filter(([k]) => k !== "running")));
    if (others) inst.append(el("div", others, "desc"));
    const st = p.stats || {};
    const totals = el("span", (st.handled || 0) + " handled");
    if (st.failed) { totals.append(", "); totals.append(el("span", st.failed + " failed", "fail")); }
    if (st.invalid) totals.append(", " + st.invalid + " invalid");
    const tr = row([title, badge(p.state), inst, list(p.versions), handlesCell(p), list(p.emits),
      sparkline(s.handled, "handled"), sparkline(s.failed, "failed"), totals], "plugin");
    tr.dataset.plugin = name;
    tr.addEventListener("click", () => {
      view.open = view.open === name ? null : name;
      view.instancePage = 0;
      renderPlugins();
      if (view.open) loadInstances();
    });
    rows.push(tr);
    if (view.open === name) {
      const holder = el("tr", null, "instances");
      const td = el("td");
      td.colSpan = 9;
      td.id = "instances-of";
      td.append(instancesTable());
      holder.append(td);
      rows.push(holder);
    }
  }
  body.replaceChildren(...rows);
}

// The open plugin's instances, kept between renders so that a redraw of the
// plugin list does not blank them while a page loads.
let instancesBox = null;
function instancesTable() {
  if (!instancesBox) {
    instancesBox = el("div");
    instancesBox.append(el("div", "loading…", "muted"));
  }
  return instancesBox;
}

let instancesLoading = false;
async function loadInstances() {
  if (instancesLoading) return;
  const name = view.open;
  instancesLoading = true;
  try {
    const url = "/v1/plugins/" + encodeURIComponent(name) + "/instances?offset=" + view.instancePage * INSTANCE_PAGE + "&limit=" + INSTANCE_PAGE;
    const r = await fetch(url, { headers: headers(), cache: "no-store" });
    if (view.open !== name) return;
    if (!r.ok) { instancesTable().replaceChildren(el("div", await errorText(r), "fail")); return; }
    const page = await r.json();
    const table = el("table");
    const head = el("thead");
    head.append(row(["Instance", "State", "Mode", "Host", "Version", "Handled", "Failed", "Started", "Last seen"]));
    for (const th of head.querySelectorAll("td")) th.replaceWith(el("th", th.textContent));
    const body = el("tbody");
    for (const i of page.instances) {
      const id = el("code", i.id);
      const state = el("span");
      state.append(badge(i.state));
      if (i.reason) state.append(el("div", i.reason, "desc"));
      const st = i.stats || {};
      const mode = el("span");
      mode.append(el("span", i.mode || "process", "mode"));
      if (i.supervised) mode.append(el("span", "supervised", "mode"));
      body.append(row([id, state, mode, (i.host || "") + (i.pid ? " (pid " + i.pid + ")" : ""),
        i.version, st.handled || 0, st.failed ? el("span", st.failed, "fail") : "0", ago(i.started), ago(i.last_seen)]));
    }
    table.append(head, body);
    const nav = el("div", null, "bar");
    const pg = el("span", null, "pager");
    pg.id = "instance-pager";
    nav.append(el("strong", name + "'s instances"), el("span", null, "grow"), pg);
    instancesTable().replaceChildren(nav, table);
    pager("instance-pager", view.instancePage, page.total, INSTANCE_PAGE, (n) => { view.instancePage = n; loadInstances(); });
  } catch (err) {
    instancesTable().replaceChildren(el("div", String(err.message || err), "fail"));
  } finally {
    instancesLoading = false;
  }
}

function renderTypes() {
  const body = $("types").tBodies[0];
  const filter = $("type-filter").value.trim().toLowerCase();
  let types = [...view.types.keys()].sort();
  if (filter) types = types.filter((t) => t.toLowerCase().includes(filter));
  const pages = Math.max(1, Math.ceil(types.length / PAGE));
  view.typePage = Math.min(view.typePage, pages - 1);
  pager("type-pager", view.typePage, types.length, PAGE, (n) => { view.typePage = n; renderTypes(); });
  if (types.length === 0) {
    emptyRow(body, 7, view.types.size ? "no type matches the filter" : "no types yet");
    return;
  }
  const rows = [];
  for (const typ of types.slice(view.typePage * PAGE, (view.typePage + 1) * PAGE)) {
    const t = view.types.get(typ);
    const s = series(view.typeRates, typ);
    const st = t.stats || {};
    const tr = row([el("code", typ), sparkline(s.handled, "handled"), sparkline(s.failed, "failed"),
      st.received || 0, st.handled || 0, st.failed ? el("span", st.failed, "fail") : "0", st.invalid || 0]);
    for (const i of [3, 4, 5, 6]) tr.children[i].className = "num";
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const answerable = $("answerable");
  answerable.replaceChildren(...types.filter((t) => !t.includes("*") && !t.includes(">")).slice(0, 200).map((t) => {
    const o = el("option"); o.value = t; return o;
  }));
}

const restartOverview = keep(
  (signal) => stream("/v1/overview", { snapshot: onSnapshot, update: onUpdate }, signal),
  (err) => setStatus("status", "overview: " + (err.message || err) + "; retrying", true),
);

$("plugin-filter").addEventListener("input", () => { view.pluginPage = 0; renderPlugins(); });
$("type-filter").addEventListener("input", () => { view.typePage = 0; renderTypes(); });

// ---- live events (GET /v1/stream) -------------------------------------------

const live = { shown: 0, dropped: 0, skipped: 0, paused: false, pending: [], scheduled: false, subject: "" };

function liveStatus() {
  let s = live.subject ? "watching " + live.subject + " · " : "";
  s += live.shown + " events";
  if (live.dropped) s += " · " + live.dropped + " dropped by the coordinator (the page did not keep up)";
  if (live.skipped) s += " · " + live.skipped + " not shown while paused";
  setStatus("ev-status", s);
}

function eventRow(e) {
  const t = e.time ? new Date(e.time) : new Date();
  const data = e.error ? "not an event: " + e.error : (e.data || "") + (e.truncated ? " … (" + e.size + " bytes)" : "");
  const dataCell = el("span", data, "mono");
  dataCell.title = data;
  const tr = row([t.toLocaleTimeString(), e.producer, el("code", e.type), el("code", e.id || ""), dataCell], e.error ? "bad" : "");
  tr.children[4].className = "data";
  tr.dataset.type = e.type || "";
  tr.dataset.id = e.id || "";
  return tr;
}

function flushEvents() {
  live.scheduled = false;
  const body = $("events").tBodies[0];
  const batch = live.pending.splice(0).slice(-MAX_EVENTS);
  const frag = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) frag.appendChild(eventRow(batch[i]));
  body.insertBefore(frag, body.firstChild);
  while (body.rows.length > MAX_EVENTS) body.deleteRow(-1);
  liveStatus();
}

function onEvent(e) {
  live.shown++;
  if (live.paused) { live.skipped++; return; }
  live.pending.push(e);
  if (live.pending.length > MAX_EVENTS) live.pending.splice(0, live.pending.length - MAX_EVENTS);
  // At most ten redraws a second, however fast events come; a timer, not
  // requestAnimationFrame, so that a page in a background tab keeps up too.
  if (!live.scheduled) { live.scheduled = true; setTimeout(flushEvents, 100); }
}

const restartEvents = keep((signal) => {
  const q = new URLSearchParams();
  const typ = $("ev-type").value.trim(), producer = $("ev-producer").value.trim();
  if (typ) q.set("type", typ);
  if (producer) q.set("producer", producer);
  live.dropped = 0;
  return stream("/v1/stream?" + q, {
    subscribed: (s) => { live.subject = s.subject; liveStatus(); },
    event: onEvent,
    dropped: (d) => { live.dropped = d.dropped; liveStatus(); },
  }, signal);
}, (err) => setStatus("ev-status", "live events: " + (err.message || err) + "; retrying", true));

$("ev-apply").addEventListener("click", () => restartEvents());
for (const id of ["ev-type", "ev-producer"]) {
  $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") restartEvents(); });
}
$("ev-pause").addEventListener("click", () => {
  live.paused = !live.paused;
  $("ev-pause").textContent = live.paused ? "Resume" : "Pause";
  liveStatus();
});
$("ev-clear").addEventListener("click", () => {
  $("events").tBodies[0].replaceChildren();
  live.shown = live.skipped = 0;
  liveStatus();
});

$("token").addEventListener("change", () => {
  sessionStorage.setItem(tokenKey, $("token").value);
  restartOverview();
  restartEvents();
});

// ---- publish and invoke -----------------------------------------------------

function parseData(id) {
  const text = $(id).value.trim();
  if (text === "") return "";
  JSON.parse(text); // throws with the position of the mistake
  return text;
}

function newID() {
  return crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2);
}

async function show(what, resp) {
  const text = await resp.text();
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as is */ }
  const res = $("result");
  res.className = resp.ok ? "ok" : "error";
  res.dataset.status = String(resp.status);
  const head = resp.ok ? what + " answered " : what + " failed: ";
  res.textContent = head + resp.status + " " + resp.statusText + (pretty ? "\n\n" + pretty : "");
}

function send(form, what, fn) {
  $(form).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const res = $("result");
    res.className = "muted";
    res.textContent = what + "…";
    try { await show(what, await fn()); } catch (err) {
      res.className = "error";
      res.dataset.status = "";
      res.textContent = what + " not sent: " + (err.message || err);
    }
  });
}

send("publish", "publish", () => {
  const data = parseData("pub-data");
  return fetch("/v1/events", {
    method: "POST", body: data,
    headers: headers({
      "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": newID(),
      "ce-source": "urn:plugbus:dashboard", "ce-type": $("pub-type").value.trim(),
    }),
  });
});

send("invoke", "invoke", () => {
  const data = parseData("inv-data");
  const url = "/v1/invoke/" + encodeURIComponent($("inv-type").value.trim()) +
    "?timeout=" + encodeURIComponent($("inv-timeout").value.trim() || "10s");
  return fetch(url, { method: "POST", body: data, headers: headers({ "Content-Type": "application/json" }) });
});

// ---- dead letters -----------------------------------------------------------

function deadLetterQuery() {
  const q = new URLSearchParams();
  const plugin = $("dl-plugin").value.trim(), typ = $("dl-type").value.trim();
  if (plugin) q.set("plugin", plugin);
  if (typ) q.set("type", typ);
  return q;
}

async function loadDeadLetters() {
  const body = $("deadletters").tBodies[0];
  setStatus("dl-status", "loading…");
  try {
    const r = await fetch("/v1/deadletters?" + deadLetterQuery(), { headers: headers(), cache: "no-store" });
    if (!r.ok) { body.replaceChildren(); setStatus("dl-status", await errorText(r), true); return; }
    const data = await r.json();
    const letters = Array.isArray(data) ? data : (data.letters || data.deadletters || []);
    if (letters.length === 0) { emptyRow(body, 8, "no dead letters"); setStatus("dl-status", ""); return; }
    body.replaceChildren(...letters.slice().reverse().map((l) => {
      const replay = el("button", "Replay"); replay.type = "button";
      replay.addEventListener("click", () => deadLetterAction("POST", "/v1/deadletters/" + l.seq + "/replay", "replayed " + l.seq));
      const del = el("button", "Delete", "secondary"); del.type = "button";
      del.addEventListener("click", () => deadLetterAction("DELETE", "/v1/deadletters/" + l.seq, "deleted " + l.seq));
      const actions = el("span"); actions.append(replay, " ", del);
      return row([l.seq, l.plugin, el("code", l.type), l.producer, el("span", l.error, "fail"), l.attempts, ago(l.time), actions]);
    }));
    setStatus("dl-status", letters.length + " shown (newest first)");
  } catch (err) {
    setStatus("dl-status", String(err.message || err), true);
  }
}

async function deadLetterAction(method, url, done) {
  try {
    const r = await fetch(url, { method, headers: headers() });
    if (!r.ok) { setStatus("dl-status", await errorText(r), true); return; }
    await loadDeadLetters();
    setStatus("dl-status", done);
  } catch (err) {
    setStatus("dl-status", String(err.message || err), true);
  }
}

// Read only when opened: with durable mode off there are none to read.
$("deadletters-section").addEventListener("toggle", () => { if ($("deadletters-section").open) loadDeadLetters(); });
$("dl-refresh").addEventListener("click", loadDeadLetters);
$("dl-replay-all").addEventListener("click", () => {
  const q = deadLetterQuery();
  if (!q.get("plugin")) { setStatus("dl-status", "name the plugin whose dead letters to replay", true); return; }
  deadLetterAction("POST", "/v1/deadletters/replay?" + q, "replayed the plugin's dead letters");
});

// Agents and the plugins they run on order (coordinator run), read when
// the section is opened.
async function loadAgents() {
  const agents = $("agents").tBodies[0], orders = $("orders").tBodies[0];
  setStatus("agents-status", "loading…");
  try {
    const [ra, ro] = await Promise.all([
      fetch("/v1/agents", { headers: headers(), cache: "no-store" }),
      fetch("/v1/run", { headers: headers(), cache: "no-store" }),
    ]);
    if (!ra.ok) { agents.replaceChildren(); orders.replaceChildren(); setStatus("agents-status", await errorText(ra), true); return; }
    const list = await ra.json();
    if (list.length === 0) emptyRow(agents, 5, "no agents: start coordinator agent on a host");
    else agents.replaceChildren(...list.map((a) => row([a.name, a.host, a.pid, ago(a.started),
      (a.instances || []).map((i) => i.instance + " (" + i.state + ")").join(", ")])));
    const runs = ro.ok ? await ro.json() : [];
    if (runs.length === 0) emptyRow(orders, 5, "no plugins started with coordinator run");
    else orders.replaceChildren(...runs.map((o) => row([o.name, o.agent, el("code", o.executable || o.exec), o.replicas, ago(o.updated)])));
    setStatus("agents-status", list.length + " agent(s)");
  } catch (err) {
    setStatus("agents-status", String(err.message || err), true);
  }
}
$("agents-section").addEventListener("toggle", () => { if ($("agents-section").open) loadAgents(); });
$("agents-refresh").addEventListener("click", loadAgents);
