// Queue: place an outbound call (POST /api/outbound-call), see queued and scheduled calls, cancel one.
import { api, ApiError, content, fill, fmtTime, h, setStatus, showError, table } from "../lib.js";

const REFRESH_MS = 5000;

function field(id, label, attrs = {}, hint = "") {
  const control = attrs.type === "textarea"
    ? h("textarea", { id, name: id, ...attrs, type: undefined, "aria-describedby": hint ? `${id}-hint` : undefined })
    : h("input", { id, name: id, type: "text", ...attrs, "aria-describedby": hint ? `${id}-hint` : undefined });
  return h("div", { class: attrs.type === "textarea" ? "wide" : "" },
    h("label", { for: id }, label), control,
    hint ? h("span", { class: "note", id: `${id}-hint` }, hint) : null,
    h("span", { class: "field-error", id: `${id}-error`, role: "alert" }));
}

export async function render() {
  const agentSelect = h("select", { id: "agent", name: "agent" }, h("option", { value: "" }, "Default agent"));
  const form = h("form", { id: "place-call", "aria-labelledby": "place-heading", novalidate: true },
    h("div", { class: "form-grid" },
      field("to_number", "Number to call", { required: true, inputmode: "tel", autocomplete: "off", placeholder: "+14155550123" }, "E.164, with the country code."),
      h("div", {}, h("label", { for: "agent" }, "Agent"), agentSelect, h("span", { class: "field-error", id: "agent-error", role: "alert" })),
      field("caller_name", "Name of the person called"),
      field("from_number", "Caller ID", { inputmode: "tel" }, "Optional; the trunk's number by default."),
      field("schedule_at", "Call at", { type: "datetime-local" }, "Optional; now when empty."),
      field("max_retries", "Retries", { type: "number", min: "0", max: "20" }, "On busy, no answer or failure."),
      field("greeting", "Greeting", { type: "textarea" }, "Optional: the first sentence instead of the agent's."),
      field("llm_prompt", "System prompt", { type: "textarea" }, "Optional: instead of the agent's prompt.")),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Place call"),
      h("span", { id: "place-result", role: "status", "aria-live": "polite" })));
  const queued = h("div", { id: "queued-calls" }, h("p", { class: "note" }, "Loading…"));
  fill(content(),
    h("section", { "aria-labelledby": "place-heading", class: "card" }, h("h2", { id: "place-heading" }, "Place an outbound call"), form),
    h("section", { "aria-labelledby": "queued-heading" }, h("h2", { id: "queued-heading" }, "Queued and scheduled calls"), queued));

  try {
    for (const a of (await api("/api/agents")).agents) agentSelect.append(h("option", { value: a.key }, a.name));
  } catch (e) { /* the default agent still works */ }

  async function cancel(call, button) {
    button.disabled = true;
    try {
      await api(`/api/calls/${encodeURIComponent(call.id)}/cancel`, { method: "POST" });
      setStatus(`Call to ${call.to_number} canceled.`);
    } catch (e) {
      setStatus(`Could not cancel the call to ${call.to_number}: ${e.message}`);
    }
    await load();
  }

  async function load() {
    try {
      const data = await api("/api/calls", { query: { status: "queued", limit: 200 } });
      const calls = data.calls.slice().sort((a, b) => (a.schedule_at || a.created_at).localeCompare(b.schedule_at || b.created_at));
      fill(queued, table("Queued and scheduled calls", [
        ["To", (c) => h("a", { href: `/ui/calls/${encodeURIComponent(c.id)}` }, c.to_number || "—")],
        ["Agent", (c) => c.agent],
        ["Name", (c) => c.caller_name || "—"],
        ["Dial at", (c) => (c.schedule_at ? fmtTime(c.schedule_at) : "as soon as possible")],
        ["Attempt", (c) => c.attempt, "num"],
        ["Queued", (c) => fmtTime(c.created_at)],
        ["", (c) => {
          const b = h("button", { type: "button", class: "secondary", "aria-label": `Cancel the call to ${c.to_number}` }, "Cancel");
          b.addEventListener("click", () => cancel(c, b));
          return b;
        }],
      ], calls, "No calls are waiting."));
    } catch (e) {
      showError(queued, e);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.value === "") continue;
      if (el.name === "max_retries") body[el.name] = Number(el.value);
      else if (el.name === "schedule_at") body[el.name] = new Date(el.value).toISOString();
      else body[el.name] = el.value;
    }
    const result = form.querySelector("#place-result");
    if (!body.to_number) {
      markInvalid("to_number", "Enter the number to call.");
      return;
    }
    try {
      const answer = await api("/api/outbound-call", { method: "POST", body });
      result.textContent = answer.message;
      form.reset();
      await load();
    } catch (e) {
      result.textContent = "";
      const details = e instanceof ApiError ? e.body.details || [] : [];
      let marked = false;
      for (const d of details) marked = markInvalid(d.field, d.message) || marked;
      if (!marked) result.textContent = e.message;
    }
  });

  function markInvalid(name, message) {
    const el = form.querySelector(`[name="${CSS.escape(name)}"]`);
    const error = form.querySelector(`#${CSS.escape(name)}-error`);
    if (!el || !error) return false;
    el.setAttribute("aria-invalid", "true");
    error.textContent = message;
    el.focus();
    return true;
  }

  await load();
  setInterval(load, REFRESH_MS);
}
