"""Measurements on received media, used by the end-to-end tests."""

from __future__ import annotations

import av
import numpy as np


def region_colour(frame: av.VideoFrame, rect: tuple[int, int, int, int],
                  keep: float = 0.3) -> tuple[float, float, float]:
    """Mean (Y, U, V) of the central `keep` fraction of `rect` in an I420 frame."""
    image = frame.to_ndarray(format="yuv420p")
    h, w = frame.height, frame.width
    x, y, rw, rh = rect
    x0, x1 = x + int(rw * (1 - keep) / 2), x + int(rw * (1 + keep) / 2)
    y0, y1 = y + int(rh * (1 - keep) / 2), y + int(rh * (1 + keep) / 2)
    luma = image[:h]
    chroma = image[h:].reshape(-1)
    u = chroma[: (w // 2) * (h // 2)].reshape(h // 2, w // 2)
    v = chroma[(w // 2) * (h // 2):].reshape(h // 2, w // 2)
    return (
        float(luma[y0:y1, x0:x1].mean()),
        float(u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()),
        float(v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].mean()),
    )


def colour_close(measured: tuple[float, float, float], expected: tuple[int, int, int],
                 tolerance: float = 12.0) -> bool:
    return all(abs(m - e) <= tolerance for m, e in zip(measured, expected, strict=True))


def tone_power(samples: np.ndarray, frequency: float, rate: int = 48000) -> float:
    """Power of `samples` within ±4 Hz of `frequency` (Hann-windowed spectrum)."""
    data = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(data)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > frequency - 4) & (freqs < frequency + 4)
    return float(spectrum[band].sum())
