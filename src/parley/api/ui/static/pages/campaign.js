// Campaign: its state, progress and outcomes, Start / Pause / Resume / Cancel, settings, import errors and its
// calls (GET /api/calls?campaign=ID), each linking to its detail page; refreshed every few seconds.
import {
  api, badge, content, fill, fmtDuration, fmtTime, h, numberOrDash, pathTail, refill, setStatus, setTitle, showError,
  table,
} from "../lib.js";
import { ALLOWED, REFRESH_MS, command, counts, outcomes, progress } from "../campaign-lib.js";

const COMMANDS = [["start", "Start"], ["pause", "Pause"], ["resume", "Resume"], ["cancel", "Cancel campaign"]];
const DONE = { start: "started", pause: "paused", resume: "resumed", cancel: "canceled" };

function amdWords(call) {
  const amd = call.metadata && call.metadata.amd;
  if (!amd) return "—";
  return { machine: "answering machine", human: "person", unknown: "undecided" }[amd.result] || amd.result;
}

const CALL_COLUMNS = [
  ["Call", (c) => h("a", { href: `/ui/calls/${encodeURIComponent(c.id)}`, "aria-label": `Open call ${c.id} to ${c.to_number}` },
    c.id.slice(0, 8))],
  ["To", (c) => numberOrDash(c.to_number)],
  ["Status", (c) => badge(c.status)],
  ["Answered by", amdWords],
  ["Attempt", (c) => (c.metadata && c.metadata.campaign_attempt) || c.attempt, "num"],
  ["Started", (c) => fmtTime(c.created_at)],
  ["Duration", (c) => fmtDuration(c.duration_s), "num"],
  ["End reason", (c) => numberOrDash(c.end_reason)],
];

function settings(config) {
  const rows = [
    ["Calling window", config.window ? `${config.window} (each recipient's local time)` : "any time"],
    ["Days", Array.isArray(config.days) ? config.days.join(", ") : config.days || "every day"],
    ["Dates", config.start_date || config.end_date ? `${config.start_date || "…"} to ${config.end_date || "…"}` : "no limit"],
    ["At once", config.max_concurrent], ["Calls per minute", config.calls_per_minute || "no limit"],
    ["Caller ID", config.from_number || "the trunk's"], ["Trunk", config.trunk || "default"],
  ];
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
}

export async function render() {
  const id = pathTail("/ui/campaigns/");
  setTitle(`Campaign ${id.slice(0, 8)}`);
  const summary = h("div", { id: "campaign-summary" }, h("p", { class: "note" }, "Loading…"));
  const controls = h("div", { class: "actions", id: "campaign-actions", role: "group", "aria-label": "Campaign commands" });
  const result = h("p", { id: "command-result", role: "status", "aria-live": "polite", class: "note" });
  const settingsBox = h("div", { id: "campaign-settings" });
  const errors = h("div", { id: "import-errors" });
  const calls = h("div", { id: "campaign-calls" }, h("p", { class: "note" }, "Loading…"));
  fill(content(),
    h("section", { "aria-labelledby": "progress-heading" }, h("h2", { id: "progress-heading" }, "Progress"),
      summary, controls, result),
    h("section", { "aria-labelledby": "calls-heading" }, h("h2", { id: "calls-heading" }, "Calls"), calls),
    h("section", { "aria-labelledby": "settings-heading" }, h("h2", { id: "settings-heading" }, "Settings"),
      settingsBox, errors));

  const buttons = new Map(COMMANDS.map(([name, label]) => {
    const button = h("button", { type: "button", class: name === "cancel" ? "danger" : "", disabled: true }, label);
    button.addEventListener("click", () => run(name, button));
    controls.append(button);
    return [name, button];
  }));
  let campaign = null;

  async function run(name, button) {
    button.disabled = true;
    try {
      campaign = await command(campaign, name);
      result.textContent = `Campaign ${DONE[name]}.`;
    } catch (e) {
      result.textContent = `Could not ${name} the campaign: ${e.message}`;
    }
    await load();
    // the pressed button may now be disabled: keep the keyboard on the next command that applies
    if (button.disabled) [...buttons.values()].find((b) => !b.disabled)?.focus();
  }

  let lastCampaign = null, lastCalls = null;
  async function load() {
    let calls_;
    try {
      [campaign, calls_] = await Promise.all([
        api(`/api/campaigns/${encodeURIComponent(id)}`),
        api("/api/calls", { query: { campaign: id, limit: 500 } }),
      ]);
    } catch (e) {
      if (lastCampaign === null) {
        showError(content(), e);
        return false;
      }
      setStatus(`Could not refresh the campaign: ${e.message}`);
      return true;
    }
    setStatus("");
    setTitle(`Campaign ${campaign.name}`);
    for (const [name, button] of buttons) button.disabled = !ALLOWED[name].has(campaign.state);
    const text = JSON.stringify(campaign);
    if (text !== lastCampaign) {
      lastCampaign = text;
      fill(summary, h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", { id: "campaign-state" }, badge(campaign.state)),
        h("dt", {}, "Agent"), h("dd", {}, campaign.agent),
        h("dt", {}, "Progress"), h("dd", {}, progress(campaign)),
        h("dt", {}, "Recipients"), h("dd", { id: "campaign-counts" }, counts(campaign)),
        h("dt", {}, "Outcomes"), h("dd", { id: "campaign-outcomes" }, outcomes(campaign)),
        h("dt", {}, "Created"), h("dd", {}, fmtTime(campaign.created_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(campaign.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(campaign.finished_at)),
        h("dt", {}, "Campaign id"), h("dd", {}, campaign.id)));
      fill(settingsBox, settings(campaign.config));
      const bad = campaign.import_errors || [];
      fill(errors, campaign.rows_bad
        ? [h("h3", {}, `Rows refused at import (${campaign.rows_bad})`),
          table("Rows refused at import", [["Line", (e) => e.line, "num"], ["Why", (e) => e.message]], bad)]
        : h("p", { class: "note" }, "Every row of the file was accepted."));
    }
    const callsText = JSON.stringify(calls_.calls);
    if (callsText !== lastCalls) {
      lastCalls = callsText;
      refill(calls, table("Calls of this campaign", CALL_COLUMNS, calls_.calls, "No calls yet."));
    }
    return true;
  }
  if (await load()) setInterval(load, REFRESH_MS);
}
