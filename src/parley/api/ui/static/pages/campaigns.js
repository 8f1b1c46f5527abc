// Campaigns: every campaign with its state, progress and counts by outcome, refreshed every few seconds.
import { api, badge, content, fill, fmtTime, h, refill, setStatus, showError, table } from "../lib.js";
import { REFRESH_MS, counts, outcomes, progress } from "../campaign-lib.js";

function nameLink(campaign) {
  return h("a", { href: `/ui/campaigns/${encodeURIComponent(campaign.id)}`, "aria-label": `Open campaign ${campaign.name}` },
    campaign.name);
}

const COLUMNS = [
  ["Campaign", nameLink],
  ["State", (c) => badge(c.state)],
  ["Agent", (c) => c.agent],
  ["Progress", progress],
  ["Recipients", counts],
  ["Outcomes", outcomes],
  ["Created", (c) => fmtTime(c.created_at)],
];

export async function render() {
  const list = h("div", { id: "campaigns", "aria-live": "off" }, h("p", { class: "note" }, "Loading…"));
  fill(content(),
    h("section", { "aria-labelledby": "campaigns-heading" },
      h("h2", { id: "campaigns-heading" }, "All campaigns"),
      h("p", { class: "note" }, "Create campaigns with ", h("code", {}, "parley campaigns create"),
        " or POST /api/campaigns (docs/campaigns.md). This list refreshes every few seconds."),
      list));
  let last = null;
  async function load() {
    try {
      const data = await api("/api/campaigns");
      const text = JSON.stringify(data.campaigns);
      if (text === last) return;
      last = text;
      refill(list, table("Campaigns", COLUMNS, data.campaigns, "No campaigns yet."));
      setStatus("");
    } catch (e) {
      if (last === null) showError(list, e);
      else setStatus(`Could not refresh the campaigns: ${e.message}`);
    }
  }
  await load();
  setInterval(load, REFRESH_MS);
}
