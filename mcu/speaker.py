"""Active speaker: whether each site is talking this tick, and which site holds the floor.

Everything here is pure: levels, samples, flags and times come in as plain values, decisions go
out, and nothing reads a clock. The room's audio thread calls `RoomSpeaker.update` once per 20 ms
tick; speaker layouts put `holder` in the large tile and fill the others from `recent()`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import webrtcvad
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

RATE = 48000
VAD_QUIET_MARGIN_DB = 10.0  # frames this far under the speech minimum skip the VAD
TICK = 0.020  # seconds per audio frame
SILENCE_DBOV = -127.0  # what a frame of zeros measures (`_mix.levels_dbov` floors here)
# below this a frame is digital silence (underrun, muted or gated microphone), not room noise
QUIET_DBOV = -90.0
# slack on time comparisons: tick times are sums of floats
EPSILON = 1e-6


def rfc6464_dbov(level: int) -> float:
    """Level in dBov of an RTP audio-level header value (RFC 6464 section 3: 0..127 is -0..-127)."""
    if not 0 <= level <= 127:
        raise ValueError(f"RFC 6464 audio level must be 0..127, got {level}")
    return -float(level)


class VoiceDetector:
    """Voice activity of one site, one frame at a time.

    A frame is speech when two tests agree. The level test wants the frame at least `margin_db`
    above the site's background noise and above `min_dbov`. The voice test is the RTP header's
    voice-activity flag when the site sends one, otherwise webrtcvad's verdict on the samples
    (left out when `aggressiveness` is None or there are no samples).

    The background follows the quiet parts of the signal: it drops at once to any quieter frame
    and climbs by `rise_db_per_s`. A level that stays within `steady_db` for `steady_s` (a fan, a
    hum, music on hold — speech always has dips between syllables) becomes the background at
    once. Digital silence says nothing about the room and leaves the background as it was, so
    the first frame above it is never speech: it sets the background.
    """

    def __init__(
        self,
        aggressiveness: int | None = 2,
        *,
        margin_db: float = 9.0,
        min_dbov: float = -55.0,
        rise_db_per_s: float = 0.5,
        steady_s: float = 1.0,
        steady_db: float = 5.0,
        rate: int = RATE,
        frame_s: float = TICK,
    ) -> None:
        if aggressiveness is not None and not 0 <= aggressiveness <= 3:
            raise ValueError(f"webrtcvad aggressiveness must be 0..3, got {aggressiveness}")
        if not webrtcvad.valid_rate_and_frame_length(rate, round(rate * frame_s)):
            raise ValueError(f"webrtcvad takes no {frame_s * 1000:g} ms frames at {rate} Hz")
        self._vad = webrtcvad.Vad(aggressiveness) if aggressiveness is not None else None
        self.margin_db = margin_db
        self.min_dbov = min_dbov
        self.rise_db_per_s = rise_db_per_s
        self.steady_db = steady_db
        self.rate = rate
        self.frame_s = frame_s
        self.floor: float | None = None  # background level in dBov, None until heard
        self._levels: deque[float] = deque(maxlen=max(1, round(steady_s / frame_s)))

    def is_speech(
        self,
        samples: NDArray[np.int16] | None,
        level_dbov: float,
        vad_flag: bool | None = None,
    ) -> bool:
        """Whether this frame (mono int16 `samples`, measuring `level_dbov`) is someone talking."""
        # until the background is known (the first sound heard sets it) nothing is loud
        loud = (
            self.floor is not None
            and level_dbov >= self.min_dbov
            and level_dbov >= self.floor + self.margin_db
        )
        # webrtcvad sees every frame but near-silent ones (its noise model learns from the
        # background); far below the speech minimum it has nothing to learn, and a 64-site
        # room of quiet listeners would spend its audio tick on it
        if vad_flag is not None:
            voiced = vad_flag
        elif level_dbov < self.min_dbov - VAD_QUIET_MARGIN_DB:
            voiced = False
        else:
            voiced = self._voiced(samples)
        seconds = self.frame_s if samples is None else len(samples) / self.rate
        self._follow_background(level_dbov, seconds)
        return loud and voiced

    def _voiced(self, samples: NDArray[np.int16] | None) -> bool:
        if self._vad is None or samples is None:
            return True
        if not webrtcvad.valid_rate_and_frame_length(self.rate, len(samples)):
            raise ValueError(
                f"webrtcvad takes 10, 20 or 30 ms frames: got {len(samples)} samples "
                f"at {self.rate} Hz"
            )
        frame = np.ascontiguousarray(samples, dtype=np.int16)
        return bool(self._vad.is_speech(frame.tobytes(), self.rate))

    def _follow_background(self, level: float, seconds: float) -> None:
        if level <= QUIET_DBOV:
            return
        self._levels.append(level)
        if self.floor is None or level < self.floor:
            self.floor = level
            return
        self.floor = min(level, self.floor + self.rise_db_per_s * seconds)

        # a steady level is background however loud it is
        if len(self._levels) == self._levels.maxlen:
            lowest = min(self._levels)
            if max(self._levels) - lowest <= self.steady_db and lowest > self.floor:
                self.floor = lowest


@dataclass(frozen=True)
class FloorChange:
    """The floor moved to `site` at `time`; `previous` held it until then (None: it was free)."""

    time: float
    site: str
    previous: str | None


@dataclass
class _Run:
    """One site's current talk run, counted in ticks."""

    start: float
    last: float  # time of its latest speech tick
    ticks: int = 1  # every tick since the start
    voiced: int = 1  # speech ticks among them
    span: int = 1  # ticks from the start through the latest speech tick

    @property
    def dense(self) -> float:
        return self.voiced / self.span


class FloorTracker:
    """Who holds the floor, from each present site's speech flag once per tick.

    A talk run is a site's speech with pauses of less than `gap_bridge` bridged. A run qualifies
    once it has lasted `take_after` and at least `min_voiced` of its ticks were speech (typing and
    other clicks come in bursts that are mostly gaps). A qualifying run takes the floor when the
    floor is free, or when the holder has had it for `hold_min` and has stopped talking (its run
    ended). While the holder still talks, a challenger must have started later and talked for
    `2 * take_after`, so two people talking over each other do not flip the floor back and forth.
    """

    def __init__(
        self,
        take_after: float = 1.0,
        hold_min: float = 2.0,
        gap_bridge: float = 0.3,
        *,
        min_voiced: float = 0.5,
    ) -> None:
        if take_after <= 0:
            raise ValueError(f"take_after must be above 0 s, got {take_after}")
        if hold_min < 0 or gap_bridge < 0:
            raise ValueError(f"hold_min and gap_bridge must be ≥ 0 s, got {hold_min}, {gap_bridge}")
        if not 0 <= min_voiced <= 1:
            raise ValueError(f"min_voiced must be a fraction 0..1, got {min_voiced}")
        self.take_after = take_after
        self.hold_min = hold_min
        self.gap_bridge = gap_bridge
        self.min_voiced = min_voiced
        self.history: list[tuple[float, str]] = []  # (time, site) of every floor change
        self._holder: str | None = None
        self._since = 0.0  # when the holder took the floor
        self._runs: dict[str, _Run] = {}
        self._present: set[str] = set()
        self._recent: dict[str, None] = {}  # ordered set, most recent last

    @property
    def holder(self) -> str | None:
        """The site holding the floor, None while it is free."""
        return self._holder

    @property
    def previous(self) -> str | None:
        """The latest former holder that is still present, other than the holder itself."""
        for _, site in reversed(self.history):
            if site != self._holder and site in self._present:
                return site
        return None

    def recent(self, limit: int | None = None) -> tuple[str, ...]:
        """Sites by their latest floor taking or qualifying talk run, most recent first."""
        order = tuple(reversed(self._recent))
        return order if limit is None else order[:limit]

    def talking(self, site: str) -> bool:
        """Whether `site` has a talk run going (speaking, or in a pause still bridged)."""
        return site in self._runs

    def remove(self, site: str) -> None:
        """`site` left: forget its runs; if it held the floor, the floor is free."""
        self._present.discard(site)
        self._runs.pop(site, None)
        self._recent.pop(site, None)
        if self._holder == site:
            logger.debug("floor free: holder site=%s left", site)
            self._holder = None

    def update(self, now: float, speaking: Mapping[str, bool]) -> FloorChange | None:
        """Take one tick of speech flags at time `now` (seconds); return the change, if any."""
        self._present.update(speaking)

        # extend, start or end each site's talk run; a site missing from `speaking` is quiet
        qualified: list[str] = []
        for site in sorted(self._runs.keys() | speaking.keys()):
            if self._follow_run(site, now, bool(speaking.get(site, False))):
                qualified.append(site)
        for site in qualified:
            self._touch(site)

        # the longest qualifying run among those allowed to take over wins
        takers = [site for site in qualified if site != self._holder and self._may_take(site, now)]
        if not takers:
            return None
        site = min(takers, key=lambda s: (self._runs[s].start, s))
        change = FloorChange(now, site, self._holder)
        self._holder = site
        self._since = now
        self.history.append((now, site))
        self._touch(site)
        logger.debug("floor site=%s previous=%s at %.3f s", site, change.previous, now)
        return change

    def _follow_run(self, site: str, now: float, talking: bool) -> bool:
        """Move `site`'s run on by one tick; True when the run qualifies at this tick."""
        run = self._runs.get(site)
        if run is not None and now - run.last > self.gap_bridge + EPSILON:
            del self._runs[site]
            run = None
        if run is None:
            if talking:
                self._runs[site] = _Run(now, now)
            return False
        run.ticks += 1
        if not talking:
            return False
        run.voiced += 1
        run.span = run.ticks
        run.last = now
        return now - run.start >= self.take_after - EPSILON and run.dense >= self.min_voiced

    def _may_take(self, site: str, now: float) -> bool:
        if self._holder is None:
            return True
        if now - self._since < self.hold_min - EPSILON:
            return False
        held = self._runs.get(self._holder)
        if held is None:
            return True
        run = self._runs[site]
        return run.start > held.start and now - run.start >= 2 * self.take_after - EPSILON

    def _touch(self, site: str) -> None:
        self._recent.pop(site, None)
        self._recent[site] = None


class RoomSpeaker:
    """One `VoiceDetector` per present site feeding one `FloorTracker`."""

    def __init__(
        self,
        floor: FloorTracker | None = None,
        detector: Callable[[], VoiceDetector] = VoiceDetector,
    ) -> None:
        self.floor = floor if floor is not None else FloorTracker()
        self._new_detector = detector
        self._detectors: dict[str, VoiceDetector] = {}
        self._speaking: frozenset[str] = frozenset()

    @property
    def speaking(self) -> frozenset[str]:
        """Sites whose detector heard speech in the latest tick."""
        return self._speaking

    @property
    def holder(self) -> str | None:
        return self.floor.holder

    def update(
        self,
        now: float,
        levels: Mapping[str, float],
        frames: Mapping[str, NDArray[np.int16] | None],
        vad_flags: Mapping[str, bool] | None = None,
    ) -> FloorChange | None:
        """One tick: `levels` (dBov) names the present sites; frames and flags are optional."""
        flags = vad_flags if vad_flags is not None else {}
        talking: dict[str, bool] = {}
        for site, level in levels.items():
            detector = self._detectors.get(site)
            if detector is None:
                detector = self._detectors[site] = self._new_detector()
            talking[site] = detector.is_speech(frames.get(site), level, flags.get(site))
        self._speaking = frozenset(site for site, yes in talking.items() if yes)
        return self.floor.update(now, talking)

    def remove(self, site: str) -> None:
        """`site` left the room: drop its detector and its place on the floor."""
        self._detectors.pop(site, None)
        self._speaking -= {site}
        self.floor.remove(site)
