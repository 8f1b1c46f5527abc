// Shared by the Campaigns and Campaign pages: progress, outcome counts and the state commands.
import { api, h } from "./lib.js";

export const REFRESH_MS = 3000;

/** Outcomes in the order a person reads them; unknown ones follow. */
const OUTCOME_ORDER = ["completed", "voicemail", "busy", "no_answer", "failed", "canceled", "dnc", "invalid", "expired"];

export const words = (name) => String(name).replace(/_/g, " ");

/** Which commands a state allows (the API's rules: campaigns/store.py MOVES). */
export const ALLOWED = {
  start: new Set(["draft"]),
  pause: new Set(["running"]),
  resume: new Set(["paused"]),
  cancel: new Set(["draft", "running", "paused"]),
};

/** Recipients finished / total, as a <progress> with its name and a text beside it. */
export function progress(campaign) {
  const total = campaign.counts.total || 0;
  const done = campaign.counts.completed || 0;
  const percent = total ? Math.round((done / total) * 100) : 0;
  return h("div", { class: "progress" },
    h("progress", { max: String(Math.max(total, 1)), value: String(done), "aria-label": `Progress of ${campaign.name}` }),
    h("span", { class: "note" }, `${done} of ${total} done (${percent} %)`));
}

/** "queued 3 · in progress 1 · done 2" */
export function counts(campaign) {
  const c = campaign.counts;
  return `queued ${c.queued} · in progress ${c.in_progress} · done ${c.completed}`;
}

/** The outcome counts as a list ("completed 1", "voicemail 1"), or a dash. */
export function outcomes(campaign) {
  const entries = Object.entries(campaign.outcomes || {})
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  if (!entries.length) return "—";
  return h("ul", { class: "outcomes" }, entries.map(([name, n]) =>
    h("li", {}, h("span", { class: `badge ${name}` }, words(name)), ` ${n}`)));
}

function rank(name) {
  const i = OUTCOME_ORDER.indexOf(name);
  return i < 0 ? OUTCOME_ORDER.length : i;
}

/** POST /api/campaigns/{id}/{command}; returns the campaign as the API answers it. */
export function command(campaign, name) {
  return api(`/api/campaigns/${encodeURIComponent(campaign.id)}/${name}`, { method: "POST" });
}
