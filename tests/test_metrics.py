"""Prometheus metrics: scraped over HTTP from a real server with two sites, plus the pieces that
need no network (encoder totals, tick routing, loop lag) and the Grafana dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mcu import metrics
from mcu.dial import Call
from mcu.sources import ColourTrack, ToneTrack

from .conftest import room_config, site_token, url

DASHBOARD = Path(__file__).resolve().parents[1] / "conf" / "grafana-dashboard.json"
Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[Key, float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def all_samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def value(found: dict[Key, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


OPERATOR = "metrics-test-operator"


async def scrape(address: str, token: str | None = OPERATOR) -> dict[Key, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(address, headers=headers) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return samples(await reply.text())


@pytest.mark.timeout(60)
async def test_scraped_metrics_of_two_real_sites(mcu_server: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("MCU_OPERATOR_TOKEN", OPERATOR)
    server = await mcu_server(room_config(["a", "b"], fps=15))
    calls = {
        "a": Call(url(server, "test", "a"), site_token("a"),
                  video=ColourTrack((82, 90, 240), 320, 240, fps=15),
                  audio=ToneTrack(500.0, amplitude=0.2)),
        "b": Call(url(server, "test", "b"), site_token("b"),
                  video=ColourTrack((145, 54, 34), 320, 240, fps=15),
                  audio=ToneTrack(500.0, amplitude=0.0)),
    }
    await asyncio.gather(*(call.connect() for call in calls.values()))
    address = f"http://127.0.0.1:{server.port}/metrics"
    try:
        # the server's own route, behind the operator token like the API
        async with aiohttp.ClientSession() as http, http.get(address) as reply:
            assert reply.status == 401
        await asyncio.gather(*(call.wait_video(10, timeout=15) for call in calls.values()))
        await asyncio.sleep(2.5)  # the room refreshes each site's figures every second
        first = await scrape(address)
        await asyncio.sleep(2.0)
        second = await scrape(address)
        sent = {s: (await call.stats()).bytes_out for s, call in calls.items()}
    finally:
        await asyncio.gather(*(call.hang_up() for call in calls.values()))

    # every declared metric is there, labelled by room and site only (and le for buckets)
    names = {name for name, _ in second}
    for declared in metrics.DECLARED:
        if declared.type == "histogram":
            wanted = {declared.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            wanted = {declared.name}
        assert wanted <= names, f"{declared.name} missing from the scrape"
    for name, labels in second:
        keys = {key for key, _ in labels}
        allowed = {"room", "site", "le"} if name.endswith("_bucket") else {"room", "site"}
        assert keys <= allowed, f"{name} has labels {keys}"
        assert not name.startswith("mcu_site_") or keys == {"room", "site"}, name
        assert not name.startswith("mcu_room_") or "site" not in keys, name

    # values move while the sites send
    for s in calls:
        for counter in ("mcu_site_received_bytes_total", "mcu_site_sent_bytes_total",
                        "mcu_site_received_frames_total", "mcu_site_sent_frames_total"):
            before = value(first, counter, room="test", site=s)
            after = value(second, counter, room="test", site=s)
            assert after > before > 0, f"{counter} of {s}: {before} -> {after}"
        # what the MCU counted received is (a little behind) what the site counted sent
        received = value(second, "mcu_site_received_bytes_total", room="test", site=s)
        assert 0.6 * sent[s] < received <= 1.02 * sent[s], (received, sent[s])
        assert value(second, "mcu_site_frames_per_second_in", room="test", site=s) == (
            pytest.approx(15, abs=3))
        assert value(second, "mcu_site_receive_bits_per_second", room="test", site=s) > 10_000
        assert value(second, "mcu_site_connected", room="test", site=s) == 1
        assert value(second, "mcu_site_packets_lost_total", room="test", site=s) == 0
        assert value(second, "mcu_site_round_trip_seconds", room="test", site=s) >= 0
        # told its upload budget: a clean link keeps it at or above the start
        assert value(second, "mcu_site_uplink_budget_bits_per_second", room="test",
                     site=s) >= 64_000
    assert value(second, "mcu_site_speaking", room="test", site="a") == 1
    assert value(second, "mcu_site_speaking", room="test", site="b") == 0

    # both sites see the same canvas at the same profile and codec: one shared encoder
    assert value(second, "mcu_room_sites_connected", room="test") == 2
    assert value(second, "mcu_room_encoders", room="test") == 1
    assert value(second, "mcu_room_keyframes_total", room="test") >= 1
    assert (value(second, "mcu_room_encode_seconds_total", room="test")
            > value(first, "mcu_room_encode_seconds_total", room="test"))


class FakeGroup:
    """The counters of an encoder group, and nothing else."""

    def __init__(self, encode_seconds: float, keyframes: int) -> None:
        self.encode_seconds = encode_seconds
        self.keyframes = keyframes


class FakeRoom:
    """What the collector reads of a room without sites."""

    def __init__(self, room_id: str, groups: dict[str, FakeGroup]) -> None:
        self.id = room_id
        self.roster = ()
        self.video = SimpleNamespace(groups=groups)
        self.video_clock = SimpleNamespace(late=4)
        self.audio_clock = SimpleNamespace(late=0)
        self.speaker_changes = 2


def fake_room(room_id: str, groups: dict[str, FakeGroup]) -> Any:
    """A FakeRoom where the collector expects a Room."""
    return FakeRoom(room_id, groups)


def test_encoder_totals_keep_the_work_of_closed_groups() -> None:
    one = FakeGroup(encode_seconds=1.5, keyframes=3)
    two = FakeGroup(encode_seconds=0.25, keyframes=1)
    room = fake_room("r", {"one": one, "two": two})
    registry = metrics.make_registry(lambda: [room])

    def scraped() -> dict[Key, float]:
        return samples(generate_latest(registry).decode())

    found = scraped()
    assert value(found, "mcu_room_encode_seconds_total", room="r") == 1.75
    assert value(found, "mcu_room_keyframes_total", room="r") == 4
    assert value(found, "mcu_room_encoders", room="r") == 2
    assert value(found, "mcu_room_video_late_ticks_total", room="r") == 4
    assert value(found, "mcu_room_speaker_changes_total", room="r") == 2

    # group two is closed; group one keeps working: the totals never step back
    del room.video.groups["two"]
    one.encode_seconds, one.keyframes = 2.0, 5
    found = scraped()
    assert value(found, "mcu_room_encode_seconds_total", room="r") == 2.25
    assert value(found, "mcu_room_keyframes_total", room="r") == 6
    assert value(found, "mcu_room_encoders", room="r") == 1


def test_ticks_reach_only_the_registry_serving_the_room() -> None:
    rooms: list[Any] = [fake_room("east", {})]
    east = metrics.make_registry(lambda: rooms)
    west = metrics.make_registry(lambda: [fake_room("west", {})])

    metrics.observe_video_tick("east", 0.003)
    metrics.observe_video_tick("east", 0.045)
    metrics.observe_audio_tick("west", 0.012)
    metrics.observe_audio_tick("nowhere", 0.5)
    found_east = samples(generate_latest(east).decode())
    found_west = samples(generate_latest(west).decode())

    count = "mcu_room_composite_tick_seconds_count"
    assert value(found_east, count, room="east") == 2
    assert value(found_east, "mcu_room_composite_tick_seconds_sum", room="east") == (
        pytest.approx(0.048))
    # 3 ms lies in the 4 ms bucket, 45 ms only from the 50 ms bucket on
    bucket = "mcu_room_composite_tick_seconds_bucket"
    assert value(found_east, bucket, room="east", le="0.004") == 1
    assert value(found_east, bucket, room="east", le="0.04") == 1
    assert value(found_east, bucket, room="east", le="0.05") == 2
    assert value(found_east, "mcu_room_mix_tick_seconds_count", room="east") == 0
    assert value(found_west, "mcu_room_mix_tick_seconds_count", room="west") == 1
    assert (count, (("room", "east"),)) not in found_west
    every_room = {dict(labels).get("room") for _, labels in [*found_east, *found_west]}
    assert "nowhere" not in every_room

    # a closed room leaves the exposition
    rooms.clear()
    assert (count, (("room", "east"),)) not in samples(generate_latest(east).decode())


async def test_event_loop_lag_is_measured() -> None:
    registry = metrics.make_registry(lambda: [])
    watcher = asyncio.ensure_future(metrics.watch_event_loop(registry, interval=0.05))
    try:
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # noqa: ASYNC251 -- hold the loop: the watcher wakes ~0.25 s late
        await asyncio.sleep(0.12)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    found = samples(generate_latest(registry).decode())
    count = value(found, "mcu_event_loop_lag_seconds_count")
    assert count >= 3
    # one wake-up came later than 0.1 s, and the rest within it
    late = count - value(found, "mcu_event_loop_lag_seconds_bucket", le="0.1")
    assert late == 1
    assert value(found, "mcu_event_loop_lag_seconds_sum") >= 0.2


def test_a_registry_not_made_here_is_refused() -> None:
    with pytest.raises(ValueError, match="make_registry"):
        metrics.collector_of(CollectorRegistry())


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, object]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):  # type: ignore[attr-defined]
                yield target["expr"]
            yield from walk(panel.get("panels", []))  # type: ignore[arg-type]

    return list(walk(json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]))


def test_dashboard_queries_only_metrics_the_mcu_exposes() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    assert [v["name"] for v in board["templating"]["list"]] == ["room"]
    exprs = dashboard_exprs()
    assert len(exprs) >= 14
    used = {name for expr in exprs for name in re.findall(r"\bmcu_[a-z0-9_]+", expr)}
    unknown = used - metrics.exposed_names()
    assert not unknown, f"dashboard queries unknown metrics: {sorted(unknown)}"
    # each panel the brief asks for has a query: the whole family list is charted
    charted = {name.removesuffix("_bucket") for name in used}
    for family in ("mcu_room_sites_connected", "mcu_site_receive_bits_per_second",
                   "mcu_site_send_bits_per_second", "mcu_site_packets_lost_total",
                   "mcu_site_jitter_seconds", "mcu_site_round_trip_seconds",
                   "mcu_site_frames_per_second_in", "mcu_site_frames_per_second_out",
                   "mcu_room_composite_tick_seconds", "mcu_room_mix_tick_seconds",
                   "mcu_room_video_late_ticks_total", "mcu_room_encoders",
                   "mcu_room_keyframes_total", "mcu_room_speaker_changes_total",
                   "mcu_event_loop_lag_seconds"):
        assert family in charted, family
    # every site or room query is filtered by the room variable
    for expr in exprs:
        if "mcu_event_loop" not in expr:
            assert 'room=~"$room"' in expr, expr
