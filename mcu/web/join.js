// The join page: camera and microphone up, the room's composite and mix down, through the MCU's
// dial-in endpoint. Reconnects by itself when the connection stays down for more than 3 s.
import {
  ICE_SERVERS, bearer, between, byId, counters, hangUp, kbps, needKbps, openMedia, percent,
  reason, sendOffer, setStatus, fail, show, siteFromPath, takeToken,
} from "/web/common.js";

const DOWN_GRACE_MS = 3000; // a connection down this long is dialled again
const CONNECT_LIMIT_MS = 15000; // an attempt not connected by then counts as failed
const RETRY_MS = [1000, 2000, 4000, 8000, 10000]; // waits between failed dial attempts
const QUALITY_EVERY_MS = 2000;
const SETTLE_MS = 8000; // the MCU's encoder needs a few seconds to reach the profile's rate

const { room, site } = siteFromPath();
const token = takeToken(room, site);
const dialUrl = `/rooms/${encodeURIComponent(room)}/sites/${encodeURIComponent(site)}`;
const composite = byId("composite");

const call = {
  pc: null, // the current peer connection
  location: null, // its session, to DELETE on hang-up
  dialledAt: 0,
  downSince: null,
  failures: 0,
  dials: 0, // how many times this page dialled (for the tests and the curious)
  left: false,
  retry: null,
  lastStats: null,
};
let profile = null;
let media = null;

function clearError() {
  show(byId("error"), false);
}

// --- dialling ---------------------------------------------------------------------------------

function closeCall() {
  if (call.pc) {
    call.pc.onconnectionstatechange = null;
    call.pc.ontrack = null;
    call.pc.close();
  }
  call.pc = null;
  call.lastStats = null;
}

async function dial() {
  clearTimeout(call.retry);
  closeCall();
  const pc = new RTCPeerConnection({ iceServers: ICE_SERVERS });
  call.pc = pc;
  call.dialledAt = performance.now();
  call.downSince = null;
  call.dials += 1;
  document.body.dataset.dials = String(call.dials);

  // send what we have, receive the composite and the mix in any case
  for (const kind of ["audio", "video"]) {
    const track = media && media.getTracks().find((t) => t.kind === kind);
    if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [media] });
    else pc.addTransceiver(kind, { direction: "recvonly" });
  }
  const incoming = new MediaStream();
  pc.ontrack = (event) => {
    incoming.addTrack(event.track);
    if (composite.srcObject !== incoming) composite.srcObject = incoming;
    playSound();
  };
  pc.onconnectionstatechange = () => watch();

  let reply;
  try {
    reply = await sendOffer(pc, dialUrl, bearer(token));
  } catch (error) {
    if (pc === call.pc) retryLater(`mạng lỗi / network error: ${error.message}`);
    return;
  }
  if (pc !== call.pc) return; // hung up or superseded meanwhile
  if (reply.status !== 201) {
    const why = await reason(reply);
    // these will not get better by trying again
    if ([400, 401, 403, 404, 413, 415].includes(reply.status)) {
      closeCall();
      setStatus("error", "Không vào được phòng / Cannot join");
      fail(`${reply.status}: ${why}`);
      return;
    }
    const wait = Number(reply.headers.get("Retry-After")) * 1000 || undefined;
    retryLater(`${reply.status}: ${why}`, wait);
    return;
  }
  call.location = reply.headers.get("Location");
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: await reply.text() });
  } catch (error) {
    retryLater(`answer: ${error.message}`);
  }
}

function retryLater(why, waitMs) {
  closeCall();
  if (call.left) return;
  const wait = waitMs || RETRY_MS[Math.min(call.failures, RETRY_MS.length - 1)];
  call.failures += 1;
  setStatus("reconnecting", `Đang kết nối lại… / Reconnecting… (${why})`);
  call.retry = setTimeout(() => {
    if (!call.left) dial();
  }, wait);
}

// Down means disconnected, failed, or a DTLS transport the MCU closed; an attempt that never
// connects counts as down once CONNECT_LIMIT_MS has passed.
function isDown(pc, now) {
  const state = pc.connectionState;
  if (state === "connected") {
    const transport = pc.getReceivers().map((r) => r.transport).find(Boolean);
    return Boolean(transport && (transport.state === "closed" || transport.state === "failed"));
  }
  if (state === "new" || state === "connecting") return now - call.dialledAt > CONNECT_LIMIT_MS;
  return true;
}

function watch() {
  const pc = call.pc;
  if (!pc || call.left) return;
  const now = performance.now();
  if (pc.connectionState === "connected" && !isDown(pc, now)) {
    call.failures = 0;
    call.downSince = null;
    setStatus("connected", "Đã kết nối / Connected");
    return;
  }
  if (!isDown(pc, now)) return; // still connecting
  if (call.downSince === null) {
    call.downSince = now;
    setStatus("reconnecting", "Mất kết nối, đang kết nối lại… / Connection lost, reconnecting…");
  }
  if (now - call.downSince > DOWN_GRACE_MS) {
    // the MCU replaces the old session when the same site dials again
    dial();
  }
}

// --- connection quality ------------------------------------------------------------------------

function grade(sample, ageMs) {
  const loss = Math.max(sample.lossIn, sample.lossOut);
  const rtt = sample.rttMs || 0;
  const share = sample.kbpsIn / needKbps(profile);
  const settled = ageMs > SETTLE_MS;
  if (loss > 0.05 || rtt > 400 || (settled && share < 0.25)) return "poor";
  if (loss > 0.01 || rtt > 200 || (settled && share < 0.5)) return "fair";
  return "good";
}

const GRADE_TEXT = { good: "Tốt / Good", fair: "Khá / Fair", poor: "Kém / Poor" };

async function measure() {
  const pc = call.pc;
  const indicator = byId("quality");
  if (!pc || pc.connectionState !== "connected" || !profile) {
    indicator.dataset.grade = "unknown";
    indicator.textContent = "–";
    return;
  }
  const now = counters(await pc.getStats());
  const before = call.lastStats;
  call.lastStats = now;
  if (!before) return;
  const sample = between(before, now);
  const result = grade(sample, performance.now() - call.dialledAt);
  indicator.dataset.grade = result;
  indicator.textContent = GRADE_TEXT[result];
  indicator.title = [
    "Chất lượng kết nối / Connection quality",
    `RTT ${sample.rttMs === null ? "?" : Math.round(sample.rttMs)} ms`,
    `mất gói / loss ↓ ${percent(sample.lossIn)} ↑ ${percent(sample.lossOut)}`,
    `nhận / received ${kbps(sample.kbpsIn)} / ${kbps(needKbps(profile))}`,
  ].join(" · ");
  indicator.dataset.kbpsIn = sample.kbpsIn.toFixed(0);
}

// --- controls ----------------------------------------------------------------------------------

function playSound() {
  composite.play().then(
    () => show(byId("play-sound"), false),
    () => show(byId("play-sound"), true), // autoplay with sound needs a click first
  );
}

function toggle(button, kind, onText, offText) {
  const track = media && media.getTracks().find((t) => t.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  button.setAttribute("aria-pressed", String(!track.enabled));
  button.textContent = track.enabled ? onText : offText;
}

function leave() {
  if (call.left) return;
  call.left = true;
  clearTimeout(call.retry);
  hangUp(call.location, bearer(token));
  call.location = null;
  closeCall();
}

function wireControls() {
  byId("mute-mic").addEventListener("click", (event) =>
    toggle(event.currentTarget, "audio", "Tắt micro", "Bật micro"));
  byId("mute-cam").addEventListener("click", (event) =>
    toggle(event.currentTarget, "video", "Tắt camera", "Bật camera"));
  byId("play-sound").addEventListener("click", playSound);
  byId("hang-up").addEventListener("click", () => {
    leave();
    setStatus("left", "Đã rời phòng / You left the meeting");
    show(byId("hang-up"), false);
    show(byId("rejoin"), true);
  });
  byId("rejoin").addEventListener("click", () => {
    call.left = false;
    call.failures = 0;
    show(byId("rejoin"), false);
    show(byId("hang-up"), true);
    setStatus("connecting", "Đang kết nối… / Connecting…");
    dial();
  });
  // closing or leaving the page hangs up; keepalive lets the DELETE outlive it
  window.addEventListener("pagehide", leave);
}

// --- start -------------------------------------------------------------------------------------

async function start() {
  wireControls();
  if (!token) {
    setStatus("error", "Thiếu mã truy cập / No token");
    fail("Liên kết không có mã truy cập (#token=…). The link has no token: ask the operator "
      + "for the full join link.");
    return;
  }
  const reply = await fetch(`${dialUrl}/profile`, { headers: bearer(token), cache: "no-store" });
  if (!reply.ok) {
    setStatus("error", "Không vào được phòng / Cannot join");
    fail(`${reply.status}: ${await reason(reply)}`);
    return;
  }
  profile = await reply.json();
  byId("room-name").textContent = profile.room_name;
  byId("site-name").textContent = profile.site_name;
  byId("profile").textContent =
    `${profile.name}: ${profile.width}×${profile.height}, ${profile.fps} fps, `
    + kbps(needKbps(profile));
  document.title = `${profile.room_name} · ${profile.site_name}`;

  setStatus("media", "Đang mở camera và micro… / Opening camera and microphone…");
  const opened = await openMedia(profile);
  media = opened.stream;
  if (opened.problem) {
    fail(`Không mở được camera hoặc micro / Camera or microphone unavailable: `
      + `${opened.problem.name}`);
  }
  setStatus("connecting", "Đang kết nối… / Connecting…");
  await dial();
  setInterval(watch, 500);
  setInterval(() => measure().catch(() => {}), QUALITY_EVERY_MS);
}

start().catch((error) => {
  setStatus("error", "Lỗi / Error");
  fail(String(error));
});
