"""The room's audio: every 20 ms, one frame per site in, one N-1 mix per site out.

Runs in the room's audio clock thread. Each site's received frames (any rate, any layout) are
resampled to mono 48 kHz and buffered in a small FIFO that absorbs network jitter; a site with
nothing buffered contributes silence for that tick and never delays the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import av
import numpy as np

from . import _mix

if TYPE_CHECKING:
    from .site import Site

logger = logging.getLogger(__name__)

RATE = 48000
FRAME = 960  # samples per 20 ms tick
PRIME = 2  # frames buffered before a site's audio starts (or restarts after running dry)
LIMIT = 10  # frames buffered at most; beyond that the oldest audio is dropped


class SiteAudio:
    """A site's inbound audio as seen by the audio thread: resampler and jitter FIFO."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._fifo = np.zeros(FRAME * LIMIT, np.int16)
        self._count = 0
        self._playing = False
        self.underruns = 0
        self.dropped = 0

    def feed(self, frame: av.AudioFrame) -> None:
        for mono in self._resampler.resample(frame):
            samples = mono.to_ndarray().reshape(-1)
            self._append(samples)

    def _append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n >= len(self._fifo):
            self.dropped += self._count + n - len(self._fifo)
            self._fifo[:] = samples[-len(self._fifo) :]
            self._count = len(self._fifo)
            return
        overflow = self._count + n - len(self._fifo)
        if overflow > 0:
            self._fifo[: self._count - overflow] = self._fifo[overflow : self._count]
            self._count -= overflow
            self.dropped += overflow
        self._fifo[self._count : self._count + n] = samples
        self._count += n

    def take(self, out: np.ndarray) -> bool:
        """Fill `out` (FRAME samples) from the FIFO; silence and False when not playing."""
        if not self._playing and self._count >= PRIME * FRAME:
            self._playing = True
        if not self._playing or self._count < FRAME:
            if self._playing:
                self.underruns += 1
                self._playing = False
            out[:] = 0
            return False
        out[:] = self._fifo[:FRAME]
        self._fifo[: self._count - FRAME] = self._fifo[FRAME : self._count]
        self._count -= FRAME
        return True


class Mixer:
    """N-1 mixing for one room; owned by the room's audio clock thread."""

    def __init__(self) -> None:
        self._audio: dict[Site, SiteAudio] = {}  # keyed by session, so a redial starts fresh
        self._inputs = np.zeros((0, FRAME), np.int16)
        self._outputs = np.zeros((0, FRAME), np.int16)
        self._levels = np.zeros(0, np.float64)

    def tick(self, sites: Sequence[Site]) -> np.ndarray:
        """Mix one 20 ms tick; returns the sites' input frames (a view valid until next tick)."""
        n = len(sites)
        if n == 0:
            self._audio.clear()
            return self._inputs[:0]
        if self._inputs.shape[0] != n:
            self._inputs = np.zeros((n, FRAME), np.int16)
            self._outputs = np.zeros((n, FRAME), np.int16)
            self._levels = np.zeros(n, np.float64)
        present = set(sites)
        for key in [k for k in self._audio if k not in present]:
            del self._audio[key]

        # gather one 20 ms frame per site (or silence)
        for i, site in enumerate(sites):
            audio = self._audio.setdefault(site, SiteAudio())
            while site.audio_ring:
                try:
                    audio.feed(site.audio_ring.popleft())
                except IndexError:
                    break
            audio.take(self._inputs[i])

        _mix.mix_minus(self._inputs, self._outputs)
        _mix.levels_dbov(self._inputs, self._levels)

        for i, site in enumerate(sites):
            site.level_dbov = float(self._levels[i])
            frame = av.AudioFrame.from_ndarray(
                self._outputs[i : i + 1], format="s16", layout="mono"
            )
            frame.sample_rate = RATE
            site.audio_out.offer(frame)
        return self._inputs
