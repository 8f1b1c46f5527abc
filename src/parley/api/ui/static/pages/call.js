// Call detail: facts, answering-machine check, post-call analysis, recording, per-turn latency chart, transcript (interruptions marked), timeline, webhooks.
import {
  api, badge, callChannel, content, fill, fmtClock, fmtDuration, fmtTime, h, numberOrDash, pathTail, setStatus,
  setTitle, showError, table,
} from "../lib.js";

const SVG = "http://www.w3.org/2000/svg";
const LIVE = new Set(["queued", "dialing", "ringing", "in_progress"]);

// The latency marks of a turn_metrics event, as consecutive steps (ms after the end-of-turn decision,
// except the first: the silence the detector waited after the caller's last voiced audio).
const STEPS = [
  ["silence", "End of speech → end of turn", (m) => [0, m.silence_waited_ms]],
  ["stt", "→ STT final", (m) => ["eot", m.stt_final_ms]],
  ["llm", "→ LLM first token", (m) => ["prev", m.llm_first_token_ms]],
  ["tts", "→ TTS first audio", (m) => ["prev", m.tts_first_audio_ms]],
  ["out", "→ first frame out", (m) => ["prev", m.first_frame_out_ms]],
];

/** Per-turn segments: [{turn, segs: [{cls, label, ms}], total}]; marks missing for a step are skipped. */
export function latencySegments(metrics) {
  return metrics.map((m) => {
    const silence = m.silence_waited_ms || 0;
    const segs = [];
    if (silence > 0) segs.push({ cls: "silence", label: STEPS[0][1], ms: silence });
    let prev = 0;
    for (const [cls, label, pick] of STEPS.slice(1)) {
      const [, mark] = pick(m);
      if (mark === null || mark === undefined) continue;
      segs.push({ cls, label, ms: Math.max(0, mark - prev) });
      prev = Math.max(prev, mark);
    }
    return { turn: m.turn, segs, total: silence + prev, v2v: m.voice_to_voice_ms };
  });
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function latencyChart(metrics) {
  const rows = latencySegments(metrics);
  if (!rows.length) return h("p", { class: "note" }, "No latency marks: the agent took no turn in this call.");
  const max = Math.max(1, ...rows.map((r) => r.total));
  // drawn at the page's own width (not scaled), so its 12 px labels stay readable on a phone
  const available = Math.min(960, Math.max(300, (content().clientWidth || 720) - 4));
  const left = 56, right = 64, bar = 22, gap = 10, top = 10;
  const width = available - left - right;
  const height = top + rows.length * (bar + gap) + 24;
  const chart = svg("svg", {
    viewBox: `0 0 ${available} ${height}`, width: available, height, role: "img", id: "latency-chart",
    "aria-label": "Per-turn latency breakdown: end of speech, end of turn, STT final, LLM first token, TTS first audio, first frame out",
  });
  rows.forEach((row, i) => {
    const y = top + i * (bar + gap);
    chart.append(svg("text", { x: 0, y: y + bar * 0.7 }, `Turn ${row.turn}`));
    let x = left;
    for (const seg of row.segs) {
      const w = (seg.ms / max) * width;
      const rect = svg("rect", { x, y, width: Math.max(w, 0.5), height: bar, class: `seg-${seg.cls}` },
        svg("title", {}, `${seg.label}: ${Math.round(seg.ms)} ms`));
      chart.append(rect);
      x += w;
    }
    chart.append(svg("text", { x: x + 6, y: y + bar * 0.7 }, `${Math.round(row.total)} ms`));
  });
  const axisY = height - 8;
  chart.append(svg("text", { x: left, y: axisY }, "0"), svg("text", { x: left + width - 40, y: axisY }, `${Math.round(max)} ms`));
  const legend = h("ul", { class: "legend" }, STEPS.map(([cls, label]) =>
    h("li", {}, h("span", { class: `swatch seg-${cls}`, "aria-hidden": "true" }), label)));
  const ms = (v) => (v === null || v === undefined ? "—" : Math.round(v));
  const data = table("Latency marks per turn (ms)", [
    ["Turn", (m) => m.turn, "num"],
    ["Silence waited", (m) => ms(m.silence_waited_ms), "num"],
    ["STT final", (m) => ms(m.stt_final_ms), "num"],
    ["LLM first token", (m) => ms(m.llm_first_token_ms), "num"],
    ["TTS first audio", (m) => ms(m.tts_first_audio_ms), "num"],
    ["First frame out", (m) => ms(m.first_frame_out_ms), "num"],
    ["Voice to voice", (m) => ms(m.voice_to_voice_ms), "num"],
    ["Turn ended by", (m) => m.detector || "—"],
  ], metrics);
  return h("div", { class: "chart" }, legend, chart,
    h("details", {}, h("summary", {}, "Latency marks as a table"), data));
}

const seconds = (ms) => (ms === null || ms === undefined ? "—" : `${(ms / 1000).toFixed(1)} s`);

/** A value of a tool's arguments or an analysis' data, in words (lists joined, nested objects as key: value). */
export function plain(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.map(plain).join(", ") || "—";
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k.replace(/_/g, " ")}: ${plain(v)}`).join("; ");
  return String(value);
}

/** The timeline's label for an event type. */
const KINDS = {
  tool_call: "tool call", provider_failover: "provider failover", provider_error: "provider failure",
  amd: "answering-machine check", "amd.beep": "voicemail beep", analysis: "post-call analysis",
};

function describe(event) {
  const d = event.data || {};
  switch (event.type) {
    case "status": return `${d.from ? d.from + " → " : ""}${d.to}${d.reason ? " (" + d.reason + ")" : ""}`;
    case "transcript": return d.text || "";
    case "turn_metrics": return `turn ${d.turn}: voice to voice ${d.voice_to_voice_ms == null ? "—" : Math.round(d.voice_to_voice_ms) + " ms"}`;
    case "turn_decision": return `${d.kind}: ${d.reason}`;
    case "interruption": return `${d.kind.replace("_", "-")}${d.caller_text ? ": “" + d.caller_text + "”" : ""}${d.heard_text ? " (heard: “" + d.heard_text + "”)" : ""}`;
    case "tool_call": {
      const args = Object.keys(d.arguments || {}).length ? ` with ${plain(d.arguments)}` : "";
      const outcome = d.ok === false ? "failed" : "succeeded";
      return `${d.name}${args}: ${outcome}${d.result ? " — " + d.result : ""}`;
    }
    case "provider_error": return `${d.component}: ${d.message}`;
    case "provider_failover": return d.text || `${d.kind} provider ${d.failed} failed (${d.reason})${d.next ? "; " + d.next + " takes over" : ""}`;
    case "conversation_started": return `agent ${d.agent}, ${d.direction}, ${d.first_speaker} speaks first`;
    case "conversation_ended": return `${d.reason}, ${d.turns} turn(s), ${fmtDuration(d.duration_s)}`;
    case "sip.progress": return `${d.code} ${d.reason || ""}`;
    case "dtmf": return `key ${d.digit}`;
    case "amd": return `${amdResult(d.result)} after ${seconds(d.decided_after_ms)}: ${d.reason}`;
    case "amd.beep": return d.how === "beep" ? `beep ended after ${seconds(d.after_ms)}` : `greeting ended after ${seconds(d.after_ms)} (no beep)`;
    case "analysis": return `${verdictWords(d.success)}${d.valid === false ? ", data does not fit the schema" : ""} (see Post-call analysis above)`;
    default: return Object.entries(d).map(([k, v]) => `${k}: ${plain(v)}`).join(", ");
  }
}

function amdResult(result) {
  return { human: "a person", machine: "an answering machine", unknown: "undecided (treated as a person)" }[result] || String(result);
}

const AMD_ACTIONS = {
  talk: "the agent talked", hangup: "hung up", leave_message: "left a message after the beep",
  continue: "the agent talked anyway",
};

function verdictWords(success) {
  return success === true ? "successful" : success === false ? "not successful" : "no verdict";
}

/** The answering-machine check of an outbound call (metadata.amd, timeline amd.beep), or null. */
function amdSection(call) {
  const amd = call.metadata && call.metadata.amd;
  if (!amd) return null;
  const beep = call.timeline.find((e) => e.type === "amd.beep");
  const rows = [
    ["Answered by", h("strong", {}, amdResult(amd.result))],
    ["How decided", amd.reason],
    ["Time to decision", seconds(amd.decided_after_ms)],
    ["Then", AMD_ACTIONS[amd.action] || amd.action || "—"],
  ];
  if (amd.beep_hz) rows.push(["Beep", `${amd.beep_hz} Hz`]);
  if (beep) rows.push(["Message started", beep.data.how === "beep" ? `after the beep, at ${seconds(beep.data.after_ms)}`
    : `after the greeting ended, at ${seconds(beep.data.after_ms)} (no beep heard)`]);
  return h("section", { "aria-labelledby": "amd-heading", id: "amd" }, h("h2", { id: "amd-heading" }, "Answering machine detection"),
    h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

/** The post-call analysis (metadata.analysis) with a "Re-run analysis" button, or null. */
function analysisSection(call, rerun) {
  const a = call.metadata && call.metadata.analysis;
  if (!a) return null;
  const data = Object.entries(a.data || {});
  const verdict = h("span", { class: `verdict ${a.success === true ? "yes" : a.success === false ? "no" : ""}` },
    verdictWords(a.success));
  const button = h("button", { type: "button", class: "secondary" }, "Re-run analysis");
  button.addEventListener("click", () => rerun(button));
  return h("section", { "aria-labelledby": "analysis-heading", id: "analysis" },
    h("h2", { id: "analysis-heading" }, "Post-call analysis"),
    h("dl", { class: "facts" },
      h("dt", {}, "Summary"), h("dd", { id: "analysis-summary" }, a.summary || "—"),
      h("dt", {}, "Outcome"), h("dd", { id: "analysis-verdict" }, verdict, a.success_reason ? ` — ${a.success_reason}` : ""),
      h("dt", {}, "Structured data"), h("dd", { id: "analysis-data" }, data.length
        ? h("dl", { class: "data" }, data.map(([k, v]) => [h("dt", {}, k), h("dd", {}, plain(v))]))
        : "none"),
      h("dt", {}, "Checked against the schema"), h("dd", {}, a.valid === false
        ? h("span", { class: "field-error" }, `does not fit: ${(a.errors || []).join("; ")}`) : "fits"),
      h("dt", {}, "Analysed"), h("dd", { id: "analysis-at" }, `${fmtTime(a.analyzed_at)}${a.by ? " by " + a.by : ""}`)),
    h("div", { class: "actions" }, button, h("span", { id: "analysis-result", role: "status", "aria-live": "polite" })));
}

function transcriptList(entries) {
  if (!entries.length) return h("p", { class: "note" }, "Nothing was said.");
  return h("ol", { class: "transcript", id: "transcript" }, entries.map((e) =>
    h("li", { class: e.role },
      h("span", { class: "who" }, e.role === "caller" ? "Caller" : e.role === "agent" ? "Agent" : e.role),
      e.text,
      e.metadata && e.metadata.interrupted ? h("span", { class: "interrupted" }, "(interrupted)") : null,
      h("span", { class: "when" }, fmtClock(e.at)))));
}

function timelineList(events) {
  const shown = events.filter((e) => e.type !== "transcript");
  if (!shown.length) return h("p", { class: "note" }, "No events.");
  return h("ol", { class: "timeline", id: "timeline" }, shown.map((e) =>
    h("li", {}, h("span", { class: "at" }, fmtClock(e.at)), h("span", { class: "kind" }, KINDS[e.type] || e.type.replace(/_/g, " ")),
      h("span", { class: "data" }, describe(e)))));
}

function webhooksTable(rows) {
  return table("Webhooks", [
    ["Event", (w) => w.event],
    ["Delivery", (w) => badge(w.status)],
    ["Attempts", (w) => w.attempts, "num"],
    ["To", (w) => w.url],
    ["Delivered", (w) => fmtTime(w.delivered_at)],
    ["Last error", (w) => w.last_error || "—"],
  ], rows, "No webhooks for this call (no webhook URL was set).");
}

export async function render() {
  const id = pathTail("/ui/calls/");
  setTitle(`Call ${id.slice(0, 8)}`);
  let call, hooks;
  try {
    [call, hooks] = await Promise.all([
      api(`/api/calls/${encodeURIComponent(id)}`),
      api(`/api/calls/${encodeURIComponent(id)}/webhooks`),
    ]);
  } catch (e) {
    showError(content(), e);
    return;
  }
  const facts = [
    ["Status", badge(call.status)], ["Direction", call.direction], ["Channel", callChannel(call)],
    ["Agent", call.agent], ["From", numberOrDash(call.from_number)], ["To", numberOrDash(call.to_number)],
    ["Created", fmtTime(call.created_at)], ["Answered", fmtTime(call.answered_at)], ["Ended", fmtTime(call.ended_at)],
    ["Duration", fmtDuration(call.duration_s)], ["End reason", numberOrDash(call.end_reason)],
    ["Trunk", numberOrDash(call.trunk)], ["Attempt", call.attempt], ["Call id", call.id],
  ];
  const campaignId = call.metadata && call.metadata.campaign_id;
  if (campaignId) {
    facts.push(["Campaign", h("a", { href: `/ui/campaigns/${encodeURIComponent(campaignId)}` },
      `${campaignId.slice(0, 8)}, line ${call.metadata.campaign_line ?? "—"}, attempt ${call.metadata.campaign_attempt ?? "—"}`)]);
  }
  async function rerun(button) {
    button.disabled = true;
    const said = document.getElementById("analysis-result");
    try {
      await api(`/api/calls/${encodeURIComponent(id)}/analyze`, { method: "POST" });
      await render();
      setStatus("Analysis re-run.");
      document.querySelector("#analysis button")?.focus();
    } catch (e) {
      if (said) said.textContent = `Could not re-run the analysis: ${e.message}`;
      button.disabled = false;
    }
  }
  const actions = h("div", { class: "actions" });
  if (LIVE.has(call.status)) {
    const cancel = h("button", { type: "button", class: "danger" }, "Cancel call");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await api(`/api/calls/${encodeURIComponent(id)}/cancel`, { method: "POST" });
        setStatus("Call canceled.");
        render();
      } catch (e) {
        setStatus(e.message);
        cancel.disabled = false;
      }
    });
    actions.append(cancel);
  }
  const metrics = call.timeline.filter((e) => e.type === "turn_metrics").map((e) => e.data);
  const recording = call.has_recording
    ? h("div", {},
      h("audio", { controls: true, preload: "none", src: `/api/calls/${encodeURIComponent(id)}/recording`, "aria-label": "Call recording" }),
      h("p", {}, h("a", { href: `/api/calls/${encodeURIComponent(id)}/recording`, download: `${id}.wav` }, "Download the recording (WAV)")))
    : h("p", { class: "note" }, "No recording (recording is off for this agent, or the call was not answered).");
  fill(content(),
    h("section", { "aria-labelledby": "facts-heading" }, h("h2", { id: "facts-heading" }, "Summary"),
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])), actions),
    amdSection(call),
    analysisSection(call, rerun),
    h("section", { "aria-labelledby": "latency-heading" }, h("h2", { id: "latency-heading" }, "Latency per turn"),
      latencyChart(metrics)),
    h("section", { "aria-labelledby": "transcript-heading" }, h("h2", { id: "transcript-heading" }, "Transcript"),
      transcriptList(call.transcript)),
    h("section", { "aria-labelledby": "recording-heading" }, h("h2", { id: "recording-heading" }, "Recording"), recording),
    h("section", { "aria-labelledby": "timeline-heading" }, h("h2", { id: "timeline-heading" }, "Timeline"),
      timelineList(call.timeline)),
    h("section", { "aria-labelledby": "webhooks-heading" }, h("h2", { id: "webhooks-heading" }, "Webhooks"),
      webhooksTable(hooks.webhooks)));
}
