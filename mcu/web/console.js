// The operator console: rooms, the live roster of one room (polled every second), layout,
// chair, pins, mutes, disconnects, ad-hoc rooms and a receive-only live preview.
import {
  ICE_SERVERS, bearer, byId, el, hangUp, reason, sendOffer, show,
} from "/web/common.js";

const TOKEN_KEY = "mcu-operator-token";
const ROOM_KEY = "mcu-console-room";
const POLL_MS = 1000;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  room: sessionStorage.getItem(ROOM_KEY),
  detail: null, // the last GET /api/rooms/{room}
  rows: new Map(), // site id → its roster row's cells and buttons
  polling: false,
  preview: null, // { pc, location }
};

function fail(text) {
  const error = byId("console-error");
  error.textContent = text;
  show(error, Boolean(text));
}

class Refused extends Error {}

async function api(method, path, body) {
  const options = { method, headers: bearer(state.token), cache: "no-store" };
  if (body !== undefined) {
    options.headers = { ...options.headers, "Content-Type": "application/json" };
    options.body = JSON.stringify(body);
  }
  const reply = await fetch(path, options);
  if (reply.status === 401 || reply.status === 403) {
    stopAll();
    throw new Refused(`Mã điều hành không dùng được / Operator token refused: ${await reason(reply)}`);
  }
  if (!reply.ok) throw new Error(`${method} ${path}: ${reply.status} ${await reason(reply)}`);
  return reply.status === 204 ? null : reply.json();
}

// An action from a button: its error is shown, and the roster is read again at once.
function act(method, path, body) {
  return api(method, path, body).then(
    () => { fail(""); return pollOnce(); },
    (error) => fail(error.message),
  );
}

const roomPath = () => `/api/rooms/${encodeURIComponent(state.room)}`;
const dash = (value, unit = "") => (value === null || value === undefined ? "–" : `${value}${unit}`);

// --- rooms -------------------------------------------------------------------------------------

async function loadRooms() {
  const { rooms } = await api("GET", "/api/rooms");
  const list = byId("rooms");
  list.replaceChildren(...rooms.map((room) => el("li", {},
    el("button", {
      type: "button",
      "data-testid": `room-${room.id}`,
      "aria-pressed": String(room.id === state.room),
      onclick: () => choose(room.id),
      text: `${room.name} (${room.present}/${room.configured})${room.adhoc ? " · đột xuất" : ""}`,
    }))));
  show(byId("rooms-section"), true);
  show(byId("adhoc-section"), true);
  await loadAdhocSites(rooms.filter((room) => !room.adhoc));
  if (state.room && rooms.some((room) => room.id === state.room)) choose(state.room);
}

async function loadAdhocSites(rooms) {
  const sites = new Map();
  for (const room of rooms) {
    const detail = await api("GET", `/api/rooms/${encodeURIComponent(room.id)}`);
    for (const site of detail.sites) if (!sites.has(site.site)) sites.set(site.site, site.name);
  }
  const fieldset = byId("adhoc-sites");
  const legend = fieldset.querySelector("legend");
  fieldset.replaceChildren(legend, ...[...sites].map(([id, name]) => el("label", {},
    el("input", { type: "checkbox", value: id, "data-testid": `adhoc-site-${id}` }),
    ` ${name} `, el("span", { class: "dim", text: id }))));
}

function choose(roomId) {
  if (state.room !== roomId) stopPreview();
  state.room = roomId;
  sessionStorage.setItem(ROOM_KEY, roomId);
  state.rows.clear();
  byId("roster").tBodies[0].replaceChildren();
  for (const button of byId("rooms").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.testid === `room-${roomId}`));
  }
  show(byId("room-section"), true);
  startPolling();
}

// --- the chosen room ---------------------------------------------------------------------------

function startPolling() {
  if (state.polling) return;
  state.polling = true;
  const loop = async () => {
    while (state.polling && state.room) {
      await pollOnce();
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };
  loop();
}

function stopAll() {
  state.polling = false;
  stopPreview();
}

async function pollOnce() {
  if (!state.room || !state.token) return;
  try {
    const detail = await api("GET", roomPath());
    state.detail = detail;
    render(detail);
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (error) {
    fail(error.message);
    if (!(error instanceof Refused) && /: 404 /.test(error.message)) {
      state.polling = false; // the room is gone (an ad-hoc room that was closed)
      state.room = null;
      show(byId("room-section"), false);
    }
  }
}

// Replace a select's options only when they changed; keep the operator's pick while focused.
function fillSelect(select, options, value) {
  const wanted = options.map(([v, text]) => `${v}\u0000${text}`).join("\u0001");
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...options.map(([v, text]) => el("option", { value: v, text })));
    select.dataset.options = wanted;
  }
  if (document.activeElement !== select) select.value = value;
}

function render(detail) {
  byId("room-title").textContent = `${detail.name} (${detail.id})`;
  byId("room-summary").textContent =
    `${detail.present}/${detail.configured} điểm cầu · sites`
    + (detail.floor ? ` · đang nói / floor: ${detail.floor}` : "");
  fillSelect(byId("layout"), detail.layouts.map((name) => [name, name]), detail.layout);
  byId("layout-shown").textContent = detail.layout_shown === detail.layout
    ? "" : `→ ${detail.layout_shown}`;
  const sites = detail.sites.map((site) => [site.site, `${site.name} (${site.site})`]);
  fillSelect(byId("chair"), [["", "— không / none —"], ...sites], detail.chair || "");
  fillSelect(byId("pin-site"), sites, byId("pin-site").value || (sites[0] && sites[0][0]) || "");
  byId("pin-tile").max = String(detail.tiles || 1);
  const pins = Object.entries(detail.pins);
  byId("pins").textContent = pins.length
    ? pins.map(([tile, site]) => `${tile}: ${site}`).join(", ") : "không ghim / no pins";
  byId("pins").dataset.pins = JSON.stringify(detail.pins);

  const body = byId("roster").tBodies[0];
  for (const site of detail.sites) {
    let row = state.rows.get(site.site);
    if (!row) {
      row = makeRow(site);
      state.rows.set(site.site, row);
      body.append(row.tr);
    }
    updateRow(row, site);
  }
}

const COLUMNS = ["site", "state", "profile", "kbps_in", "kbps_out", "packets_lost", "jitter_ms",
  "rtt_ms", "fps", "speaking", "on_screen"];

function makeRow(site) {
  const cells = Object.fromEntries(COLUMNS.map((name) => [name, el("td", { "data-col": name })]));
  const id = site.site;
  const muteAudio = el("button", { type: "button", "data-testid": `mute-audio-${id}` });
  const muteVideo = el("button", { type: "button", "data-testid": `mute-video-${id}` });
  const disconnect = el("button", {
    type: "button", class: "danger", "data-testid": `disconnect-${id}`,
    title: "Ngắt kết nối / Disconnect", text: "Ngắt",
  });
  const path = () => `${roomPath()}/sites/${encodeURIComponent(id)}`;
  muteAudio.addEventListener("click", () =>
    act("POST", `${path()}/mute`, { audio: muteAudio.getAttribute("aria-pressed") !== "true" }));
  muteVideo.addEventListener("click", () =>
    act("POST", `${path()}/mute`, { video: muteVideo.getAttribute("aria-pressed") !== "true" }));
  disconnect.addEventListener("click", () => act("POST", `${path()}/disconnect`));
  const actions = el("td", {}, el("div", { class: "actions" }, muteAudio, muteVideo, disconnect));
  const tr = el("tr", { "data-site": id }, ...COLUMNS.map((name) => cells[name]), actions);
  return { tr, cells, muteAudio, muteVideo, disconnect };
}

function updateRow(row, site) {
  const c = row.cells;
  row.tr.dataset.state = site.state;
  c.site.replaceChildren(el("strong", { text: site.name }), " ",
    el("span", { class: "dim", text: site.site }));
  c.state.textContent = site.state;
  c.profile.textContent = site.profile;
  c.kbps_in.textContent = dash(site.kbps_in);
  c.kbps_out.textContent = dash(site.kbps_out);
  c.packets_lost.textContent = dash(site.packets_lost);
  c.jitter_ms.textContent = dash(site.jitter_ms);
  c.rtt_ms.textContent = dash(site.rtt_ms);
  c.fps.textContent = `${dash(site.fps_in)} / ${dash(site.fps_out)}`;
  c.speaking.textContent = site.speaking ? "●" : "";
  c.speaking.dataset.speaking = String(Boolean(site.speaking));
  c.on_screen.textContent = site.on_screen ? "✓" : "";
  c.on_screen.dataset.onScreen = String(Boolean(site.on_screen));

  row.muteAudio.setAttribute("aria-pressed", String(site.muted_audio));
  row.muteAudio.textContent = site.muted_audio ? "Bật tiếng" : "Tắt tiếng";
  row.muteAudio.title = site.muted_audio ? "Unmute audio at the MCU" : "Mute audio at the MCU";
  row.muteVideo.setAttribute("aria-pressed", String(site.muted_video));
  row.muteVideo.textContent = site.muted_video ? "Bật hình" : "Tắt hình";
  row.muteVideo.title = site.muted_video ? "Show video again" : "Hide video at the MCU";
  row.disconnect.disabled = site.state === "absent";
}

// --- live preview ------------------------------------------------------------------------------

function setPreviewStatus(stateName, text) {
  const status = byId("preview-status");
  status.dataset.state = stateName;
  status.textContent = text;
}

async function startPreview() {
  stopPreview();
  const pc = new RTCPeerConnection({ iceServers: ICE_SERVERS });
  const preview = { pc, location: null };
  state.preview = preview;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (event) => {
    stream.addTrack(event.track);
    const video = byId("preview");
    if (video.srcObject !== stream) video.srcObject = stream;
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (state.preview !== preview) return;
    const connection = pc.connectionState;
    setPreviewStatus(connection, connection === "connected" ? "Đang xem / Live" : connection);
  };
  byId("preview-start").disabled = true;
  byId("preview-stop").disabled = false;
  setPreviewStatus("connecting", "Đang kết nối… / Connecting…");
  try {
    const reply = await sendOffer(pc, `${roomPath()}/viewers`, bearer(state.token));
    if (state.preview !== preview) return;
    if (reply.status !== 201) throw new Error(`${reply.status}: ${await reason(reply)}`);
    preview.location = reply.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await reply.text() });
  } catch (error) {
    if (state.preview === preview) stopPreview();
    setPreviewStatus("error", `Lỗi / Error: ${error.message}`);
  }
}

function stopPreview() {
  const preview = state.preview;
  state.preview = null;
  byId("preview-start").disabled = false;
  byId("preview-stop").disabled = true;
  if (!preview) return;
  hangUp(preview.location, bearer(state.token));
  preview.pc.close();
  byId("preview").srcObject = null;
  setPreviewStatus("off", "");
}

function togglePreviewSound() {
  const video = byId("preview");
  const button = byId("preview-sound");
  video.muted = !video.muted;
  button.setAttribute("aria-pressed", String(!video.muted));
  button.textContent = video.muted ? "Bật âm thanh" : "Tắt âm thanh";
  if (!video.muted) video.play().catch(() => {});
}

// --- ad-hoc rooms ------------------------------------------------------------------------------

async function createAdhoc(event) {
  event.preventDefault();
  const name = byId("adhoc-name").value.trim();
  const sites = [...byId("adhoc-sites").querySelectorAll("input:checked")].map((i) => i.value);
  try {
    const created = await api("POST", "/api/rooms", { name, sites });
    byId("adhoc-links").replaceChildren(...created.links.map((link) => el("li",
      { "data-site": link.site },
      el("strong", { text: link.name }), " ",
      el("input", {
        type: "text", readonly: true, size: 60, value: link.url,
        "data-testid": `adhoc-link-${link.site}`, onfocus: (e) => e.target.select(),
      }),
      " ", el("a", { href: link.url, target: "_blank", rel: "noopener", text: "mở / open" }))));
    fail("");
    await loadRooms();
  } catch (error) {
    fail(error.message);
  }
}

// --- wiring ------------------------------------------------------------------------------------

function useToken(token) {
  state.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  fail("");
  if (token) loadRooms().catch((error) => fail(error.message));
}

byId("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken(byId("token").value.trim());
  byId("token").value = "";
});
byId("token-forget").addEventListener("click", () => {
  stopAll();
  useToken(null);
  show(byId("rooms-section"), false);
  show(byId("room-section"), false);
  show(byId("adhoc-section"), false);
});
byId("refresh-rooms").addEventListener("click", () => loadRooms().catch((e) => fail(e.message)));
byId("layout").addEventListener("change", (event) =>
  act("PUT", `${roomPath()}/layout`, { layout: event.target.value }));
byId("chair").addEventListener("change", (event) =>
  act("PUT", `${roomPath()}/chair`, { site: event.target.value || null }));
byId("pin-set").addEventListener("click", () => {
  const pins = { ...(state.detail ? state.detail.pins : {}) };
  pins[String(Number(byId("pin-tile").value))] = byId("pin-site").value;
  act("PUT", `${roomPath()}/pins`, { pins });
});
byId("pins-clear").addEventListener("click", () => act("PUT", `${roomPath()}/pins`, { pins: {} }));
byId("room-close").addEventListener("click", () => {
  if (confirm(`Kết thúc phòng ${state.room}? / Close room ${state.room}?`)) {
    act("DELETE", roomPath()).then(() => loadRooms().catch((e) => fail(e.message)));
  }
});
byId("preview-start").addEventListener("click", startPreview);
byId("preview-stop").addEventListener("click", stopPreview);
byId("preview-sound").addEventListener("click", togglePreviewSound);
byId("adhoc-form").addEventListener("submit", createAdhoc);
window.addEventListener("pagehide", stopPreview);

if (state.token) useToken(state.token);
