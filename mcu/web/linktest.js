// The link test page: ten seconds of camera and microphone through the MCU's echo peer, measured
// with getStats() and held against what the site's profile needs in both directions.
import {
  ICE_SERVERS, MAX_LOSS, MAX_RTT_MS, bearer, between, byId, counters, el, hangUp, kbps,
  needKbps, openMedia, percent, reason, sendOffer, setStatus, fail, show, siteFromPath,
  takeToken,
} from "/web/common.js";

const SECONDS = 10; // measured once connected; the echo itself ends after 15 s
const SKIP_SECONDS = 2; // rates are taken after the encoders have started up
const CONNECT_LIMIT_MS = 15000;

const { room, site } = siteFromPath();
const token = takeToken(room, site);
const ids = `${encodeURIComponent(room)}/${encodeURIComponent(site)}`;
let profile = null;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connected(pc) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected") resolve();
      else if (["failed", "closed"].includes(pc.connectionState)) {
        reject(new Error(`connection ${pc.connectionState}`));
      }
    };
    pc.addEventListener("connectionstatechange", check);
    setTimeout(() => reject(new Error("no connection within 15 s")), CONNECT_LIMIT_MS);
    check();
  });
}

function showValue(id, value, text) {
  const cell = byId(id);
  cell.dataset.value = String(value);
  cell.textContent = text;
}

// Every number held against its need; an empty list is a pass.
function shortfalls(result) {
  const need = needKbps(profile);
  const found = [];
  if (result.upKbps < need) {
    found.push(`Tải lên / Upstream: ${kbps(result.upKbps)}, thiếu / short by `
      + `${kbps(need - result.upKbps)} (cần / needs ${kbps(need)})`);
  }
  if (result.downKbps < need) {
    found.push(`Tải xuống / Downstream: ${kbps(result.downKbps)}, thiếu / short by `
      + `${kbps(need - result.downKbps)} (cần / needs ${kbps(need)})`);
  }
  if (result.lossUp > MAX_LOSS) {
    found.push(`Mất gói lên / Loss up: ${percent(result.lossUp)}, vượt / over by `
      + `${percent(result.lossUp - MAX_LOSS)} (tối đa / at most ${percent(MAX_LOSS)})`);
  }
  if (result.lossDown > MAX_LOSS) {
    found.push(`Mất gói xuống / Loss down: ${percent(result.lossDown)}, vượt / over by `
      + `${percent(result.lossDown - MAX_LOSS)} (tối đa / at most ${percent(MAX_LOSS)})`);
  }
  if (result.rttMs === null) {
    found.push("Trễ khứ hồi / Round trip: không đo được / not measured");
  } else if (result.rttMs > MAX_RTT_MS) {
    found.push(`Trễ khứ hồi / Round trip: ${Math.round(result.rttMs)} ms, vượt / over by `
      + `${Math.round(result.rttMs - MAX_RTT_MS)} ms (tối đa / at most ${MAX_RTT_MS} ms)`);
  }
  return found;
}

function showResult(result) {
  // data-value holds the exact number, the text the rounded one
  showValue("result-up", result.upKbps, kbps(result.upKbps));
  showValue("result-down", result.downKbps, kbps(result.downKbps));
  showValue("result-loss-up", result.lossUp, percent(result.lossUp));
  showValue("result-loss-down", result.lossDown, percent(result.lossDown));
  showValue("result-rtt", result.rttMs === null ? "" : result.rttMs,
    result.rttMs === null ? "?" : `${Math.round(result.rttMs)} ms`);
}

function showVerdict(problems) {
  const verdict = byId("verdict");
  verdict.dataset.pass = String(problems.length === 0);
  verdict.textContent = problems.length === 0
    ? "Đạt / Pass: đường truyền đủ cho cấu hình này · the link carries this profile"
    : "Không đạt / Fail: đường truyền chưa đủ · the link falls short";
  byId("shortfalls").replaceChildren(...problems.map((text) => el("li", { text })));
}

function median(values) {
  const sorted = values.filter((v) => typeof v === "number").sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
}

async function run() {
  const button = byId("start");
  button.disabled = true;
  show(byId("error"), false);
  byId("verdict").textContent = "";
  byId("verdict").dataset.pass = "";
  byId("shortfalls").replaceChildren();
  byId("progress").value = 0;

  setStatus("media", "Đang mở camera và micro… / Opening camera and microphone…");
  const { stream, problem } = await openMedia(profile);
  if (!stream) throw new Error(`camera và micro / camera and microphone: ${problem && problem.name}`);
  byId("local").srcObject = stream;

  const pc = new RTCPeerConnection({ iceServers: ICE_SERVERS });
  let location = null;
  try {
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendrecv" });
    // let the camera send up to what the profile needs, with some headroom
    for (const sender of pc.getSenders()) {
      if (sender.track && sender.track.kind === "video") {
        const parameters = sender.getParameters();
        if (!parameters.encodings || parameters.encodings.length === 0) {
          parameters.encodings = [{}];
        }
        parameters.encodings[0].maxBitrate = Math.round(profile.video_kbps * 1000 * 1.25);
        await sender.setParameters(parameters).catch(() => {});
      }
    }
    const echoed = new MediaStream();
    pc.ontrack = (event) => {
      echoed.addTrack(event.track);
      byId("echo").srcObject = echoed;
    };

    setStatus("connecting", "Đang kết nối… / Connecting…");
    const reply = await sendOffer(pc, `/linktest/${ids}`, bearer(token));
    if (reply.status !== 201) throw new Error(`${reply.status}: ${await reason(reply)}`);
    location = reply.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await reply.text() });
    await connected(pc);

    // one reading a second; rates between the reading after the start-up and the last one
    setStatus("measuring", "Đang đo… / Measuring…");
    const readings = [counters(await pc.getStats())];
    for (let second = 1; second <= SECONDS; second += 1) {
      await sleep(1000);
      readings.push(counters(await pc.getStats()));
      byId("progress").value = second;
      const live = between(readings[readings.length - 2], readings[readings.length - 1]);
      setStatus("measuring", `Đang đo… / Measuring… ${second}/${SECONDS} s · `
        + `↑ ${kbps(live.kbpsOut)} ↓ ${kbps(live.kbpsIn)}`);
    }
    const span = between(readings[SKIP_SECONDS], readings[readings.length - 1]);
    const result = {
      upKbps: span.kbpsOut,
      downKbps: span.kbpsIn,
      lossUp: span.lossOut,
      lossDown: span.lossIn,
      rttMs: median(readings.slice(1).map((r) => r.rttMs)),
    };
    showResult(result);
    showVerdict(shortfalls(result));
    setStatus("done", "Xong / Done");
  } finally {
    await hangUp(location, bearer(token));
    pc.close();
    for (const track of stream.getTracks()) track.stop();
    button.disabled = false;
  }
}

async function start() {
  if (!token) {
    setStatus("error", "Thiếu mã truy cập / No token");
    fail("Liên kết không có mã truy cập (#token=…). The link has no token.");
    return;
  }
  const reply = await fetch(`/rooms/${encodeURIComponent(room)}/sites/${encodeURIComponent(site)}/profile`, { headers: bearer(token), cache: "no-store" });
  if (!reply.ok) {
    setStatus("error", "Lỗi / Error");
    fail(`${reply.status}: ${await reason(reply)}`);
    return;
  }
  profile = await reply.json();
  byId("room-name").textContent = profile.room_name;
  byId("site-name").textContent = profile.site_name;
  byId("profile").textContent = `${profile.name}: ${profile.width}×${profile.height}, `
    + `${profile.fps} fps, ${profile.video_kbps} + ${profile.audio_kbps} kbit/s`;
  const need = kbps(needKbps(profile));
  byId("need-up").textContent = `≥ ${need}`;
  byId("need-down").textContent = `≥ ${need}`;
  byId("need-loss-up").textContent = `≤ ${percent(MAX_LOSS)}`;
  byId("need-loss-down").textContent = `≤ ${percent(MAX_LOSS)}`;
  byId("need-rtt").textContent = `≤ ${MAX_RTT_MS} ms`;
  byId("start").disabled = false;
  setStatus("ready", "Sẵn sàng / Ready");
  byId("start").addEventListener("click", () => {
    run().catch((error) => {
      setStatus("error", "Lỗi / Error");
      fail(String(error.message || error));
      byId("start").disabled = false;
    });
  });
}

start().catch((error) => fail(String(error)));
