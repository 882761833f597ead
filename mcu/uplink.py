"""How fast a site should send its video to the MCU: a budget told to it by REMB once a second.

A district's uplink is as narrow as its downlink. A site left to its own encoder's start rate
(aiortc starts at 500 kbit/s, a browser probes upwards) overruns a 384 kbit/s link: the queue
at its end drops most packets, retransmissions add to the flood, its audio and its keyframe
requests drown with the video. So the MCU owns the site's video rate, as a receiver does in
WebRTC (REMB, draft-alvestrand-rmcat-remb), from what it sees of the site's stream:

- loss over the last interval, as GCC's loss-based controller uses it, but counting only what
  exceeds the link's own loss (a district link loses a few percent whatever the rate): the
  least loss of the last `memory` intervals, never taken above `loss_high`, so that a lasting
  overload still counts. More than `loss_high` over it: the budget drops to what really
  arrived, less half that excess; under `loss_low`: it grows by `growth` a second; in between
  it holds;
- the delay-based estimate of aiortc's receiver, which sees a queue build before it drops
  anything: the budget never exceeds it;
- a ceiling: what the room can show of the site (the richest profile among its sites), and a
  floor below which no picture is worth sending. It starts at `START_BPS` (or the ceiling when
  lower) and grows from there while the link stays clear.

Pure: fed one interval's figures at a time, returns bits per second.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FLOOR_BPS = 64_000
START_BPS = 300_000  # a first budget a district link can carry, as WebRTC senders start


@dataclass(frozen=True)
class UplinkReading:
    """What the MCU saw of a site's video over one interval."""

    expected: int  # RTP packets the sequence numbers say were sent
    received: int  # of them, how many arrived the first time (resent ones are not counted)
    bits: int  # video bits that arrived, retransmissions included
    seconds: float

    @property
    def loss(self) -> float | None:
        if self.expected <= 0:
            return None
        return min(1.0, max(0.0, 1.0 - self.received / self.expected))

    @property
    def bps(self) -> float | None:
        return self.bits / self.seconds if self.seconds > 0 else None


class UplinkCounter:
    """Counts a site's video packets as they arrive; `read` gives the interval since the last.

    Loss is judged before retransmission fills the holes: a congested link is congested even
    when NACKs recover what it dropped, and the recovery itself costs bits.
    """

    def __init__(self, now: float) -> None:
        self._highest: dict[int, int] = {}  # per SSRC: the highest sequence number
        self._expected = 0
        self._received = 0
        self._bits = 0
        self._last = (0, 0, 0, now)  # expected, received, bits, time at the last reading

    def add(self, ssrc: int, sequence_number: int, size: int, retransmission: bool) -> None:
        """One RTP packet of `size` bytes; retransmissions add bits only."""
        self._bits += 8 * size
        if retransmission:
            return
        highest = self._highest.get(ssrc)
        if highest is None:
            self._highest[ssrc] = sequence_number  # counting starts after the first packet
            return
        ahead = (sequence_number - highest) & 0xFFFF
        if 0 < ahead < 0x8000:  # newer; an older one fills a hole counted already
            self._highest[ssrc] = sequence_number
            self._expected += ahead
        self._received += 1

    def read(self, now: float) -> UplinkReading:
        before = self._last
        self._last = (self._expected, self._received, self._bits, now)
        return UplinkReading(self._expected - before[0], self._received - before[1],
                             self._bits - before[2], now - before[3])


class UplinkBudget:
    """The video bitrate one site is asked for. `update` once per control interval."""

    def __init__(
        self,
        ceiling_bps: int,
        floor_bps: int = FLOOR_BPS,
        *,
        start_bps: int = START_BPS,
        loss_high: float = 0.10,
        loss_low: float = 0.02,
        growth: float = 1.08,
        memory: int = 10,
    ) -> None:
        if ceiling_bps < floor_bps:
            raise ValueError(f"uplink ceiling {ceiling_bps} bit/s is below its floor {floor_bps}")
        self.ceiling = ceiling_bps
        self.floor = floor_bps
        self.loss_high = loss_high
        self.loss_low = loss_low
        self.growth = growth
        self._recent: collections.deque[float] = collections.deque(maxlen=memory)
        self.bps = max(floor_bps, min(ceiling_bps, start_bps))
        self._loss_based = float(self.bps)
        self.reason = "start"

    @property
    def link_loss(self) -> float:
        """The loss the link shows at any rate: the least of the recent intervals'."""
        return min(min(self._recent, default=0.0), self.loss_high)

    def update(self, reading: UplinkReading, delay_estimate_bps: float | None) -> int:
        """The budget after one interval's `reading` and the receiver's latest estimate."""
        loss = reading.loss
        arrived = reading.bps
        link_loss = self.link_loss  # judged on the intervals before this one
        if loss is not None:
            self._recent.append(loss)
        if loss is None:
            self.reason = "no video"  # nothing to judge by: keep the budget
        elif (excess := loss - link_loss) > self.loss_high:
            basis = self._loss_based if arrived is None else min(self._loss_based, arrived)
            self._loss_based = basis * (1.0 - 0.5 * excess)
            self.reason = f"loss {loss:.0%}"
        elif excess < self.loss_low:
            self._loss_based *= self.growth
            self.reason = "clear" if loss < self.loss_low else f"link's own loss {loss:.0%}"
        else:
            self.reason = f"holding at loss {loss:.0%}"
        self._loss_based = min(float(self.ceiling), max(float(self.floor), self._loss_based))

        budget = self._loss_based
        if delay_estimate_bps is not None and delay_estimate_bps < budget:
            budget = delay_estimate_bps
            self.reason = f"queue building (estimate {delay_estimate_bps / 1000:.0f} kbit/s)"
        self.bps = int(max(self.floor, budget))
        return self.bps
