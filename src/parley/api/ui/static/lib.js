// Shared helpers of the dashboard pages: the JSON API with the session cookie and CSRF token, safe DOM
// building (text is always set as text, never parsed as HTML), formatting.

export const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Set while "Sign out" runs: the page is leaving for the sign-in page on its own. */
export const leaving = { now: false };

/** Go to the sign-in page, coming back here afterwards. */
export function toSignIn() {
  if (leaving.now) return;
  const next = location.pathname + location.search;
  location.assign("/ui/sign-in?next=" + encodeURIComponent(next));
}

/** Call the JSON API. Non-GET requests carry the CSRF token; a 401 sends the browser to sign-in. */
export async function api(path, { method = "GET", body, query } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") qs.set(k, v);
    const text = qs.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  const response = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    toSignIn();
    throw new ApiError(401, { message: "signed out" });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Create an element: h("a", {href: "/x", class: "c"}, "text", child). Strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const content = () => document.getElementById("content");

/** Say something in the polite live region under the page title. */
export function setStatus(text) {
  const el = document.getElementById("status");
  if (el) el.textContent = text || "";
}

export function showError(where, error) {
  const message = error instanceof ApiError ? error.message : String(error && error.message || error);
  fill(where, h("p", { class: "alert", role: "alert" }, message));
}

export function setTitle(text) {
  document.getElementById("page-title").textContent = text;
  document.title = `${text} · Parley`;
}

/** The path segment after `prefix` (e.g. the call id of /ui/calls/ID). */
export function pathTail(prefix) {
  return decodeURIComponent(location.pathname.slice(prefix.length).replace(/\/$/, ""));
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function fmtClock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString(undefined, { hour12: false });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

export function badge(status) {
  return h("span", { class: `badge ${status}` }, String(status).replace("_", " "));
}

/** A table in a scrolling wrapper: columns = [[heading, cell(row) => node|string, className?], ...]. */
export function table(caption, columns, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "note" }, empty);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([title, , cls]) => h("th", { scope: "col", class: cls }, title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, cls]) => h("td", { class: cls }, cell(row))))))));
}

export function callChannel(call) {
  return call.channel || (call.metadata && call.metadata.channel) || (call.sip_call_id ? "sip" : "—");
}

export function numberOrDash(value) {
  return value === null || value === undefined || value === "" ? "—" : value;
}

/** Re-render `el` with `children`, keeping the keyboard focus on the control of the same name inside it. */
export function refill(el, ...children) {
  const active = document.activeElement;
  const name = active && el.contains(active)
    ? active.getAttribute("aria-label") || active.textContent.trim() : null;
  fill(el, ...children);
  if (!name) return el;
  const again = [...el.querySelectorAll("a[href], button, [tabindex]")]
    .find((c) => (c.getAttribute("aria-label") || c.textContent.trim()) === name);
  if (again && !again.disabled) again.focus();
  return el;
}
