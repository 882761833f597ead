"""Adaptive profile choice: move a site down the profile ladder when its link cannot carry its
profile, and back up, with hysteresis so it never flaps.

Pure: fed the receiver's estimate (REMB, RFC draft-alvestrand-rmcat-remb) and the loss fraction
from its receiver reports (RFC 3550 section 6.4.1), with the time passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .config import Profile

logger = logging.getLogger(__name__)


def ladder(profiles: Sequence[Profile], ceiling: Profile) -> list[Profile]:
    """The profiles a site may use, cheapest first, up to its configured one."""
    total = ceiling.video_kbps + ceiling.audio_kbps
    usable = [p for p in profiles if p.video_kbps + p.audio_kbps <= total]
    return sorted(usable, key=lambda p: (p.video_kbps + p.audio_kbps, p.width * p.height))


@dataclass(frozen=True)
class ProfileChange:
    time: float
    before: str
    after: str
    reason: str


class AdaptiveProfile:
    """The profile one site should receive now.

    Down one step when the estimate stays below `down_margin` x the current profile's total
    bitrate (or what is really sent, when less) for `down_after` seconds, or the loss stays above
    `loss_down` for as long; loss above `loss_heavy` (a link far over its capacity, where every
    second costs the site its pictures) moves it after `heavy_after`. The margin leaves room for
    estimates that wander 10-15 % under what arrives on a healthy link (aiortc's delay-based
    estimator on a busy machine does): a narrow link shows a clear shortfall, or loss. Up one
    step when the estimate stays above `up_margin` x the next profile's total with loss under
    `loss_up` for `up_after` seconds. After any change, no other for `hold` seconds.

    A receiver's estimate rarely climbs far above what it receives (delay-based estimators cap
    it near 1.5x the incoming rate), so a site moved down might never show the headroom to come
    back. Hence probing: after `probe_after` seconds without congestion (estimate not below the
    current profile, loss under `loss_up`) the site tries the next step; if it has to come down
    again within `probe_window`, the next probe waits twice as long.
    """

    def __init__(
        self,
        steps: Sequence[Profile],
        start: Profile,
        *,
        down_margin: float = 0.8,
        up_margin: float = 1.3,
        loss_down: float = 0.10,
        loss_heavy: float = 0.25,
        loss_up: float = 0.02,
        down_after: float = 2.0,
        heavy_after: float = 1.0,
        up_after: float = 8.0,
        hold: float = 8.0,
        probe_after: float = 20.0,
        probe_window: float = 10.0,
    ) -> None:
        if not steps:
            raise ValueError("a site needs at least one profile")
        self.steps = list(steps)
        self.index = next((i for i, p in enumerate(self.steps) if p.name == start.name),
                          len(self.steps) - 1)
        self.down_margin = down_margin
        self.up_margin = up_margin
        self.loss_down = loss_down
        self.loss_heavy = loss_heavy
        self.loss_up = loss_up
        self.down_after = down_after
        self.heavy_after = heavy_after
        self.up_after = up_after
        self.hold = hold
        self.probe_after = probe_after
        self.probe_window = probe_window
        self._probe_wait = probe_after
        self.history: list[ProfileChange] = []
        self._low_since: float | None = None
        self._high_since: float | None = None
        self._calm_since: float | None = None
        self._probed_at: float | None = None
        self._changed_at = -1e9

    @property
    def profile(self) -> Profile:
        return self.steps[self.index]

    @staticmethod
    def _bps(profile: Profile) -> int:
        return (profile.video_kbps + profile.audio_kbps) * 1000

    def update(self, now: float, estimate_bps: float | None, loss_fraction: float | None,
               sent_bps: float | None = None) -> ProfileChange | None:
        """One observation; returns the change it causes, if any.

        `sent_bps` is what actually went to the site over the last interval. An encoder showing
        still pictures sends well under its profile's rate, and a receiver's estimate then sits
        near 1.5x what arrives: below the profile's rate, yet no sign of a narrow link. So the
        estimate starves the site only when it is below what is really being sent.
        """
        loss = loss_fraction or 0.0
        current = self.profile
        need = self._bps(current)
        if sent_bps is not None and sent_bps > 0:
            need = min(need, int(sent_bps))
        starved = estimate_bps is not None and estimate_bps < self.down_margin * need
        lossy = loss > self.loss_down
        if (starved or lossy) and self.index > 0:
            self._low_since = now if self._low_since is None else self._low_since
        else:
            self._low_since = None

        headroom = False
        if self.index + 1 < len(self.steps) and estimate_bps is not None:
            headroom = (estimate_bps >= self.up_margin * self._bps(self.steps[self.index + 1])
                        and loss < self.loss_up)
        if headroom:
            self._high_since = now if self._high_since is None else self._high_since
        else:
            self._high_since = None
        calm = (self.index + 1 < len(self.steps) and loss < self.loss_up
                and (estimate_bps is None or estimate_bps >= self._bps(current)))
        if calm:
            self._calm_since = now if self._calm_since is None else self._calm_since
        else:
            self._calm_since = None

        if now - self._changed_at < self.hold:
            return None
        estimate = (f"estimate {estimate_bps / 1000:.0f} kbit/s" if estimate_bps is not None
                    else "no estimate")
        wait = self.heavy_after if loss > self.loss_heavy else self.down_after
        if self._low_since is not None and now - self._low_since >= wait:
            if self._probed_at is not None and now - self._probed_at <= self.probe_window:
                self._probe_wait = min(self._probe_wait * 2, 8 * self.probe_after)
            self._probed_at = None
            return self._move(now, -1, f"loss {loss:.0%}" if lossy and not starved else estimate)
        if self._high_since is not None and now - self._high_since >= self.up_after:
            return self._move(now, +1, estimate)
        if self._calm_since is not None and now - self._calm_since >= self._probe_wait:
            if self._probed_at is not None:
                self._probe_wait = self.probe_after  # the last probe held
            self._probed_at = now
            return self._move(now, +1, f"probe ({estimate})")
        return None

    def _move(self, now: float, step: int, reason: str) -> ProfileChange:
        before = self.profile.name
        self.index += step
        self._changed_at = now
        self._low_since = self._high_since = self._calm_since = None
        change = ProfileChange(now, before, self.profile.name, reason)
        self.history.append(change)
        return change
