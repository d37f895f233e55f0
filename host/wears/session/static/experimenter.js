// The experimenter's screen: the run, the watch (live heart rate and signal quality), controls, notes.
"use strict";

let ws = null;
let state = null;
const $ = (id) => document.getElementById(id);
function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }
function text(id, value) { $(id).textContent = value === null || value === undefined ? "-" : String(value); }

function connect() {
  ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
  ws.onopen = () => text("link", "connected");
  ws.onclose = () => { text("link", "disconnected; retrying"); setTimeout(connect, 1000); };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "state") render(msg);
    else if (msg.type === "error") alert(msg.text);
  };
}

function render(s) {
  state = s;
  text("participant", s.participant);
  text("language", s.language);
  text("status", s.status + (s.paused ? " (paused)" : ""));
  text("step", `${s.step + 1} of ${s.steps}: ${s.step_kind}${s.clip ? " " + s.clip : ""}`);
  text("screens", s.participant_screens);
  const link = $("participant-link");
  link.href = s.participant_path;
  link.textContent = location.origin + s.participant_path;
  const w = s.watch;
  text("w-address", w.address ? `${w.address} ${w.name || ""}` : null);
  text("w-connected", w.connected ? "yes" : "no");
  text("w-state", w.state);
  text("w-backfill", w.pending_records ? `${w.pending_records} records pending` : (w.state ? "up to date" : null));
  text("w-reconnects", w.reconnects);
  text("w-hr", w.heart_rate === null ? null : `${w.heart_rate.toFixed(1)} bpm`);
  text("w-quality", w.quality === null ? null : `${w.quality}%`);
  text("w-battery", w.battery === null ? null : `${w.battery}%`);
  text("w-flash", w.flash_free_kb === null ? null : `${w.flash_free_kb} kB`);
  text("w-samples", w.samples);
  text("w-lost", w.lost_records);
  $("start").disabled = s.status !== "ready";
  $("pauseresume").textContent = s.paused ? "Resume" : "Pause";
  $("pauseresume").disabled = s.status !== "running";
  $("abort").disabled = s.status === "complete" || s.status === "aborted";
  const checks = $("checks");
  checks.innerHTML = "";
  if (s.preflight) {
    for (const c of s.preflight.checks) {
      const row = checks.insertRow();
      row.insertCell().textContent = c.name;
      const ok = row.insertCell();
      ok.textContent = c.ok ? "ok" : "FAIL";
      ok.className = c.ok ? "ok" : "fail";
      row.insertCell().textContent = c.detail;
    }
  }
  const found = $("found");
  found.innerHTML = "";
  for (const f of s.found) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.textContent = "Connect";
    b.onclick = () => send({ type: "connect", address: f.address });
    li.textContent = `${f.name} ${f.address} (rssi ${f.rssi}) `;
    li.appendChild(b);
    found.appendChild(li);
  }
  const log = $("log");
  log.innerHTML = "";
  for (const entry of s.log) {
    const li = document.createElement("li");
    li.textContent = entry.text;
    log.appendChild(li);
  }
}

$("preflight").onclick = () => send({ type: "preflight" });
$("start").onclick = () => {
  const passed = state && state.preflight && state.preflight.ok;
  if (passed) send({ type: "start" });
  else if (confirm("The pre-flight check has not passed. Start anyway?")) send({ type: "start", force: true });
};
$("pauseresume").onclick = () => send({ type: state && state.paused ? "resume" : "pause" });
$("abort").onclick = () => {
  const reason = prompt("Abort the session? The data recorded so far is kept. Reason:");
  if (reason !== null) send({ type: "abort", reason: reason || "aborted by the experimenter" });
};
$("marker").onclick = () => send({ type: "marker" });
$("save-note").onclick = () => { send({ type: "note", text: $("note").value }); $("note").value = ""; };
$("scan").onclick = () => send({ type: "scan" });
connect();
