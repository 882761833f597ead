"""The uplink budget: counting a site's video packets and the rate it is asked to send."""

from __future__ import annotations

import pytest

from mcu.uplink import UplinkBudget, UplinkCounter, UplinkReading

SSRC = 1234
RTX_SSRC = 5678


def test_loss_is_counted_before_retransmission_and_across_the_wrap() -> None:
    counter = UplinkCounter(now=0.0)
    sent = [(65530 + i) % 65536 for i in range(20)]  # wraps from 65535 to 0
    lost = {sent[5], sent[11], sent[12]}
    for sequence in sent:
        if sequence not in lost:
            counter.add(SSRC, sequence, 1000, retransmission=False)
    for sequence in sorted(lost):  # recovered by NACK: bits, not arrivals
        counter.add(RTX_SSRC, sequence, 1000, retransmission=True)
    reading = counter.read(now=2.0)
    # counting starts after the first packet: 19 expected, 3 of them missing
    assert (reading.expected, reading.received) == (19, 16)
    assert reading.loss == pytest.approx(3 / 19)
    assert reading.bps == pytest.approx((17 + 3) * 1000 * 8 / 2.0)
    # the next interval starts from here
    counter.add(SSRC, (sent[-1] + 2) % 65536, 500, retransmission=False)
    later = counter.read(now=3.0)
    assert (later.expected, later.received, later.bits) == (2, 1, 4000)


def test_a_late_packet_is_not_a_jump_and_a_new_source_starts_at_zero() -> None:
    counter = UplinkCounter(now=0.0)
    for sequence in (100, 101, 103, 102, 104):
        counter.add(SSRC, sequence, 10, retransmission=False)
    counter.add(999, 40000, 10, retransmission=False)  # a new SSRC: nothing expected yet
    counter.add(999, 40001, 10, retransmission=False)
    reading = counter.read(now=1.0)
    assert (reading.expected, reading.received) == (4 + 1, 4 + 1)
    assert reading.loss == 0.0


def reading(loss: float, kbps: float, packets: int = 1000) -> UplinkReading:
    received = round(packets * (1 - loss))
    return UplinkReading(packets, received, int(kbps * 1000), 1.0)


def test_congestion_drops_the_budget_to_what_arrives_and_a_clear_link_regrows() -> None:
    budget = UplinkBudget(400_000, start_bps=1_000_000)
    assert budget.bps == 400_000
    # a 384 kbit/s link: 600 sent, 300 arrive (50 % lost): budget = 300 * (1 - 0.25)
    assert budget.update(reading(0.5, 300), None) == 225_000
    assert budget.reason == "loss 50%"
    # 6 % more loss than the least seen lately (the 50 %: the link's own loss is taken as at
    # most 10 %, so 50 % is not the link's) : hold
    assert budget.update(reading(0.16, 200), None) == 225_000
    assert budget.reason == "holding at loss 16%"
    # clear: 8 % a second, never above the ceiling
    assert budget.update(reading(0.0, 200), None) == 243_000
    for _ in range(30):
        budget.update(reading(0.0, 380), None)
    assert budget.bps == 400_000


def test_a_link_that_always_loses_a_little_still_lets_the_budget_grow() -> None:
    budget = UplinkBudget(400_000)
    assert budget.bps == 300_000  # the start
    budget.update(reading(0.6, 150), None)  # congestion: 150 * (1 - 0.6 / 2)
    assert budget.bps == 105_000
    # then 5 % random loss, interval after interval: the link's own, not congestion
    for _ in range(3):
        budget.update(reading(0.05, 100), None)
    assert budget.reason == "link's own loss 5%"
    # (the first against the 60 %, taken as 10 %: under it, so growth too)
    assert budget.bps == int(105_000 * 1.08**3)
    # a burst over the link's own loss cuts by half the excess
    before = budget.bps
    assert budget.update(reading(0.45, 200), None) == int(before * (1 - 0.5 * 0.40))


def test_the_delay_estimate_caps_the_budget_and_the_floor_holds() -> None:
    budget = UplinkBudget(400_000, floor_bps=64_000)
    assert budget.update(reading(0.0, 300), 180_000) == 180_000
    assert budget.reason.startswith("queue building")
    for _ in range(20):
        budget.update(reading(0.9, 20), None)
    assert budget.bps == 64_000
    # no video this interval: keep what was there
    assert budget.update(UplinkReading(0, 0, 0, 1.0), None) == 64_000
    with pytest.raises(ValueError, match="below its floor"):
        UplinkBudget(10_000)
