"""The room's audio: every 20 ms, one frame per site in, one N-1 mix per site out.

Runs in the room's audio clock thread. Each site's received frames (any rate, any layout) are
resampled to mono 48 kHz and buffered in a small FIFO that absorbs network jitter; a site with
nothing buffered contributes silence for that tick and never delays the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from . import _mix
from .opus import OpusEncoder, OpusSettings, settings_for_profile

if TYPE_CHECKING:
    from .site import Site
    from .viewer import Viewer

logger = logging.getLogger(__name__)

RATE = 48000
FRAME = 960  # samples per 20 ms tick
PRIME = 2  # frames buffered before a site's audio starts (or restarts after running dry)
LIMIT = 10  # frames buffered at most; beyond that the oldest audio is dropped
CONCEAL = 3  # ticks a missing frame is covered by the fading last one before play stops
TALK_THRESHOLD_DBOV = -50.0  # a site louder than this is talking: it gets its own N-1 mix
TALK_HANGOVER = 1.0  # seconds it keeps its own mix after it falls quiet


class SiteAudio:
    """A site's inbound audio as seen by the audio thread: resampler and jitter FIFO."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._fifo = np.zeros(FRAME * LIMIT, np.int16)
        self._count = 0
        self._playing = False
        self._missing = 0  # ticks in a row the FIFO had nothing while playing
        self._last = np.zeros(FRAME, np.int16)
        self.underruns = 0
        self.dropped = 0

    def feed(self, frame: av.AudioFrame) -> None:
        # what aiortc's Opus decoder gives (48 kHz s16, stereo or mono) needs no resampler
        if frame.sample_rate == RATE and frame.format.name == "s16":
            channels = len(frame.layout.channels)
            data = frame.to_ndarray().reshape(-1)
            if channels == 1:
                self._append(data)
                return
            if channels == 2:
                pairs = data.reshape(-1, 2).astype(np.int32)
                self._append(((pairs[:, 0] + pairs[:, 1]) >> 1).astype(np.int16))
                return
        for mono in self._resampler.resample(frame):
            self._append(mono.to_ndarray().reshape(-1))

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
        """Fill `out` (FRAME samples) from the FIFO; False when nothing real was played.

        A frame missing while the site is playing (a lost packet) is concealed by the last one,
        fading, for up to `CONCEAL` ticks, and play goes on as soon as audio is back: one lost
        packet costs one 20 ms frame, not a refill. Longer silences stop play until the FIFO
        holds `PRIME` frames again.
        """
        if not self._playing and self._count >= PRIME * FRAME:
            self._playing = True
            self._missing = 0
        if self._playing and self._count >= FRAME:
            out[:] = self._fifo[:FRAME]
            self._fifo[: self._count - FRAME] = self._fifo[FRAME : self._count]
            self._count -= FRAME
            self._last[:] = out
            self._missing = 0
            return True
        if self._playing:
            self.underruns += 1
            self._missing += 1
            if self._missing <= CONCEAL:
                self._last >>= 1  # halve it each tick: a fade, not a loop
                out[:] = self._last
                return False
            self._playing = False
        out[:] = 0
        return False


class Mixer:
    """N-1 mixing and Opus encoding for one room; owned by the room's audio clock thread.

    Everyone's N-1 mix is computed (total minus own, O(N)), but only sites that are talking need
    it: a site that is silent would hear nothing of itself in the full mix anyway. So listeners
    share one encoding of the full mix per audio setting, and each talker gets its own encoder.
    """

    def __init__(self, talk_threshold_dbov: float = TALK_THRESHOLD_DBOV,
                 talk_hangover: float = TALK_HANGOVER) -> None:
        self._audio: dict[Site, SiteAudio] = {}  # keyed by session, so a redial starts fresh
        self._own: dict[Site, OpusEncoder] = {}
        self._shared: dict[OpusSettings, OpusEncoder] = {}
        self._talked_at: dict[Site, float] = {}
        self.talk_threshold_dbov = talk_threshold_dbov
        self.talk_hangover = talk_hangover
        # one row per site plus a last row kept silent: its "everyone but me" is the full mix
        self._inputs = np.zeros((1, FRAME), np.int16)
        self._outputs = np.zeros((1, FRAME), np.int16)
        self._gains = np.ones(1, np.float32)
        self._levels = np.zeros(1, np.float64)
        self.route: dict[str, str] = {}  # site id → "own" or "shared", as of the last tick
        self.own_encodes = 0
        self.shared_encodes = 0

    def tick(self, sites: Sequence[Site], now: float, pts: int,
             muted: frozenset[str] = frozenset(), audience: Sequence[Viewer] = ()) -> np.ndarray:
        """Mix and encode one 20 ms tick stamped `pts` (samples); returns the sites' inputs
        (a view valid until the next tick)."""
        n = len(sites)
        self._forget([site for site in self._audio if site not in sites])
        if n == 0:
            return self._inputs[:0]  # an empty room sends nothing, to viewers neither
        if self._inputs.shape[0] != n + 1:
            self._inputs = np.zeros((n + 1, FRAME), np.int16)
            self._outputs = np.zeros((n + 1, FRAME), np.int16)
            self._gains = np.ones(n + 1, np.float32)
            self._levels = np.zeros(n + 1, np.float64)

        # gather one 20 ms frame per site (or silence)
        for i, site in enumerate(sites):
            audio = self._audio.setdefault(site, SiteAudio())
            while site.audio_ring:
                try:
                    audio.feed(site.audio_ring.popleft())
                except IndexError:
                    break
            audio.take(self._inputs[i])
            # muted by the operator: heard by nobody, and never the speaker (its level is -127)
            self._gains[i] = 0.0 if site.id in muted else 1.0

        # N-1 for everyone, the full mix in the last row, soft-limited, levels: one pass
        _mix.mix_minus_limited(self._inputs, self._gains, self._outputs, self._levels)
        everyone = self._outputs[n]

        # talkers get their own mix; everyone else shares the full one
        shared: dict[OpusSettings, av.Packet[Any]] = {}
        for i, site in enumerate(sites):
            site.level_dbov = float(self._levels[i])
            if site.level_dbov > self.talk_threshold_dbov:
                self._talked_at[site] = now
            settings = _settings_for(site)
            if now - self._talked_at.get(site, -1e9) <= self.talk_hangover:
                settings = _with_loss(settings, site.loss_fraction)
                encoder = self._own.get(site)
                if encoder is None or encoder.settings.channels != settings.channels:
                    encoder = self._own[site] = OpusEncoder(settings)
                elif encoder.settings != settings:
                    encoder.apply(settings)  # same stream: a new state would click
                packet = encoder.packet(self._outputs[i], pts)
                self.own_encodes += 1
                self.route[site.id] = "own"
            else:
                if settings not in shared:
                    encoder = self._shared.get(settings)
                    if encoder is None:
                        encoder = self._shared[settings] = OpusEncoder(settings)
                    shared[settings] = encoder.packet(everyone, pts)
                    self.shared_encodes += 1
                packet = shared[settings]
                self.route[site.id] = "shared"
            site.audio_out.offer(packet)

        # viewers hear the full mix, like any listener
        for viewer in audience:
            settings = _settings_for(viewer)
            if settings not in shared:
                encoder = self._shared.get(settings)
                if encoder is None:
                    encoder = self._shared[settings] = OpusEncoder(settings)
                shared[settings] = encoder.packet(everyone, pts)
                self.shared_encodes += 1
            viewer.audio_out.offer(shared[settings])
        return self._inputs[:n]

    def _forget(self, gone: list[Site]) -> None:
        for site in gone:
            self._audio.pop(site, None)
            self._talked_at.pop(site, None)
            self.route.pop(site.id, None)
            encoder = self._own.pop(site, None)
            if encoder is not None:
                encoder.close()


def _settings_for(site: Site | Viewer) -> OpusSettings:
    """The Opus settings of a site's profile (mono on low profiles)."""
    profile = site.profile
    return settings_for_profile(profile.audio_kbps, low_profile=profile.width <= 640)


def _with_loss(settings: OpusSettings, loss_fraction: float | None) -> OpusSettings:
    """`settings` with the loss a site reports as FEC hint, when above the default."""
    loss = round((loss_fraction or 0.0) * 100)
    if loss <= settings.loss_percent:
        return settings
    # coarse steps, so a wobbling loss figure does not re-tune the encoder every tick
    return dataclasses.replace(settings, loss_percent=min(50, -(-loss // 10) * 10))
