// streamvid studio page: speaks the WebSocket protocol of docs/studio.md, plays the frames at the video's fps,
// shows the live numbers and the search tree. `window.studio` holds the page state (read by the browser test).
"use strict";

const MIME = { png: "image/png", jpeg: "image/jpeg" };
const $ = (id) => document.getElementById(id);
const st = window.studio = {
  ws: null, cfg: null, session: null, streaming: false,
  expect: [],          // chunk metadata whose binary frames are still to come
  play: [],            // frames waiting to be drawn, in order: {chunk, index, frame, bitmap}
  drawn: 0, lastDrawn: null, t0: 0, ttff: null, nextDue: 0,
  latencies: [], chunks: [], switches: [], errors: [], done: null, nfe: 0,
};

function setStatus(text) { $("status").textContent = text; }
function showError(message) { st.errors.push(message); $("error").textContent = message; }
function send(obj) {
  if (!st.ws || st.ws.readyState !== WebSocket.OPEN) { showError("not connected to the server"); return; }
  st.ws.send(JSON.stringify(obj));
}

function connect() {
  const ws = st.ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onJSON(JSON.parse(ev.data)) : onFrame(ev.data));
  ws.onclose = () => { st.streaming = false; setStatus("disconnected (reload the page)"); };
}

function onJSON(m) {
  switch (m.type) {
    case "hello": return onHello(m);
    case "busy": return setStatus(`busy: waiting for a free stream, place ${m.position} in the queue`);
    case "started":
      setStatus(`streaming (${m.strategy}${m.budget ? ` at ${m.budget}x: ${m.beams} beams x ${m.children} children` : ""})`);
      return;
    case "chunk": return onChunk(m);
    case "switched":
      st.switches.push({ chunk: m.chunk, prompt: m.prompt });
      $("switches").textContent = st.switches.map((s) => `chunk ${s.chunk}: ${s.prompt}`).join("; ");
      return;
    case "done": return onDone(m);
    case "error":
      if (m.about === "start" || m.about === "stream") { st.streaming = false; setStatus("ready"); }
      return showError(m.message);
  }
}

function onHello(m) {
  st.cfg = m.config; st.session = m.session;
  const c = st.cfg, canvas = $("view");
  canvas.width = c.width; canvas.height = c.height;
  $("prompt").value = c.prompt; $("prompt").maxLength = c.max_prompt_chars;
  $("seed").value = c.seed; $("frames").value = c.frames; $("frames").step = c.chunk_frames;
  $("frames").max = c.max_frames; $("budget").max = c.max_budget; $("budget").value = c.budget ?? 2;
  const sel = $("strategy");
  for (const s of c.strategies) sel.add(new Option(s, s, false, s === c.strategy));
  setStatus("ready");
  if (c.note) $("note").textContent = c.note;
}

function onChunk(m) {
  m.received = 0;
  st.expect.push(m);
  st.chunks.push(m);
  st.latencies.push(m.seconds);
  st.nfe = m.nfe;
  const lat = [...st.latencies].sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  $("latency").textContent = `${(q(0.5) * 1000).toFixed(0)} ms / ${(q(0.95) * 1000).toFixed(0)} ms`;
  $("fps").textContent = `${m.generated_fps.toFixed(1)} / ${st.cfg.fps} (${(m.generated_fps / st.cfg.fps).toFixed(1)}x real time)`;
  $("nfe").textContent = String(m.nfe);
  $("current-prompt").textContent = m.prompt;
  if (m.best) $("best").textContent = ["short", "long", "fused"].map((k) => m.best[k].toFixed(3)).join(" / ");
  if (m.tree) drawTree();
}

function onFrame(data) {
  const m = st.expect[0];
  if (!m) { showError("a frame arrived without its chunk metadata"); return; }
  const item = { chunk: m.chunk, index: m.received, frame: m.first_frame + m.received, bitmap: null };
  m.received += 1;
  if (m.received === m.frames) st.expect.shift();
  st.play.push(item);
  createImageBitmap(new Blob([data], { type: MIME[m.format] })).then((b) => { item.bitmap = b; });
}

// the player: one frame every 1/fps seconds, as soon as it is decoded (checked on every animation frame)
function tick() {
  requestAnimationFrame(tick);
  const now = performance.now(), head = st.play[0];
  if (head && head.bitmap && now >= st.nextDue) {
    const ctx = $("view").getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(head.bitmap, 0, 0);
    st.play.shift();
    st.drawn += 1;
    st.lastDrawn = { chunk: head.chunk, index: head.index, frame: head.frame };
    if (st.ttff === null) {
      st.ttff = (now - st.t0) / 1000;
      $("ttff").textContent = `${(st.ttff * 1000).toFixed(0)} ms`;
    }
    st.nextDue = Math.max(st.nextDue, now - 1000 / st.cfg.fps) + 1000 / st.cfg.fps;
    $("progress").textContent = `${st.chunks.length} / ${st.drawn}`;
  }
}
requestAnimationFrame(tick);

function onDone(m) {
  st.done = m; st.streaming = false;
  setStatus(m.stopped ? `stopped after ${m.frames} frames` : `done: ${m.frames} frames, NFE ${m.nfe}`);
  const box = $("downloads");
  box.innerHTML = "";
  if (m.download) {
    box.innerHTML = `<h2>download this session</h2><a id="dl-video" href="${m.download.video}">video (mp4)</a> · ` +
      `<a id="dl-config" href="${m.download.config}">resolved config (yaml)</a><br>` +
      `regenerate the same frames: <code id="dl-command"></code>`;
    $("dl-command").textContent = m.download.command;
  } else if (m.download_note) {
    box.textContent = m.download_note;
  }
}

function start() {
  const strategy = $("strategy").value;
  const msg = { type: "start", prompt: $("prompt").value, seed: Number($("seed").value), strategy,
                frames: Number($("frames").value) };
  if (strategy !== "plain") msg.budget = Number($("budget").value);
  if (!Number.isInteger(msg.seed) || !Number.isInteger(msg.frames)) { showError("seed and frames must be whole numbers"); return; }
  if (st.streaming) { showError("start: a stream is already running; stop it first"); return; }
  Object.assign(st, { expect: [], play: [], drawn: 0, lastDrawn: null, ttff: null, nextDue: 0, latencies: [],
                      chunks: [], switches: [], done: null, streaming: true, frames: msg.frames,
                      t0: performance.now() });
  for (const id of ["ttff", "latency", "fps", "nfe", "progress", "best", "switches"]) $(id).textContent = "–";
  $("current-prompt").textContent = msg.prompt;
  $("error").textContent = ""; $("downloads").innerHTML = "";
  $("tree").innerHTML = "";
  send(msg);
}

// ------------------------------------------------------------------ the search tree (SVG)
function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawTree() {
  const tree = $("tree"), levels = st.chunks.filter((c) => c.tree);
  tree.innerHTML = "";
  const scores = levels.flatMap((c) => c.tree.map((n) => n.fused)).filter((v) => Number.isFinite(v));
  const lo = Math.min(...scores, 0), hi = Math.max(...scores, 1e-9);
  const height = 200, top = 28, bottom = 40, colW = Math.max(16, Math.min(44, 1100 / (st.frames / st.cfg.chunk_frames))),
    left = 30;
  const y = (v) => (Number.isFinite(v) ? top + (hi - v) / (hi - lo || 1) * (height - top - bottom) : height - bottom);
  const x = (k) => left + k * colW;
  tree.setAttribute("width", Math.max(400, x(st.frames / st.cfg.chunk_frames) + colW));
  const pos = new Map();  // "chunk:candidate" -> [x, y]
  for (const c of levels) for (const n of c.tree) pos.set(`${c.chunk}:${n.candidate}`, [x(c.chunk), y(n.fused)]);
  for (const c of levels) {
    const prev = st.chunks.find((p) => p.chunk === c.chunk - 1);
    for (const n of c.tree) {
      if (!prev || !prev.survivors.length) continue;
      const from = pos.get(`${prev.chunk}:${prev.survivors[n.parent]}`), to = pos.get(`${c.chunk}:${n.candidate}`);
      if (from) tree.append(svg("line", { class: "edge", x1: from[0], y1: from[1], x2: to[0], y2: to[1] }));
    }
  }
  for (const c of levels) {
    tree.append(svg("text", { class: "label", x: x(c.chunk) - 4, y: height - 4 }, String(c.chunk)));
    for (const n of c.tree) {
      const [cx, cy] = pos.get(`${c.chunk}:${n.candidate}`);
      const best = c.survivors.length && c.survivors[0] === n.candidate;
      const circle = svg("circle", { class: `node${n.kept ? " kept" : ""}${best ? " best" : ""}`, cx, cy, r: 5 });
      circle.append(svg("title", {}, `chunk ${c.chunk} candidate ${n.candidate} (beam ${n.parent}, seed ${n.seed}): ` +
        `short ${fmt(n.short)} long ${fmt(n.long)} fused ${fmt(n.fused)}${n.kept ? ", kept" : ""}`));
      tree.append(circle);
    }
  }
  const last = levels[levels.length - 1];
  for (const [frame, route] of Object.entries(last ? last.routes : {})) {
    const k = Number(frame) / st.cfg.chunk_frames;
    const label = svg("text", { class: "route", x: x(k) - 8, y: height - 16 }, route.replace("_sink", ""));
    label.append(svg("title", {}, `chunk ${k} (frames ${frame}..) left the window: ${route}`));
    tree.append(label);
  }
  for (const s of st.switches) {
    const sx = x(s.chunk) - colW / 2;
    tree.append(svg("line", { class: "switch-line", x1: sx, y1: 4, x2: sx, y2: height - bottom + 6 }));
    tree.append(svg("text", { class: "switch", x: sx + 3, y: 14 }, s.prompt));
  }
}
const fmt = (v) => (v === undefined || v === null ? "–" : Number(v).toFixed(3));

$("start").onclick = start;
$("stop").onclick = () => send({ type: "stop" });
$("switch").onclick = () => send({ type: "prompt", prompt: $("prompt").value });
connect();
