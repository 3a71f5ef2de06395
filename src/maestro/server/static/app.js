// maestro dashboard: the sessions list, a session's page and an overview.
// Every stored string reaches the page through textContent (never as HTML),
// after visible(): control, bidi and separator characters are shown as escapes.

const API = "/api/v1";
const STATES = [
  "initializing", "planning", "generating_tasks", "implementing", "validating",
  "generating_report", "paused", "completed", "failed",
];
const PHASES = ["plan", "generate_tasks", "implement", "validate", "cleanup"];
const TERMINAL = new Set(["completed", "failed"]);
const main = document.getElementById("main");
const live = document.getElementById("live");

// ------------------------------------------------------------------ text

/** Controls, bidi controls and separators written as escapes, as the CLI shows them. */
function visible(text) {
  if (text === null || text === undefined) return "";
  let out = "";
  for (const ch of String(text)) {
    const code = ch.codePointAt(0);
    if (code === 9) out += "\\t";
    else if (code === 10) out += "\\n";
    else if (code === 13) out += "\\r";
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) out += "\\x" + code.toString(16).padStart(2, "0");
    else if (code === 0x061c || code === 0x200e || code === 0x200f || (code >= 0x202a && code <= 0x202e)
      || (code >= 0x2066 && code <= 0x2069) || code === 0x2028 || code === 0x2029) {
      out += "\\u" + code.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out;
}

/** An element; children are nodes or strings (strings become text, never markup). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = visible(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function badge(status) {
  return el("span", { class: `badge s-${status}`, text: status.replaceAll("_", " ") });
}

function seconds(total) {
  const s = Math.max(0, Math.round(total));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function ago(stamp) {
  if (!stamp) return "";
  const delta = (Date.now() - Date.parse(stamp)) / 1000;
  if (delta < 5) return "just now";
  if (delta < 0) return "soon";
  return `${seconds(delta).split(" ")[0]} ago`;
}

/** A <time> showing a relative time, refreshed by the clock below (no requests). */
function when(stamp) {
  if (!stamp) return el("span", { text: "—" });
  return el("time", { datetime: stamp, title: stamp, "data-ago": "1" }, ago(stamp));
}

setInterval(() => {
  for (const node of document.querySelectorAll("time[data-ago]")) node.textContent = ago(node.dateTime);
}, 15000);

async function api(path, options = {}) {
  const answer = await fetch(API + path, {
    ...options,
    headers: { accept: "application/json", ...(options.body ? { "content-type": "application/json" } : {}), ...(options.headers || {}) },
  });
  if (answer.status === 204) return null;
  const body = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = new Error(body && body.error ? body.error.message : `HTTP ${answer.status}`);
    error.status = answer.status;
    error.body = body;
    throw error;
  }
  return body;
}

function shortId(id) { return id.slice(0, 8); }

// ------------------------------------------------------------------ live updates

let stream = null;
function follow(query, onEvent) {
  if (stream) stream.close();
  stream = new EventSource(`${API}/events${query ? "?" + query : ""}`);
  stream.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  stream.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  stream.onmessage = (message) => onEvent(JSON.parse(message.data));
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// ------------------------------------------------------------------ the sessions list

const FILTERS = ["status", "phase", "branch", "q", "created_after", "created_before", "order"];

function listQuery(params, cursor) {
  const query = new URLSearchParams();
  for (const name of FILTERS) {
    const value = params.get(name);
    if (value) query.set(name, value);
  }
  query.set("limit", "50");
  if (cursor) query.set("cursor", cursor);
  return query.toString();
}

function sessionRow(session) {
  const git = session.git_context || {};
  return el("tr", { "data-id": session.session_id, "data-status": session.status },
    el("td", {}, badge(session.status)),
    el("td", { class: "mono" }, el("a", { href: `/sessions/${session.session_id}`, text: shortId(session.session_id), "aria-label": `session ${shortId(session.session_id)}` })),
    el("td", { class: "request", text: session.feature_request }),
    el("td", { class: "mono", text: git.branch || "" }),
    el("td", { text: session.current_phase || "—" }),
    el("td", {}, when(session.created_at)),
    el("td", {}, when(session.updated_at)),
  );
}

function select(name, label, values, current) {
  return el("label", {}, label,
    el("select", { name, "aria-label": label },
      el("option", { value: "" }, "any"),
      values.map((value) => el("option", { value, selected: value === current }, value.replaceAll("_", " ")))));
}

async function listPage() {
  const params = new URLSearchParams(location.search);
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter sessions" },
    el("label", {}, "Search", el("input", { type: "search", name: "q", value: params.get("q") || "", placeholder: "words in the request", "aria-label": "Search requests" })),
    select("status", "Status", STATES, params.get("status")),
    select("phase", "Phase", PHASES, params.get("phase")),
    el("label", {}, "Branch", el("input", { type: "text", name: "branch", value: params.get("branch") || "", size: "14", "aria-label": "Branch" })),
    el("label", {}, "Created after", el("input", { type: "date", name: "created_after", value: params.get("created_after") || "", "aria-label": "Created after" })),
    el("label", {}, "Order",
      el("select", { name: "order", "aria-label": "Order" },
        [["-created", "newest first"], ["created", "oldest first"], ["-updated", "recently updated"]].map(
          ([value, text]) => el("option", { value, selected: (params.get("order") || "-created") === value }, text)))),
    el("button", { type: "reset" }, "Clear"),
  );
  const count = el("p", { class: "count", role: "status" });
  const body = el("tbody");
  const notice = el("div", { class: "notice error", role: "alert" });
  const more = el("button", { type: "button", class: "more", hidden: true }, "Load more");
  const table = el("table", { class: "sessions" },
    el("colgroup", {}, el("col", { class: "c-status" }), el("col", { class: "c-id" }), el("col"),
      el("col", { class: "c-branch" }), el("col", { class: "c-phase" }), el("col", { class: "c-time" }), el("col", { class: "c-time" })),
    el("thead", {}, el("tr", {}, ["Status", "Id", "Request", "Branch", "Phase", "Created", "Updated"].map((h) => el("th", { scope: "col" }, h)))),
    body);
  main.replaceChildren(el("h1", {}, "Sessions"), form, notice, count, table, more);

  let cursor = null;
  let shown = 0;
  async function load(append) {
    const current = new URLSearchParams(location.search);
    try {
      const page = await api(`/sessions?${listQuery(current, append ? cursor : null)}`);
      notice.textContent = "";
      if (!append) body.replaceChildren();
      for (const session of page.sessions) body.append(sessionRow(session));
      shown = body.children.length;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      count.textContent = page.total === 0 ? "No sessions match." : `${shown} of ${page.total} sessions`;
    } catch (error) {
      notice.textContent = visible(error.message);
    }
  }

  function apply() {
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value && !(name === "order" && value === "-created")) query.set(name, value);
    const text = query.toString();
    history.replaceState(null, "", text ? `/?${text}` : "/");
    load(false);
  }
  const typed = debounce(apply, 250);
  form.addEventListener("input", (event) => (event.target.type === "search" || event.target.type === "text" ? typed() : apply()));
  form.addEventListener("change", (event) => { if (event.target.tagName === "SELECT" || event.target.type === "date") apply(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  form.addEventListener("reset", () => setTimeout(apply, 0));
  more.addEventListener("click", () => load(true));
  await load(false);

  const reload = debounce(() => load(false), 300);
  follow("", async (event) => {
    if (event.kind === "created" || event.kind === "deleted" || event.kind === "reset") { reload(); return; }
    const row = body.querySelector(`tr[data-id="${event.session_id}"]`);
    if (!row || event.kind === "heartbeat") return;
    try {
      const session = await api(`/sessions/${event.session_id}`);
      const fresh = sessionRow(session);
      fresh.classList.add("flash");
      row.replaceWith(fresh);
    } catch (error) {
      if (error.status === 404) row.remove();
    }
  });
}

// ------------------------------------------------------------------ one session

function gantt(timeline) {
  const start = Date.parse(timeline.started_at);
  const life = Math.max(1, Date.parse(timeline.ended_at) - start);
  const rows = [];
  for (const state of Object.keys(timeline.seconds_in_state)) {
    const track = el("div", { class: "track", role: "img", "aria-label": `${state}: ${seconds(timeline.seconds_in_state[state])}` });
    for (const piece of timeline.timeline.filter((p) => p.state === state)) {
      const seg = el("span", { class: `seg s-${state}`, title: `${state} ${piece.start} → ${piece.end} (${seconds(piece.seconds)})` });
      seg.style.left = `${((Date.parse(piece.start) - start) / life) * 100}%`;
      seg.style.width = `${((piece.seconds * 1000) / life) * 100}%`;
      track.append(seg);
    }
    const share = timeline.seconds_in_state[state] / Math.max(1e-9, (life / 1000));
    rows.push(el("span", { class: "label" }, badge(state)), track,
      el("span", { class: "secs" }, `${seconds(timeline.seconds_in_state[state])} · ${Math.round(share * 100)}%`));
  }
  return el("div", {},
    el("div", { class: "gantt", "aria-label": "Timeline" }, rows),
    el("div", { class: "axis" }, el("span", { text: new Date(start).toISOString().replace(".000", "") }),
      el("span", { text: timeline.finished ? "finished" : "now" })));
}

function record(pairs) {
  return el("dl", { class: "record" }, pairs.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value)]));
}

function confirmFail() {
  return new Promise((resolve) => {
    const reason = el("input", { type: "text", name: "reason", value: "failed from the dashboard", "aria-label": "Reason", size: "30" });
    const dialog = el("dialog", { "aria-label": "Fail this session?" },
      el("form", { method: "dialog" },
        el("p", {}, "Fail this session? It cannot be resumed afterwards."),
        el("label", {}, "Reason ", reason),
        el("div", { class: "actions" },
          el("button", { value: "cancel", type: "submit" }, "Cancel"),
          el("button", { value: "fail", type: "submit", class: "danger" }, "Fail session"))));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "fail" ? reason.value.trim() || "failed from the dashboard" : null);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

async function sessionPage(id) {
  const notice = el("div", { class: "notice", role: "alert" });
  const holder = el("div");
  main.replaceChildren(el("p", {}, el("a", { href: "/" }, "← all sessions")), notice, holder);
  let shownStatus = null;
  let fullId = id;

  async function act(route, body) {
    notice.className = "notice";
    notice.textContent = "";
    try {
      await api(`/sessions/${fullId}/${route}`, { method: "POST", body: JSON.stringify(body) });
      await draw();
    } catch (error) {
      notice.className = "notice error";
      notice.textContent = visible(error.message);
      await draw();
    }
  }

  async function draw() {
    let session, timeline;
    try {
      [session, timeline] = await Promise.all([api(`/sessions/${id}`), api(`/sessions/${id}/timeline`)]);
    } catch (error) {
      notice.className = "notice error";
      notice.textContent = visible(error.message);
      return;
    }
    fullId = session.session_id;
    shownStatus = session.status;
    const git = session.git_context || {};
    const stats = session.statistics || {};
    const buttons = [];
    if (!TERMINAL.has(session.status) && session.status !== "paused") {
      buttons.push(el("button", { type: "button", class: "primary", onclick: () => act("transitions", { to: "paused", from: shownStatus, reason: "paused from the dashboard" }) }, "Pause"));
    }
    if (session.status === "paused") {
      buttons.push(el("button", { type: "button", class: "primary", onclick: () => act("resume", { from: "paused" }) }, "Resume"));
    }
    if (!TERMINAL.has(session.status)) {
      buttons.push(el("button", {
        type: "button", class: "danger",
        onclick: async () => { const from = shownStatus; const reason = await confirmFail(); if (reason) act("transitions", { to: "failed", from, reason }); },
      }, "Fail…"));
    }
    const history = (session.history || []).map((entry) => el("li", {},
      el("time", { datetime: entry.at, title: entry.at }, entry.at.replace("T", " ").replace(/\.\d+Z$/, "Z")), " ",
      badge(entry.from), " → ", badge(entry.to),
      entry.reason ? el("span", { text: ` — ${entry.reason}` }) : null));
    holder.replaceChildren(
      el("h1", {}, badge(session.status), " ", el("span", { class: "mono", text: shortId(session.session_id) })),
      el("div", { class: "card" }, el("p", { class: "request-text", text: session.feature_request })),
      el("div", { class: "actions", "aria-label": "Actions" }, buttons),
      el("h2", {}, "Timeline"),
      el("div", { class: "card" }, gantt(timeline),
        el("p", { class: "count" }, `active ${seconds(timeline.active_seconds)} · paused ${seconds(timeline.paused_seconds)} · life ${seconds(timeline.active_seconds + timeline.paused_seconds)}`)),
      el("div", { class: "grid2" },
        el("section", {}, el("h2", {}, "Record"), el("div", { class: "card" }, record([
          ["id", el("span", { class: "mono", text: session.session_id })],
          ["status", badge(session.status)],
          ["phase", el("span", { text: session.current_phase || "—" })],
          ["branch", el("span", { class: "mono", text: git.branch || "" })],
          ["commit", el("span", { class: "mono", text: (git.commit || "").slice(0, 12) })],
          ["worktree", el("span", { text: git.worktree_name || (git.is_worktree ? "yes" : "main checkout") })],
          ["created", when(session.created_at)],
          ["updated", when(session.updated_at)],
          ["completed", when(session.completed_at)],
          ["heartbeat", when(session.heartbeat_at)],
          ["revision", el("span", { text: String(session.revision) })],
          ["PRD", el("span", { text: session.prd_reference ? session.prd_reference.path || "" : "—" })],
        ]))),
        el("section", {}, el("h2", {}, "Seconds per state"), el("div", { class: "card" },
          el("table", { class: "plain" }, el("tbody", {}, Object.entries(timeline.seconds_in_state).map(([state, secs]) =>
            el("tr", {}, el("td", {}, badge(state)), el("td", {}, seconds(secs)), el("td", {}, `${secs.toFixed(1)} s`)))))),
          el("h2", {}, "Statistics"), el("div", { class: "card" }, record(Object.entries(stats).map(([key, value]) =>
            [key.replaceAll("_", " "), el("span", { text: value === null ? "—" : String(value) })]))))),
      el("h2", {}, "History"),
      el("div", { class: "card" }, history.length ? el("ol", { class: "history" }, history) : el("p", { class: "empty" }, "No transitions yet.")),
      el("h2", {}, "Configuration"),
      el("div", { class: "card" }, record(Object.entries(session.configuration || {}).map(([key, value]) =>
        [key.replaceAll("_", " "), el("span", { text: typeof value === "object" ? JSON.stringify(value) : String(value) })]))),
    );
    document.title = `${shortId(session.session_id)} · ${session.status} · maestro`;
  }

  await draw();
  const redraw = debounce(draw, 150);
  follow(`session_id=${encodeURIComponent(fullId)}`, (event) => {
    if (event.kind === "deleted") { notice.className = "notice error"; notice.textContent = "This session was deleted."; return; }
    redraw();
  });
}

// ------------------------------------------------------------------ overview

async function overviewPage() {
  const holder = el("div");
  main.replaceChildren(el("h1", {}, "Overview"), holder);
  async function draw() {
    const data = await api("/overview?days=14");
    const stats = data.stats;
    const top = Math.max(1, ...data.days.map((d) => d.completed + d.failed + d.active));
    const bars = data.days.map((day) => {
      const column = el("div", { class: "day", role: "img", "aria-label": `${day.date}: ${day.completed} completed, ${day.failed} failed, ${day.active} active` });
      for (const outcome of ["completed", "failed", "active"]) {
        const part = el("span", { class: outcome, title: `${day.date} ${outcome}: ${day[outcome]}` });
        part.style.height = `${(day[outcome] / top) * 100}%`;
        column.append(part);
      }
      return column;
    });
    const rate = stats.success_rate === null ? "—" : `${Math.round(stats.success_rate * 100)}%`;
    holder.replaceChildren(
      el("div", { class: "kpis" },
        el("div", { class: "kpi" }, el("b", {}, String(stats.total)), "sessions"),
        el("div", { class: "kpi" }, el("b", {}, rate), "success rate"),
        el("div", { class: "kpi" }, el("b", {}, String(data.stale.length)), "stale")),
      el("h2", {}, "Sessions per day by outcome (14 days)"),
      el("div", { class: "days" }, bars),
      el("div", { class: "daylabels", "aria-hidden": "true" }, data.days.map((d) => el("span", {}, d.date.slice(5)))),
      el("div", { class: "legend" }, ["completed", "failed", "active"].map((o) => el("span", {}, el("i", { class: o }), o))),
      el("h2", {}, "Median time per state"),
      el("div", { class: "card" }, el("table", { class: "plain" },
        el("thead", {}, el("tr", {}, ["State", "Sessions", "Median", "p90"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, Object.entries(stats.durations).map(([state, d]) =>
          el("tr", {}, el("td", {}, badge(state)), el("td", {}, String(d.sessions)), el("td", {}, seconds(d.median_seconds)), el("td", {}, seconds(d.p90_seconds))))))),
      el("h2", {}, "Stale sessions"),
      data.stale.length
        ? el("table", { class: "sessions" }, el("tbody", {}, data.stale.map((s) => { const row = sessionRow(s); row.classList.add("stale"); return row; })))
        : el("p", { class: "empty" }, "None: every running session is alive."),
    );
  }
  await draw();
  follow("", debounce(draw, 500));
}

// ------------------------------------------------------------------ routing

const path = location.pathname;
for (const link of document.querySelectorAll("nav a")) {
  const here = (link.dataset.page === "overview") === (path === "/overview") && !path.startsWith("/sessions/");
  if (here) link.setAttribute("aria-current", "page");
}
if (path.startsWith("/sessions/")) sessionPage(decodeURIComponent(path.slice("/sessions/".length)));
else if (path === "/overview") overviewPage();
else listPage();
