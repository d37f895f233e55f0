// The participant's screen: clips full screen, the rating form, instructions in their language.
// Onsets are the presentation times of the first frame (requestVideoFrameCallback), carried to
// the host's clock by a round-trip clock sync over the websocket; never the time of a click.
"use strict";

const screen = document.getElementById("screen");
const pauseBox = document.getElementById("pause");
let ws = null;
let lang = "en";
let shownKey = null;
let cleanup = () => {};

// Clock sync: host seconds = page ms / 1000 + offset, from the exchange with the shortest round trip.
const sync = { offset: null, rtt: Infinity, pending: {}, next: 1, samples: [] };
function t(key) { return (TEXTS[lang] || TEXTS.en)[key] || TEXTS.en[key] || key; }
function hostTime(pageMs) { return pageMs / 1000 + sync.offset; }
function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }
function ping() {
  const id = sync.next++;
  sync.pending[id] = performance.now();
  send({ type: "sync", id });
}
function onSync(msg) {
  const t0 = sync.pending[msg.id];
  delete sync.pending[msg.id];
  if (t0 === undefined) return;
  const t1 = performance.now();
  sync.samples.push({ rtt: t1 - t0, offset: msg.host - (t0 + t1) / 2000 });
  sync.samples = sync.samples.slice(-30);
  const best = sync.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
  sync.offset = best.offset;
  sync.rtt = best.rtt;
}
function synced() {
  return new Promise((resolve) => {
    const wait = () => (sync.offset !== null && sync.samples.length >= 5 ? resolve() : setTimeout(wait, 20));
    wait();
  });
}

function connect() {
  ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
  ws.onopen = () => { for (let i = 0; i < 10; i++) setTimeout(ping, i * 30); };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = () => { shownKey = null; cleanup(); show(`<p>${t("reconnecting")}</p>`); setTimeout(connect, 500); };
}
setInterval(() => { if (ws && ws.readyState === WebSocket.OPEN) ping(); }, 2000);

function handle(msg) {
  if (msg.type === "sync") onSync(msg);
  else if (msg.type === "view") render(msg);
  else if (msg.type === "check_clips") checkClips(msg.clips);
  else if (msg.type === "error") console.warn(msg.text);
}

function show(html) { screen.innerHTML = html; }

function render(view) {
  lang = view.language || "en";
  document.documentElement.lang = lang;
  pauseBox.hidden = !view.paused;
  pauseBox.textContent = t("paused");
  const key = JSON.stringify(view);
  if (key === shownKey) return; // the same step re-sent: keep playing what plays
  shownKey = key;
  cleanup();
  cleanup = () => {};
  screen.dataset.step = view.step;
  screen.dataset.kind = view.paused ? "paused" : view.kind;
  if (view.paused) { show(""); return; }
  const kinds = { instructions, baseline: fixation, washout: fixation, clip, rating, attention, end };
  (kinds[view.kind] || end)(view);
}

function instructions(view) {
  show(`<h1>${t("welcome")}</h1><p>${t("instructions")}</p>` +
       (view.status === "ready" ? `<p><em>${t("wait")}</em></p>` : "") +
       `<button class="big" id="begin">${t("begin")}</button>`);
  document.getElementById("begin").onclick = enterFullscreen;
}

function enterFullscreen() {
  const el = document.documentElement;
  if (el.requestFullscreen && !document.fullscreenElement) el.requestFullscreen().catch(() => {});
}

function fixation(view) {
  show(`<p>${t("rest")}</p><div class="fixation">+</div>`);
  synced().then(() => requestAnimationFrame((ts) => send({ type: "shown", step: view.step, host: hostTime(ts) })));
}

// A frame's display ends when the next one would show: its media duration from the steps between
// consecutive presented frames (the median, so that a dropped frame does not count).
function frameSeconds(frames) {
  const steps = [];
  for (let i = 1; i < frames.length; i++) {
    const n = frames[i].presentedFrames - frames[i - 1].presentedFrames;
    if (n > 0) steps.push((frames[i].mediaTime - frames[i - 1].mediaTime) / n);
  }
  steps.sort((a, b) => a - b);
  return steps.length ? steps[Math.floor(steps.length / 2)] : 0;
}

function clip(view) {
  show("");
  const video = document.createElement("video");
  video.className = "stimulus";
  video.playsInline = true;
  video.preload = "auto";
  video.src = view.clip_url;
  document.body.appendChild(video);
  let onset = null, alive = true, ended = false;
  const frames = []; // the last few presented frames' metadata
  cleanup = () => { alive = false; video.pause(); video.removeAttribute("src"); video.load(); video.remove(); };
  const onFrame = (now, meta) => {
    if (!alive) return;
    if (onset === null) {
      onset = meta;
      send({ type: "onset", step: view.step, host: hostTime(meta.presentationTime), media_s: meta.mediaTime,
             detail: { page_presentation_ms: meta.presentationTime, expected_display_ms: meta.expectedDisplayTime,
                       callback_ms: now, media_s: meta.mediaTime, frames: meta.presentedFrames,
                       sync_rtt_ms: sync.rtt, sync_offset_s: sync.offset } });
    }
    frames.push(meta);
    if (frames.length > 8) frames.shift();
    if (!ended) video.requestVideoFrameCallback(onFrame);
  };
  // The offset is when the last presented frame's display ends: its presentationTime plus one
  // frame. The callback of a frame presented just before 'ended' may still be due, so the offset
  // is sent two animation frames later; hiding the video takes the last frame off the screen.
  video.addEventListener("ended", () => {
    if (!alive || ended) return;
    ended = true;
    video.style.visibility = "hidden";
    requestAnimationFrame((hiddenMs) => requestAnimationFrame(() => {
      if (!alive) return;
      alive = false;
      const last = frames[frames.length - 1];
      const frameS = frameSeconds(frames);
      const offsetMs = last ? last.presentationTime + (frameS * 1000) / (video.playbackRate || 1) : hiddenMs;
      send({ type: "offset", step: view.step, host: hostTime(offsetMs),
             detail: { page_ms: offsetMs, last_presentation_ms: last && last.presentationTime,
                       last_media_s: last && last.mediaTime, frame_s: frameS, duration_s: video.duration,
                       hidden_paint_ms: hiddenMs, frames: last && last.presentedFrames } });
    }));
  });
  synced().then(() => {
    if (!alive) return;
    video.requestVideoFrameCallback(onFrame);
    video.play().catch(() => {
      // A reloaded page has no user gesture yet: sound needs one tap.
      show(`<button class="big" id="tap">${t("tap")}</button>`);
      document.getElementById("tap").onclick = () => { show(""); enterFullscreen(); video.play(); };
    });
  });
}

function scaleRow(name, points, lo, hi) {
  const sam = SAM_SCALES.includes(name);
  let buttons = "";
  if (sam) buttons = samButtons(name, points, t);
  else {
    for (let v = 1; v <= points; v++) {
      buttons += `<button type="button" role="radio" aria-checked="false" data-scale="${name}" data-value="${v}"` +
                 ` aria-label="${t(name)} ${v}">${v}</button>`;
    }
  }
  return `<div class="scale${sam ? " sam" : ""}" data-scale="${name}" role="radiogroup" aria-label="${t(name)}">` +
         `<h2>${t(name)}</h2><div class="points">${buttons}</div>` +
         `<div class="anchors" aria-hidden="true"><span>${t(lo)}</span><span>${t(hi)}</span></div></div>`;
}

// A form of 1..points scales answered by mouse, touch or keyboard; calls done(values) on submit.
function scaleForm(title, scales, points, labels, done) {
  const shownAt = performance.now();
  const values = {};
  let focus = 0;
  show(`<h1>${title}</h1>` + scales.map((s) => scaleRow(s, points, labels(s)[0], labels(s)[1])).join("") +
       `<p class="keys">${t("keys")}</p><button class="big" id="next" disabled>${t("next")}</button>`);
  const rows = [...screen.querySelectorAll(".scale")];
  const next = document.getElementById("next");
  const paint = () => {
    rows.forEach((row, i) => row.classList.toggle("focused", i === focus));
    screen.querySelectorAll(".scale button").forEach((b) =>
      b.setAttribute("aria-checked", String(values[b.dataset.scale] === Number(b.dataset.value))));
    next.disabled = Object.keys(values).length !== scales.length;
  };
  const choose = (scale, value) => { values[scale] = value; paint(); };
  screen.querySelectorAll(".scale button").forEach((b) => {
    b.addEventListener("click", () => { choose(b.dataset.scale, Number(b.dataset.value)); focus = scales.indexOf(b.dataset.scale); paint(); });
  });
  const submit = () => {
    if (next.disabled) return;
    document.removeEventListener("keydown", onKey);
    done(values, Math.round(performance.now() - shownAt));
  };
  next.onclick = submit;
  const onKey = (e) => {
    const scale = scales[focus];
    if (e.key >= "1" && e.key <= String(Math.min(points, 9))) {
      choose(scale, Number(e.key));
      if (focus < scales.length - 1) focus++;
    } else if (e.key === "ArrowRight") choose(scale, Math.min(points, (values[scale] || 0) + 1));
    else if (e.key === "ArrowLeft") choose(scale, Math.max(1, (values[scale] || 2) - 1));
    else if (e.key === "ArrowDown" || e.key === "Tab") focus = Math.min(scales.length - 1, focus + 1);
    else if (e.key === "ArrowUp") focus = Math.max(0, focus - 1);
    else if (e.key === "Enter") { submit(); return; }
    else return;
    e.preventDefault();
    paint();
  };
  document.addEventListener("keydown", onKey);
  cleanup = () => document.removeEventListener("keydown", onKey);
  paint();
}

function rating(view) {
  scaleForm(t("rate"), view.scales, view.points, (s) => [`${s}_lo`, `${s}_hi`], (values, ms) =>
    synced().then(() => send({ type: "rating", step: view.step, values, response_ms: ms, host: hostTime(performance.now()) })));
}

function attention(view) {
  const prompt = (view.answer_prompt || t("attention")).replace("{answer}", view.answer);
  scaleForm(prompt, ["check"], view.points, () => ["", ""], (values, ms) =>
    synced().then(() => send({ type: "attention", step: view.step, value: values.check, response_ms: ms,
                               host: hostTime(performance.now()) })));
}

function end(view) {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  show(`<h1>${view.status === "aborted" ? t("aborted") : t("done")}</h1>`);
}

// Pre-flight: every clip loads and decodes a frame here, on the participant's own screen.
function checkClips(clips) {
  const one = (c) => new Promise((resolve) => {
    const v = document.createElement("video");
    v.preload = "auto";
    v.muted = true;
    const timer = setTimeout(() => finish(false, "timed out"), 10000);
    const finish = (ok, error) => { clearTimeout(timer); resolve({ id: c.id, ok, error, duration: v.duration || 0 }); v.removeAttribute("src"); v.load(); };
    v.addEventListener("loadeddata", () => finish(true));
    v.addEventListener("error", () => finish(false, v.error ? `media error ${v.error.code}` : "error"));
    v.src = c.url;
  });
  Promise.all(clips.map(one)).then((results) => send({ type: "check_clips", results }));
}

connect();
