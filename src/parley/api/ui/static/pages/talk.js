// Talk to an agent from the browser over WebRTC: microphone (Opus) to the agent, its voice back, and the live
// transcript of both sides from the "events" data channel.
//
// Signalling (non-trickle ICE): the page gathers all its candidates, then POST /api/webrtc/offer
// {agent, sdp, type: "offer"} -> {call_id, sdp, type: "answer"}; DELETE /api/webrtc/calls/{id} ends the call.
// Events on the data channel: {type: "transcript", role: "caller"|"agent", text, final},
// {type: "state", state}, {type: "ended", reason}.
import { api, content, fill, h, pathTail, setStatus, setTitle, showError } from "../lib.js";

const ICE_GATHER_TIMEOUT_MS = 5000;
const VOICE_RMS = 0.01; // a 10 ms block louder than this counts as voice
const METER_MS = 10;

/**
 * Measures in the page what the caller waits: from the end of their voice (microphone) to the first audio of
 * the agent's reply (the remote track), with WebAudio level meters. `onReply(ms)` gets each turn's delay.
 */
class ReplyMeter {
  constructor(mic, remote, onReply) {
    this.ctx = new AudioContext();
    this.mic = this.analyser(mic);
    this.remote = this.analyser(remote);
    this.buf = new Float32Array(1024);
    this.lastMicVoice = 0;
    this.lastRemoteVoice = 0;
    this.callerSpokeSinceReply = false;
    this.onReply = onReply;
    this.timer = setInterval(() => this.tick(), METER_MS);
  }

  analyser(stream) {
    const node = this.ctx.createAnalyser();
    node.fftSize = 1024;
    this.ctx.createMediaStreamSource(stream).connect(node);
    return node;
  }

  level(node) {
    node.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const v of this.buf) sum += v * v;
    return Math.sqrt(sum / this.buf.length);
  }

  tick() {
    const now = performance.now();
    if (this.level(this.mic) > VOICE_RMS) {
      this.lastMicVoice = now;
      this.callerSpokeSinceReply = true;
    }
    if (this.level(this.remote) > VOICE_RMS) {
      const silentBefore = now - this.lastRemoteVoice > 300;
      if (silentBefore && this.callerSpokeSinceReply && this.lastMicVoice < now - METER_MS) {
        this.callerSpokeSinceReply = false;
        this.onReply(now - this.lastMicVoice);
      }
      this.lastRemoteVoice = now;
    }
  }

  close() {
    clearInterval(this.timer);
    this.ctx.close().catch(() => {});
  }
}

function iceGatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === "complete") done(); }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export async function render() {
  const key = pathTail("/ui/talk/");
  let agent;
  try {
    agent = await api(`/api/agents/${encodeURIComponent(key)}`);
  } catch (e) {
    showError(content(), e);
    return;
  }
  setTitle(`Talk to ${agent.name}`);

  const start = h("button", { type: "button", id: "start-call" }, "Start call");
  const end = h("button", { type: "button", id: "end-call", class: "danger", disabled: true }, "End call");
  const state = h("span", { class: "call-state", id: "call-state", role: "status", "aria-live": "polite" }, "Not connected");
  const transcript = h("ol", { class: "transcript", id: "live-transcript", "aria-live": "polite", "aria-relevant": "additions text" });
  const audio = h("audio", { id: "agent-audio", autoplay: true, "aria-label": "The agent's voice" });
  const record = h("p", { id: "call-record" });
  const delays = h("p", { id: "reply-delays", class: "note", "aria-live": "off" });
  fill(content(),
    h("p", {}, agent.description || "",
      " Your microphone is sent to the agent; its voice plays here. Speak as on the phone — you may interrupt it."),
    h("div", { class: "talk-controls" }, start, end, state),
    audio,
    h("section", { "aria-labelledby": "live-transcript-heading" },
      h("h2", { id: "live-transcript-heading" }, "Transcript"), transcript),
    delays,
    record);

  let pc = null;
  let mic = null;
  let meter = null;
  const measured = [];

  function showDelay(ms) {
    measured.push(Math.round(ms));
    delays.dataset.delays = measured.join(",");
    const sorted = measured.slice().sort((a, b) => a - b);
    const median = sorted[Math.floor((sorted.length - 1) / 2)];
    delays.textContent = `Reply delay (end of your speech → the agent's voice, measured here): last ${measured[measured.length - 1]} ms, median ${median} ms over ${measured.length} turn(s).`;
  }
  let callId = null;
  const pending = {}; // role -> the <li> of that side's unfinished utterance

  function setState(text) {
    state.textContent = text;
  }

  function onTranscript(msg) {
    const role = msg.role === "agent" ? "agent" : "caller";
    let li = pending[role];
    if (!li) {
      li = h("li", { class: `${role} partial` }, h("span", { class: "who" }, role === "agent" ? agent.name : "You"), h("span", { class: "text" }));
      transcript.append(li);
      pending[role] = li;
    }
    li.querySelector(".text").textContent = msg.text;
    if (msg.final) {
      li.classList.remove("partial");
      if (msg.interrupted) li.append(h("span", { class: "interrupted" }, "(interrupted)"));
      delete pending[role];
    }
  }

  function cleanup(reason) {
    if (meter) meter.close();
    meter = null;
    if (pc) pc.close();
    pc = null;
    if (mic) mic.getTracks().forEach((t) => t.stop());
    mic = null;
    audio.srcObject = null;
    start.disabled = false;
    end.disabled = true;
    setState(reason ? `Call ended: ${reason}` : "Call ended");
    if (callId) {
      fill(record, h("a", { href: `/ui/calls/${encodeURIComponent(callId)}` }, "Open this call's record"));
    }
    start.focus();
  }

  function onEvent(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch { return; }
    if (msg.type === "transcript") onTranscript(msg);
    else if (msg.type === "state") setState(msg.state.replace(/_/g, " "));
    else if (msg.type === "ended") cleanup(msg.reason);
  }

  start.addEventListener("click", async () => {
    start.disabled = true;
    transcript.replaceChildren();
    record.replaceChildren();
    measured.length = 0;
    delays.textContent = "";
    delete delays.dataset.delays;
    callId = null;
    setStatus("");
    try {
      setState("Asking for the microphone…");
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false,
      });
      pc = new RTCPeerConnection({ iceServers: [] });
      const events = pc.createDataChannel("events");
      events.addEventListener("message", onEvent);
      mic.getTracks().forEach((track) => pc.addTrack(track, mic));
      pc.addEventListener("track", (e) => {
        audio.srcObject = e.streams[0] || new MediaStream([e.track]);
        audio.play().catch(() => {});
        try {
          meter = new ReplyMeter(mic, audio.srcObject, showDelay);
        } catch (error) { /* no WebAudio: the call works without the measurement */ }
      });
      pc.addEventListener("connectionstatechange", () => {
        if (!pc) return;
        if (pc.connectionState === "connected") setState("Connected");
        if (pc.connectionState === "failed") cleanup("the connection failed");
      });
      setState("Connecting…");
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringDone(pc);
      const answer = await api("/api/webrtc/offer", {
        method: "POST", body: { agent: agent.key, sdp: pc.localDescription.sdp, type: pc.localDescription.type },
      });
      callId = answer.call_id;
      transcript.dataset.callId = callId;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      end.disabled = false;
      end.focus();
    } catch (e) {
      setStatus(`Could not start the call: ${e.message || e}`);
      cleanup("not started");
    }
  });

  end.addEventListener("click", async () => {
    end.disabled = true;
    const id = callId;
    try {
      if (id) await api(`/api/webrtc/calls/${encodeURIComponent(id)}`, { method: "DELETE" });
    } catch (e) {
      setStatus(`Ending the call: ${e.message}`);
    }
    cleanup("you hung up");
  });

  window.addEventListener("pagehide", () => {
    if (callId && pc) {
      fetch(`/api/webrtc/calls/${encodeURIComponent(callId)}`, {
        method: "DELETE", keepalive: true, credentials: "same-origin",
        headers: { "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content },
      });
    }
  });
}
