// Agents: the loaded agents with a Talk button each, and the problems the agent files on disk have now.
import { api, content, fill, h, showError, table } from "../lib.js";

export async function render() {
  let data;
  try {
    data = await api("/api/agents");
  } catch (e) {
    showError(content(), e);
    return;
  }
  const problems = data.problems && data.problems.length
    ? h("section", { "aria-labelledby": "problems-heading", class: "alert", id: "agent-problems" },
      h("h2", { id: "problems-heading" }, "Problems in the agent files"),
      h("p", {}, "The agents below are the ones loaded at start-up; fix these and restart to load the files again."),
      h("ul", {}, data.problems.map((p) => h("li", {}, p))))
    : h("p", { class: "note", id: "agent-problems" }, "The agent files on disk have no problems.");
  fill(content(), problems,
    table("Agents", [
      ["Agent", (a) => h("a", { href: `/ui/agents/${encodeURIComponent(a.key)}` }, a.name)],
      ["Key", (a) => a.key],
      ["Description", (a) => a.description || "—"],
      ["Speech to text", (a) => a.stt],
      ["Language model", (a) => a.llm],
      ["Text to speech", (a) => a.tts],
      ["", (a) => h("a", { class: "button", href: `/ui/talk/${encodeURIComponent(a.key)}`, "aria-label": `Talk to ${a.name}` }, "Talk")],
    ], data.agents, "No agents are loaded."));
}
