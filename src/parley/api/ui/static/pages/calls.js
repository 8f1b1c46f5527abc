// Calls: live calls (server-sent events from /api/live-calls) and recent calls with filters and cursor paging.
import {
  api, badge, callChannel, content, fill, fmtDuration, fmtTime, h, setStatus, showError, table, toSignIn,
} from "../lib.js";

const STATUSES = ["queued", "dialing", "ringing", "in_progress", "completed", "failed", "busy", "no_answer", "canceled"];
const FILTERS = ["status", "agent", "direction", "channel", "since", "until"];

function select(id, label, options) {
  return h("div", {},
    h("label", { for: id }, label),
    h("select", { id, name: id }, h("option", { value: "" }, "Any"),
      options.map(([value, text]) => h("option", { value }, text))));
}

function input(id, label, type) {
  return h("div", {}, h("label", { for: id }, label), h("input", { id, name: id, type }));
}

/** datetime-local value (local time) <-> ISO 8601 with the browser's offset. */
function localToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString();
}
function isoToLocal(value) {
  if (!value) return "";
  const d = new Date(value);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function callLink(call) {
  return h("a", { href: `/ui/calls/${encodeURIComponent(call.id)}`, "aria-label": `Open call ${call.id}` },
    call.id.slice(0, 8));
}

function peer(call) {
  return call.direction === "inbound" ? (call.from_number || "—") : (call.to_number || "—");
}

const COLUMNS = [
  ["Call", callLink],
  ["Started", (c) => fmtTime(c.created_at)],
  ["Status", (c) => badge(c.status)],
  ["Direction", (c) => c.direction],
  ["Channel", callChannel],
  ["Agent", (c) => c.agent],
  ["Number", peer],
  ["Duration", (c) => fmtDuration(c.duration_s), "num"],
];

export async function render() {
  const live = h("div", { id: "live-calls" }, h("p", { class: "note" }, "Connecting…"));
  const liveState = h("span", { class: "note", id: "live-state" });
  const form = h("form", { class: "filters", id: "filters", "aria-label": "Filter recent calls" },
    select("status", "Status", STATUSES.map((s) => [s, s.replace("_", " ")])),
    select("agent", "Agent", []),
    select("direction", "Direction", [["inbound", "inbound"], ["outbound", "outbound"]]),
    select("channel", "Channel", [["sip", "SIP (phone)"], ["webrtc", "WebRTC (browser)"]]),
    input("since", "From", "datetime-local"),
    input("until", "Until", "datetime-local"),
    h("div", {}, h("button", { type: "submit" }, "Apply filters")),
    h("div", {}, h("button", { type: "reset", class: "secondary" }, "Clear filters")));
  const recent = h("div", { id: "recent-calls" }, h("p", { class: "note" }, "Loading…"));
  const pager = h("div", { class: "actions" });
  fill(content(),
    h("section", { "aria-labelledby": "live-heading" },
      h("h2", { id: "live-heading" }, "Live calls ", liveState), live),
    h("section", { "aria-labelledby": "recent-heading" },
      h("h2", { id: "recent-heading" }, "Recent calls"), form, recent, pager));

  // filters come from and go to the page's query string, so a filtered view can be bookmarked
  const params = new URLSearchParams(location.search);
  try {
    const agents = await api("/api/agents");
    const agentSelect = form.querySelector("#agent");
    for (const a of agents.agents) agentSelect.append(h("option", { value: a.key }, a.name));
  } catch (e) { /* the list still works without agent names */ }
  for (const name of FILTERS) {
    const el = form.querySelector(`#${name}`);
    const value = params.get(name) || "";
    el.value = el.type === "datetime-local" ? isoToLocal(value) : value;
  }

  const pages = [null]; // cursor of each page shown so far; the last is the current page
  async function load() {
    const query = { limit: 25, cursor: pages[pages.length - 1] };
    for (const name of FILTERS) {
      const el = form.querySelector(`#${name}`);
      query[name] = el.type === "datetime-local" ? localToIso(el.value) : el.value;
    }
    try {
      const data = await api("/api/calls", { query });
      fill(recent, table("Recent calls", COLUMNS, data.calls, "No calls match these filters."));
      const newer = h("button", { type: "button", class: "secondary", disabled: pages.length < 2 }, "Newer calls");
      const older = h("button", { type: "button", class: "secondary", disabled: !data.next_cursor }, "Older calls");
      newer.addEventListener("click", () => { pages.pop(); load(); });
      older.addEventListener("click", () => { pages.push(data.next_cursor); load(); });
      fill(pager, newer, older, h("span", { class: "note" }, `Page ${pages.length}`));
    } catch (e) {
      showError(recent, e);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const qs = new URLSearchParams();
    for (const name of FILTERS) {
      const el = form.querySelector(`#${name}`);
      const value = el.type === "datetime-local" ? localToIso(el.value) : el.value;
      if (value) qs.set(name, value);
    }
    history.replaceState(null, "", qs.toString() ? `?${qs}` : location.pathname);
    pages.length = 1;
    load();
  });
  form.addEventListener("reset", () => {
    setTimeout(() => form.requestSubmit(), 0);
  });
  await load();

  // live calls: pushed by the server; the first page of recent calls follows along
  const source = new EventSource("/api/live-calls");
  let shown = null;
  source.addEventListener("live", (event) => {
    const calls = JSON.parse(event.data).calls;
    liveState.textContent = `(${calls.length})`;
    fill(live, table("Live calls", COLUMNS, calls, "No live calls right now."));
    const ids = calls.map((c) => `${c.id}:${c.status}`).join(",");
    if (shown !== null && ids !== shown && pages.length === 1) load();
    shown = ids;
    setStatus("");
  });
  source.addEventListener("ended", () => { source.close(); toSignIn(); });
  source.addEventListener("error", () => {
    setStatus("Live updates interrupted; reconnecting…");
    if (source.readyState === EventSource.CLOSED) api("/api/calls", { query: { limit: 1 } }).catch(() => {});
  });
}
