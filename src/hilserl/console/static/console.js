// hilserl console: the live feed (server-sent events), the controls and the curves. No libraries.
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("hilserl-token");
if (token) sessionStorage.setItem("hilserl-token", token);
const q = (s) => document.querySelector(s);
const auth = (path) => token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
const series = { success: [], intervention: [], critic: [], alpha: [], ups: [], lag: [] };
const MODES = { train: "hilserl train", actor: "hilserl actor", eval: "hilserl eval", record: "hilserl record",
  reward_record: "hilserl reward record", collect: "hilserl reward record --sim" };
let controls = null, controlsKey = "", mode = "train", rawTimer = null;
const episodes = [];
const MAX_POINTS = 5000;
let latestVersion = -1, lastSeq = 0;
const loading = {}, shown = {};

function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["Authorization"] = "Bearer " + token;
  return fetch(path, { method: "POST", headers, body: JSON.stringify(body) }).then((r) => {
    if (!r.ok) r.json().then((e) => message(e.error || r.statusText)).catch(() => message(r.statusText));
    return r;
  });
}
const command = (name, value) => post("/api/command", { command: name, value });
function message(text) { q("#message").textContent = text; }
function fmt(v, digits = 3) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

function push(arr, v) { arr.push(v); if (arr.length > MAX_POINTS) arr.shift(); }
function mean20(key) {
  const last = episodes.slice(-20);
  return last.reduce((s, e) => s + Number(e[key] || 0), 0) / last.length;
}

function addEpisode(e) {
  if (episodes.length && episodes[episodes.length - 1].episode >= e.episode) return;
  push(episodes, e);
  push(series.success, [e.episode, mean20("success")]);
  push(series.intervention, [e.episode, mean20("intervention_rate")]);
  const body = q("#episodes tbody");
  const row = document.createElement("tr");
  row.className = String(e.result).startsWith("success") ? "success" : "failure";
  for (const v of [e.episode, fmt(e.reward, 2), e.length, Math.round(100 * e.intervention_rate) + "%", e.result]) {
    const td = document.createElement("td"); td.textContent = v; row.appendChild(td);
  }
  body.insertBefore(row, body.firstChild);
  while (body.children.length > 20) body.removeChild(body.lastChild);
}

function addLearner(p) {
  if (p.policy_lag_updates !== undefined && p.policy_lag_updates !== null)
    push(series.lag, [p.env_step ?? p.learner_step, p.policy_lag_updates]);
  if (p.critic_loss !== undefined && p.critic_loss !== null) push(series.critic, [p.learner_step, p.critic_loss]);
  if (p.temperature !== undefined && p.temperature !== null) push(series.alpha, [p.learner_step, p.temperature]);
  if (p.updates_per_s !== undefined && p.updates_per_s !== null) push(series.ups, [p.learner_step, p.updates_per_s]);
}

function addFinding(f) {
  const list = q("#findings");
  if (list.querySelector(".note")) list.innerHTML = "";
  const li = document.createElement("li");
  li.className = f.severity;
  li.textContent = `${f.check} at ${f.at}: ${f.message}. ${f.advice}`;
  list.insertBefore(li, list.firstChild);
}

function addCommand(c) {
  if (c.applied !== true) { message(`${c.command}: ${c.applied}`); return; }
  const value = c.value !== null && c.value !== undefined ? " " + c.value : "";
  message(`${c.command}${value} at env step ${c.env_step}`);
}

function moveText(a) {
  if (!a) return "–";
  const names = ["x", "y", "z"];
  const parts = names.map((n, i) => `${n} ${a[i] >= 0 ? "+" : ""}${Number(a[i]).toFixed(2)}`);
  if (a.length > 3) parts.push("gripper " + ({ 0: "close", 1: "stay", 2: "open" }[a[3]] ?? Number(a[3]).toFixed(2)));
  return parts.join("  ");
}

function text(sel, value) {  // only what changed: the page redraws nothing for an unchanged number
  const el = q(sel), v = String(value);
  if (el.textContent !== v) el.textContent = v;
}

function showState(msg) {
  const s = msg.state;
  text("#phase", s.phase || "–");
  if (s.mode) { mode = s.mode; text("#mode", MODES[s.mode] || s.mode); }
  if (s.controls && s.controls.join() !== controlsKey) {  // only the controls this command's loop can honour
    controlsKey = s.controls.join();
    controls = new Set(s.controls);
    document.querySelectorAll("button[data-command]").forEach((b) => { b.hidden = !controls.has(b.dataset.command); });
    q("#threshold-form").hidden = !controls.has("threshold");
  }
  const other = s.env_type === "sim" ? "human (simulated)" : "human (leader arm)";
  text("#actor", s.actor === "you" ? "you (browser)" : s.actor === "human" ? other : "policy");
  const actorClass = "actor " + (s.actor === "policy" || !s.actor ? "policy" : "human");
  if (q("#actor").className !== actorClass) q("#actor").className = actorClass;
  text("#move", moveText(s.action));
  text("#episode", s.episode ?? "–");
  text("#step", s.step ?? "–");
  text("#return", fmt(s.episode_return, 2));
  if (s.total_episodes) {
    text("#env-step-label", "episodes");
    text("#env-step", `${s.episode ?? 0} / ${s.total_episodes}`);
  } else {
    text("#env-step-label", "env steps");
    text("#env-step", s.total_env_steps ? `${s.env_step ?? "–"} / ${s.total_env_steps}` : `${s.env_step ?? "–"}`);
  }
  text("#ee", s.ee_pos ? s.ee_pos.map((v) => v.toFixed(3)).join(", ") : "–");
  if (s.classifier) {
    text("#prob-label", "classifier P(success)");
    text("#prob", fmt(s.classifier_prob));
    text("#threshold", fmt(s.threshold));
    text("#consecutive", `${s.classifier_consecutive ?? 0} / ${s.consecutive_frames}`);
    text("#threshold-note", "");
  } else if (mode === "reward_record" || mode === "collect") {
    text("#prob-label", "label of the frames now recorded");
    const label = mode === "collect" ? s.success_now : s.label;
    text("#prob", label ? "success" : "not a success");
    text("#threshold", "–");
    text("#consecutive", "–");
    q("#threshold-note").textContent = mode === "collect" ? "labels from the simulation's ground truth"
      : "Success (Y) switches the label on, Failure (N) off";
  } else {
    text("#prob", s.success_now ? "yes" : "no");
    text("#threshold", "–");
    text("#consecutive", "–");
    text("#threshold-note", "no reward classifier in this run: the threshold applies to classifier runs");
  }
  q("#btn-pause").disabled = !!s.paused;
  q("#btn-resume").disabled = !s.paused;
  showFrames(msg.cameras || [], msg.frame_version);
  showRaw(s.raw_cameras || []);
}

function showRaw(cameras) {  // the real arm's full frames, refreshed once a second (the server reads them at most twice)
  q("#raw-panel").hidden = !cameras.length;
  for (const cam of cameras) {
    if (document.getElementById("raw-" + cam)) continue;
    const fig = document.createElement("figure"), img = document.createElement("img");
    img.id = "raw-" + cam; img.alt = cam + " (full frame)";
    const cap = document.createElement("figcaption"); cap.textContent = cam + ": full frame, crop outlined";
    fig.append(img, cap); q("#raw").appendChild(fig);
  }
  if (cameras.length && rawTimer === null) {
    const refresh = () => cameras.forEach((cam) => {
      document.getElementById("raw-" + cam).src = auth(`/api/raw/${encodeURIComponent(cam)}?t=${Date.now()}`);
    });
    refresh(); rawTimer = setInterval(refresh, 1000);
  }
}

function showFrames(cameras, version) {
  latestVersion = version;
  if (cameras.length) q("#no-camera")?.remove();
  for (const cam of cameras) {
    let img = document.getElementById("cam-" + cam);
    if (!img) {
      const fig = document.createElement("figure");
      img = document.createElement("img");
      img.id = "cam-" + cam; img.alt = cam;
      img.onload = img.onerror = () => { loading[cam] = false; fetchFrame(cam); };
      const cap = document.createElement("figcaption"); cap.textContent = cam;
      fig.append(img, cap); q("#cameras").appendChild(fig);
    }
    fetchFrame(cam);
  }
}

function fetchFrame(cam) {  // one image in flight per camera: a slow link skips frames instead of queueing them
  if (loading[cam] || shown[cam] === latestVersion) return;
  loading[cam] = true; shown[cam] = latestVersion;
  document.getElementById("cam-" + cam).src = auth(`/api/frame/${encodeURIComponent(cam)}?v=${latestVersion}`);
}

function draw(id, points, percent) {
  const c = document.getElementById(id), g = c.getContext("2d"), W = c.width, H = c.height, pad = 28;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#6b7385"; g.font = "10px sans-serif";
  if (!points.length) { g.fillText("no data yet", pad, H / 2); return; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = percent ? 0 : Math.min(...ys), y1 = percent ? 1 : Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad + (W - pad - 6) * (x - x0) / (x1 - x0), Y = (y) => H - 14 - (H - 22) * (y - y0) / (y1 - y0);
  g.strokeStyle = "#e1e4ea"; g.beginPath(); g.moveTo(pad, Y(y0)); g.lineTo(W - 6, Y(y0)); g.stroke();
  const digits = (y1 - y0) < 0.02 * Math.max(Math.abs(y0), Math.abs(y1)) ? 5 : 3;  // a narrow range needs digits
  const label = (v) => percent ? Math.round(100 * v) + "%" : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(digits);
  g.fillText(label(y1), 2, Y(y1) + 8); g.fillText(label(y0), 2, Y(y0));
  g.fillText(String(x0), pad, H - 2); g.fillText(String(x1), W - 40, H - 2);
  g.strokeStyle = "#1f4aa8"; g.lineWidth = 1.5; g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))));
  g.stroke();
}

function drawAll() {
  draw("c-success", series.success, true); draw("c-intervention", series.intervention, true);
  draw("c-critic", series.critic); draw("c-alpha", series.alpha); draw("c-ups", series.ups); draw("c-lag", series.lag);
}

function connect() {
  fetch(auth("/api/state")).then((r) => r.ok ? r.json() : Promise.reject(r.status)).then((snap) => {
    for (const e of snap.history.episode) addEpisode(e);
    for (const p of snap.history.learner) addLearner(p);
    for (const f of snap.history.finding) addFinding(f);
    lastSeq = snap.seq;
    showState(snap);
    drawAll();
    const feed = new EventSource(auth(`/api/events?since=${lastSeq}`));
    feed.onopen = () => { q("#link").textContent = "live"; q("#link").className = "badge on"; };
    feed.onerror = () => { q("#link").textContent = "offline"; q("#link").className = "badge off"; };
    feed.addEventListener("state", (ev) => showState(JSON.parse(ev.data)));
    const on = (kind, fn) => feed.addEventListener(kind, (ev) => { fn(JSON.parse(ev.data)); drawAll(); });
    on("episode", addEpisode); on("learner", addLearner); on("finding", addFinding); on("command", addCommand);
  }).catch((status) => {
    message(status === 401 || status === 403 ? `this console needs its token: open ${location.origin}/#token=<token>`
      : `cannot reach the console (${status}); retrying`);
    setTimeout(connect, 2000);
  });
}

// ---------------------------------------------------------------- controls
document.querySelectorAll("button[data-command]").forEach((b) => b.addEventListener("click", () => {
  const what = { train: "Stop training? (checkpoint, buffers committed)", actor: "Stop this actor? (the learner goes on)",
    eval: "Stop the evaluation after this episode?", record: "Stop recording? (saved episodes are kept)",
    reward_record: "Stop recording? (saved episodes are kept)", collect: "Stop recording? (saved episodes are kept)" };
  if (b.dataset.command === "stop" && !confirm(what[mode] || "Stop?")) return;
  command(b.dataset.command);
}));
q("#threshold-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  command("threshold", Number(q("#threshold-input").value));
});

const MOVE = { ArrowUp: [0, 1], ArrowDown: [0, -1], ArrowLeft: [1, 1], ArrowRight: [1, -1],
  KeyW: [2, 1], KeyS: [2, -1] };
const held = new Set();
let fast = false;
function sendKeys() {
  const d = [0, 0, 0];
  for (const code of held) { const [axis, sign] = MOVE[code]; d[axis] += sign; }
  return post("/api/keys", { x: d[0], y: d[1], z: d[2], fast });
}
setInterval(() => { if (held.size) sendKeys(); }, 200);  // held keys expire on the server without a refresh
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT") return;
  fast = ev.shiftKey;
  if (MOVE[ev.code]) { ev.preventDefault(); if (!held.has(ev.code)) { held.add(ev.code); sendKeys(); } return; }
  if (ev.repeat) return;
  const keys = { Space: "toggle", KeyC: "gripper_close", KeyO: "gripper_open", KeyY: "success", KeyN: "failure",
    KeyR: "rerecord" };
  if (keys[ev.code] && (!controls || controls.has(keys[ev.code]))) { ev.preventDefault(); command(keys[ev.code]); }
  else if (ev.code === "KeyP") command(q("#btn-resume").disabled ? "pause" : "resume");
});
document.addEventListener("keyup", (ev) => {
  fast = ev.shiftKey;
  if (MOVE[ev.code]) { held.delete(ev.code); sendKeys(); }
});
window.addEventListener("blur", () => { if (held.size) { held.clear(); sendKeys(); } });
connect();
