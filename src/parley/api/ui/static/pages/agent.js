// One agent: effective YAML (defaults filled in, secrets hidden), rendered prompts and greetings, problems.
import { api, content, fill, h, pathTail, setTitle, showError } from "../lib.js";

function promptSection(direction, p) {
  return h("section", { "aria-labelledby": `prompt-${direction}` },
    h("h3", { id: `prompt-${direction}` }, `${direction[0].toUpperCase()}${direction.slice(1)} calls (prompt “${p.key}”)`),
    p.error ? h("p", { class: "alert" }, p.error) : [
      h("p", {}, h("strong", {}, "Greeting: "), p.greeting || "(none: the caller speaks first)"),
      h("pre", { tabindex: "0", "aria-label": `${direction} system prompt` }, p.prompt),
    ]);
}

export async function render() {
  const key = pathTail("/ui/agents/");
  let agent;
  try {
    agent = await api(`/api/agents/${encodeURIComponent(key)}/config`);
  } catch (e) {
    showError(content(), e);
    return;
  }
  setTitle(`Agent ${agent.name}`);
  fill(content(),
    h("p", {}, agent.description || ""),
    h("div", { class: "actions" },
      h("a", { class: "button", href: `/ui/talk/${encodeURIComponent(agent.key)}`, "aria-label": `Talk to ${agent.name}` }, "Talk"),
      h("a", { href: "/ui/agents" }, "All agents")),
    agent.problems.length
      ? h("section", { class: "alert", "aria-labelledby": "agent-problems-heading" },
        h("h2", { id: "agent-problems-heading" }, "Problems in this agent's file"),
        h("ul", {}, agent.problems.map((p) => h("li", {}, p))))
      : h("p", { class: "note" }, `${agent.file}: no problems.`),
    h("h2", {}, "Prompts"),
    promptSection("inbound", agent.prompts.inbound),
    promptSection("outbound", agent.prompts.outbound),
    h("h2", { id: "yaml-heading" }, "Effective configuration"),
    h("p", { class: "note" }, "The agent's YAML with every default filled in; secret-looking values are hidden."),
    h("pre", { tabindex: "0", "aria-labelledby": "yaml-heading", id: "agent-yaml" }, agent.yaml));
}
