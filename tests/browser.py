"""Helpers for the browser tests: headless Chromium with fake camera and microphone, reading
pictures and sound back out of its pages, and waiting without fixed sleeps."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mcu.media import speech_wav, y4m

CHROMIUM = shutil.which("chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artefacts"
SPEECH = ("Xin chào, đây là điểm cầu thử nghiệm của văn phòng tỉnh. "
          "Chúng tôi nghe rõ và nhìn rõ. Một, hai, ba, bốn, năm.")


def fake_media(folder: Path) -> tuple[Path, Path]:
    """The fake camera (a looping `.y4m` talking head) and microphone (Vietnamese speech)."""
    camera = y4m("carphone_pristine.mp4", folder / "camera.y4m")
    microphone = speech_wav(SPEECH, folder / "microphone.wav")
    return camera, microphone


def chromium_args(camera: Path, microphone: Path) -> list[str]:
    """Flags that let headless Chromium be a WebRTC site on loopback (see PEERS.md)."""
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ]


async def until(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 30.0,
                every: float = 0.25) -> Any:
    """Poll `check` (plain or async) until it gives an array or something truthy, and return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value is not None and value is not False and (
                isinstance(value, np.ndarray) or value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} "
                                 f"(last: {value!r})")
        await asyncio.sleep(every)


# draws the video's current frame at its own size and hands it back as a PNG data URL
_GRAB = """(selector) => {
  const video = document.querySelector(selector);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
}"""


async def grab_frame(page: Any, selector: str) -> np.ndarray | None:
    """The current picture of a `<video>` as an RGB array (height, width, 3), or None."""
    url = await page.evaluate(_GRAB, selector)
    if not url:
        return None
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def save_image(image: np.ndarray, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    Image.fromarray(image).save(path)
    return path


async def screenshot(page: Any, name: str, full: bool = False) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    await page.screenshot(path=str(path), full_page=full)
    return path


def region(image: np.ndarray, fx: float, fy: float, fw: float, fh: float,
           keep: float = 0.3) -> np.ndarray:
    """The central `keep` part of a rectangle given as fractions of the picture, as RGB rows."""
    height, width = image.shape[:2]
    x0, y0 = fx * width, fy * height
    w, h = fw * width, fh * height
    left, right = int(x0 + w * (1 - keep) / 2), int(x0 + w * (1 + keep) / 2)
    top, bottom = int(y0 + h * (1 - keep) / 2), int(y0 + h * (1 + keep) / 2)
    return image[top:bottom, left:right].reshape(-1, 3).astype(np.float64)


def yuv_to_rgb(yuv: tuple[int, int, int]) -> tuple[float, float, float]:
    """Limited-range BT.601 YCbCr to RGB 0-255, the conversion browsers apply to VP8 video."""
    y, u, v = (float(c) for c in yuv)
    luma = 1.164 * (y - 16)
    red = luma + 1.596 * (v - 128)
    green = luma - 0.392 * (u - 128) - 0.813 * (v - 128)
    blue = luma + 2.017 * (u - 128)
    return tuple(min(255.0, max(0.0, c)) for c in (red, green, blue))  # type: ignore[return-value]


def looks_like(pixels: np.ndarray, rgb: tuple[float, float, float],
               tolerance: float = 35.0) -> bool:
    """Whether the mean colour of `pixels` is within `tolerance` of `rgb` on every channel."""
    mean = pixels.mean(axis=0)
    return bool(np.all(np.abs(mean - np.asarray(rgb)) <= tolerance))


# RMS (0..1) of what a <video>'s stream plays, over `ms`, through a WebAudio analyser
_LOUDNESS = """async ([selector, ms]) => {
  const stream = document.querySelector(selector).srcObject;
  if (!stream || stream.getAudioTracks().length === 0) return null;
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let sum = 0, count = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    analyser.getFloatTimeDomainData(samples);
    for (const s of samples) { sum += s * s; count += 1; }
  }
  source.disconnect();
  await context.close();
  return Math.sqrt(sum / Math.max(count, 1));
}"""


async def loudness(page: Any, selector: str, seconds: float = 1.0) -> float | None:
    """RMS level (full scale 1.0) of the audio a `<video>` element receives."""
    value = await page.evaluate(_LOUDNESS, [selector, int(seconds * 1000)])
    return float(value) if value is not None else None


async def frames_shown(page: Any, selector: str) -> int:
    """Frames a `<video>` element has presented so far."""
    count = await page.evaluate(
        "(s) => { const v = document.querySelector(s);"
        " return v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames"
        " : 0; }", selector)
    return int(count)
