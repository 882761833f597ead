// Helpers shared by the join, link-test and console pages: DOM building, tokens, signalling and
// the arithmetic on getStats() reports. Plain ES module, no dependencies.

// ICE servers for the pages' peer connections. Empty: the MCU offers its own reachable address
// (server.media_addresses), so a page needs no STUN server to reach it, and a page must not ask
// an outside server about its addresses. A page behind a network that blocks UDP would need a
// TURN server here (see the README's Limits).
export const ICE_SERVERS = [];

// A link is good enough when it loses at most this much and answers within this round trip.
export const MAX_LOSS = 0.02;
export const MAX_RTT_MS = 300;

export function byId(id) {
  return document.getElementById(id);
}

// An element with attributes and children; text goes in as text, never as markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The page's status line (its state also in data-state, for styles and tests).
export function setStatus(state, text) {
  const status = byId("status");
  status.dataset.state = state;
  status.textContent = text;
}

// A problem the user must read, in the page's error box.
export function fail(text) {
  const error = byId("error");
  error.textContent = text;
  show(error, true);
}

export function show(node, visible) {
  node.hidden = !visible;
}

// The room and site ids of a page served at /<prefix>/<room>/<site>.
export function siteFromPath() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  return { room: parts[1] || "", site: parts[2] || "" };
}

// The site token: taken from the link's fragment (#token=...) and then removed from the address
// bar and the history, kept in this tab's sessionStorage so a reload still works.
export function takeToken(room, site) {
  const key = `mcu-site-token:${room}/${site}`;
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromLink = fragment.get("token");
  if (fromLink) {
    sessionStorage.setItem(key, fromLink);
    history.replaceState(null, "", location.pathname + location.search);
    return fromLink;
  }
  return sessionStorage.getItem(key);
}

export function bearer(token) {
  return { Authorization: `Bearer ${token}` };
}

// Refusals from the server are one plain-text line (sites) or {"error": ...} (operator API).
export async function reason(reply) {
  const text = (await reply.text()).trim();
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch (_) {
    // plain text
  }
  return text || `HTTP ${reply.status}`;
}

// Resolves once ICE gathering is complete (non-trickle signalling), or after `limitMs` with
// whatever candidates were found by then.
export function gatheringComplete(pc, limitMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, limitMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

// Create the offer, wait for every candidate and POST it; the reply is left to the caller.
export async function sendOffer(pc, url, headers) {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc);
  return fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", ...headers },
    body: pc.localDescription.sdp,
    cache: "no-store",
  });
}

// DELETE a session; `keepalive` lets it outlive the page (pagehide).
export function hangUp(location, headers) {
  if (!location) return Promise.resolve();
  return fetch(location, { method: "DELETE", headers, keepalive: true }).catch(() => {});
}

// Camera and microphone, at the profile's size when the camera can; falls back to the
// microphone alone, then to nothing (the page only receives).
export async function openMedia(profile) {
  const video = profile
    ? {
        width: { ideal: profile.width },
        height: { ideal: profile.height },
        frameRate: { ideal: profile.fps },
      }
    : true;
  const attempts = [{ audio: true, video }, { audio: true }];
  let problem = null;
  for (const constraints of attempts) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), problem };
    } catch (error) {
      problem = problem || error;
    }
  }
  return { stream: null, problem };
}

export function needKbps(profile) {
  return profile.video_kbps + profile.audio_kbps;
}

// The cumulative counters of one getStats() report, summed over audio and video.
export function counters(report) {
  const totals = {
    at: 0,
    bytesIn: 0,
    bytesOut: 0,
    packetsIn: 0,
    lostIn: 0,
    packetsOut: 0,
    lostOut: 0,
    rttMs: null,
    remoteRttMs: null,
    framesIn: 0,
  };
  let selectedPair = null;
  const pairs = new Map();
  report.forEach((entry) => {
    totals.at = Math.max(totals.at, entry.timestamp || 0);
    switch (entry.type) {
      case "inbound-rtp":
        totals.bytesIn += (entry.bytesReceived || 0) + (entry.headerBytesReceived || 0);
        totals.packetsIn += entry.packetsReceived || 0;
        totals.lostIn += Math.max(0, entry.packetsLost || 0);
        if (entry.kind === "video") totals.framesIn += entry.framesDecoded || 0;
        break;
      case "outbound-rtp":
        totals.bytesOut += (entry.bytesSent || 0) + (entry.headerBytesSent || 0);
        totals.packetsOut += entry.packetsSent || 0;
        break;
      case "remote-inbound-rtp":
        totals.lostOut += Math.max(0, entry.packetsLost || 0);
        if (typeof entry.roundTripTime === "number") {
          totals.remoteRttMs = Math.max(totals.remoteRttMs || 0, entry.roundTripTime * 1000);
        }
        break;
      case "transport":
        if (entry.selectedCandidatePairId) selectedPair = entry.selectedCandidatePairId;
        break;
      case "candidate-pair":
        pairs.set(entry.id, entry);
        break;
      default:
        break;
    }
  });
  let pair = selectedPair ? pairs.get(selectedPair) : null;
  if (!pair) pair = [...pairs.values()].find((p) => p.nominated && p.state === "succeeded");
  if (pair && typeof pair.currentRoundTripTime === "number") {
    totals.rttMs = pair.currentRoundTripTime * 1000;
  }
  if (totals.rttMs === null) totals.rttMs = totals.remoteRttMs;
  return totals;
}

// Rates and loss between two `counters()` readings (timestamps in milliseconds).
export function between(before, after) {
  const seconds = Math.max((after.at - before.at) / 1000, 1e-3);
  const packetsIn = after.packetsIn - before.packetsIn;
  const lostIn = after.lostIn - before.lostIn;
  const packetsOut = after.packetsOut - before.packetsOut;
  const lostOut = after.lostOut - before.lostOut;
  return {
    seconds,
    kbpsIn: ((after.bytesIn - before.bytesIn) * 8) / 1000 / seconds,
    kbpsOut: ((after.bytesOut - before.bytesOut) * 8) / 1000 / seconds,
    lossIn: packetsIn + lostIn > 0 ? Math.max(0, lostIn) / (packetsIn + lostIn) : 0,
    lossOut: packetsOut > 0 ? Math.max(0, lostOut) / packetsOut : 0,
    fpsIn: (after.framesIn - before.framesIn) / seconds,
    rttMs: after.rttMs,
  };
}

export function kbps(value) {
  return `${Math.round(value)} kbit/s`;
}

export function percent(fraction) {
  return `${(fraction * 100).toFixed(1)} %`;
}
