"""Every Prometheus metric of the MCU, in base units, labelled by `room` and `site` only.

Per-site and per-room figures are built at scrape time by `McuCollector` from the rooms, their
sites and each site's latest `stats.SiteStats` (`site.stats`, refreshed once a second by the
room): nothing is counted per packet. Three histograms are observed as things happen: how long a
room's composite tick and mix tick take (from its clock threads) and how late the event loop
wakes up (from `watch_event_loop`).

Each server owns its registry (`make_registry`), never prometheus_client's global one, so several
servers can run in one process. The clock threads know only their room's id, so
`observe_video_tick()` and `observe_audio_tick()` hand the measurement to every live registry
that serves a room of that id (normally exactly one).

Counters restart from zero when a site dials again (a new session) or the process restarts;
Prometheus' `rate()` and `increase()` treat such drops as resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .encoder import VideoEncoderGroup
    from .room import Room
    from .stats import SiteStats

logger = logging.getLogger(__name__)

ROOM = ("room",)
ROOM_SITE = ("room", "site")

# a composite tick is due every 33-67 ms, a mix tick every 20 ms: resolve 1-100 ms finely
TICK_BUCKETS = (0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.040, 0.050,
                0.067, 0.100, 0.200)
# the loop should wake within a millisecond or two; anything near a second is an outage
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.010, 0.025, 0.050, 0.100, 0.250, 0.500, 1.0, 2.5)


@dataclass(frozen=True)
class Declared:
    """One metric family: its name as exposed, its type, its labels and what it measures."""

    name: str
    type: str  # "gauge", "counter" or "histogram"
    labels: tuple[str, ...]
    help: str


def _site(name: str, kind: str, text: str) -> Declared:
    return Declared(name, kind, ROOM_SITE, text)


def _room(name: str, kind: str, text: str) -> Declared:
    return Declared(name, kind, ROOM, text)


SITE_METRICS = (
    _site("mcu_site_receive_bits_per_second", "gauge",
          "Bits per second received from the site over the last stats period."),
    _site("mcu_site_send_bits_per_second", "gauge",
          "Bits per second sent to the site over the last stats period."),
    _site("mcu_site_received_bytes_total", "counter",
          "Bytes received from the site on its transport during this session."),
    _site("mcu_site_sent_bytes_total", "counter",
          "Bytes sent to the site on its transport during this session."),
    _site("mcu_site_received_frames_total", "counter",
          "Video frames decoded from the site during this session."),
    _site("mcu_site_sent_frames_total", "counter",
          "Encoded pictures sent to the site during this session."),
    _site("mcu_site_packets_lost_total", "counter",
          "RTP packets the site sent that never arrived (RFC 3550 cumulative loss)."),
    _site("mcu_site_jitter_seconds", "gauge",
          "Interarrival jitter of the site's video (of its audio when it sends no video)."),
    _site("mcu_site_round_trip_seconds", "gauge",
          "Round-trip time to the site, from its RTCP receiver reports."),
    _site("mcu_site_frames_per_second_in", "gauge",
          "Video frames per second decoded from the site."),
    _site("mcu_site_frames_per_second_out", "gauge",
          "Encoded pictures per second sent to the site."),
    _site("mcu_site_keyframe_requests_total", "counter",
          "Picture loss indications (PLI/FIR) the site sent about its composite."),
    _site("mcu_site_uplink_budget_bits_per_second", "gauge",
          "Video bitrate the MCU last asked the site to send (REMB)."),
    _site("mcu_site_profile_changes_total", "counter",
          "Times the adaptive profile moved the site to another profile."),
    _site("mcu_site_speaking", "gauge",
          "1 when the site holds the floor or is louder than -50 dBov, else 0."),
    _site("mcu_site_connected", "gauge",
          "1 when the site's peer connection is connected, else 0."),
)

ROOM_METRICS = (
    _room("mcu_room_sites_connected", "gauge", "Sites of the room whose connection is up."),
    _room("mcu_room_speaker_changes_total", "counter", "Times the floor passed to another site."),
    _room("mcu_room_video_late_ticks_total", "counter",
          "Composite ticks skipped because the video clock fell behind."),
    _room("mcu_room_audio_late_ticks_total", "counter",
          "Mix ticks skipped because the audio clock fell behind."),
    _room("mcu_room_encode_seconds_total", "counter",
          "Seconds the room's video encoders spent encoding."),
    _room("mcu_room_encoders", "gauge", "Video encoder groups running for the room."),
    _room("mcu_room_keyframes_total", "counter", "Keyframes the room's video encoders produced."),
)

HISTOGRAMS = (
    _room("mcu_room_composite_tick_seconds", "histogram",
          "Time one composite tick of the video clock took."),
    _room("mcu_room_mix_tick_seconds", "histogram",
          "Time one 20 ms mix tick of the audio clock took."),
    Declared("mcu_event_loop_lag_seconds", "histogram", (),
             "How much later than asked the event loop woke a sleeping task."),
)

DECLARED = SITE_METRICS + ROOM_METRICS + HISTOGRAMS


def exposed_names() -> frozenset[str]:
    """Every sample name a scrape can hold, suffixes included (for dashboards and tests)."""
    names: set[str] = set()
    for metric in DECLARED:
        if metric.type == "histogram":
            names |= {metric.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(metric.name)
    return frozenset(names)


# --- scrape-time figures ---------------------------------------------------------------------

@dataclass
class _EncoderTotals:
    """A room's encoder work summed over its groups, including groups since closed.

    A group is closed after it has had no members (and so no frames) for a few seconds, so the
    figures it had at the last scrape are its final ones; they are kept as `retired_*`.
    """

    last: dict[VideoEncoderGroup, tuple[float, int]] = field(default_factory=dict)
    retired_seconds: float = 0.0
    retired_keyframes: int = 0

    def update(self, groups: Iterable[VideoEncoderGroup]) -> tuple[float, int]:
        now = {group: (group.encode_seconds, group.keyframes) for group in groups}
        for group in self.last.keys() - now.keys():
            seconds, keyframes = self.last[group]
            self.retired_seconds += seconds
            self.retired_keyframes += keyframes
        self.last = now
        return (self.retired_seconds + sum(s for s, _ in now.values()),
                self.retired_keyframes + sum(k for _, k in now.values()))


class _Families:
    """The families of one scrape, keyed by exposed name."""

    def __init__(self, declared: Iterable[Declared]) -> None:
        self.by_name: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for metric in declared:
            make = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
            self.by_name[metric.name] = make(metric.name, metric.help, labels=metric.labels)

    def add(self, name: str, labels: list[str], value: float) -> None:
        self.by_name[name].add_metric(labels, value)


class McuCollector(Collector):
    """The MCU's metrics for the rooms `rooms_source()` returns at each scrape."""

    def __init__(self, rooms_source: Callable[[], Iterable[Room]]) -> None:
        self.rooms_source = rooms_source
        self.composite_tick = _histogram(HISTOGRAMS[0], TICK_BUCKETS)
        self.mix_tick = _histogram(HISTOGRAMS[1], TICK_BUCKETS)
        self.loop_lag = _histogram(HISTOGRAMS[2], LAG_BUCKETS)
        self._lock = threading.Lock()  # scrapes may come from more than one thread
        self._encoders: weakref.WeakKeyDictionary[Room, _EncoderTotals] = (
            weakref.WeakKeyDictionary()
        )
        self._room_ids: frozenset[str] = frozenset()
        self._refresh_rooms(list(rooms_source()))

    def observe_tick(self, histogram: Histogram, room_id: str, seconds: float) -> None:
        """Record one tick of a room this collector serves; other rooms are ignored.

        The set of rooms served is refreshed at each scrape, so a room the operator opens is
        recorded from the first scrape after it opened.
        """
        if room_id in self._room_ids:
            histogram.labels(room_id).observe(seconds)

    def _refresh_rooms(self, rooms: list[Room]) -> None:
        # rooms come and go through the operator API: new ones start with empty histograms,
        # and the histograms of closed ones leave the exposition
        ids = frozenset(room.id for room in rooms)
        for gone in self._room_ids - ids:
            for histogram in (self.composite_tick, self.mix_tick):
                with contextlib.suppress(KeyError):
                    histogram.remove(gone)
        for room_id in ids - self._room_ids:
            self.composite_tick.labels(room_id)
            self.mix_tick.labels(room_id)
        self._room_ids = ids

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rooms = list(self.rooms_source())
            self._refresh_rooms(rooms)
            sites = _Families(SITE_METRICS)
            per_room = _Families(ROOM_METRICS)
            for room in rooms:
                self._collect_room(room, sites, per_room)
        yield from sites.by_name.values()
        yield from per_room.by_name.values()
        for histogram in (self.composite_tick, self.mix_tick, self.loop_lag):
            yield from histogram.collect()

    def _collect_room(self, room: Room, sites: _Families, per_room: _Families) -> None:
        connected = 0
        for site in room.roster:
            labels = [room.id, site.id]
            up = site.pc.connectionState == "connected"
            connected += up
            sites.add("mcu_site_connected", labels, float(up))
            sites.add("mcu_site_keyframe_requests_total", labels,
                      getattr(site, "keyframe_requests", 0))
            sites.add("mcu_site_profile_changes_total", labels, len(site.adaptive.history))
            budget = getattr(site, "remb_sent_bps", None)
            if budget is not None:
                sites.add("mcu_site_uplink_budget_bits_per_second", labels, budget)
            stats: SiteStats | None = getattr(site, "stats", None)
            if stats is not None:
                _add_snapshot(sites, labels, stats)

        # the video thread adds and closes groups: copy the values in one step
        groups = tuple(room.video.groups.values())
        encode_seconds, keyframes = self._encoders.setdefault(room, _EncoderTotals()).update(
            groups
        )
        labels = [room.id]
        per_room.add("mcu_room_sites_connected", labels, connected)
        per_room.add("mcu_room_speaker_changes_total", labels,
                     getattr(room, "speaker_changes", 0))
        per_room.add("mcu_room_video_late_ticks_total", labels, room.video_clock.late)
        per_room.add("mcu_room_audio_late_ticks_total", labels, room.audio_clock.late)
        per_room.add("mcu_room_encode_seconds_total", labels, encode_seconds)
        per_room.add("mcu_room_encoders", labels, len(groups))
        per_room.add("mcu_room_keyframes_total", labels, keyframes)


def _add_snapshot(sites: _Families, labels: list[str], stats: SiteStats) -> None:
    sites.add("mcu_site_receive_bits_per_second", labels, stats.kbps_in * 1000)
    sites.add("mcu_site_send_bits_per_second", labels, stats.kbps_out * 1000)
    sites.add("mcu_site_received_bytes_total", labels, stats.bytes_in)
    sites.add("mcu_site_sent_bytes_total", labels, stats.bytes_out)
    sites.add("mcu_site_received_frames_total", labels, stats.frames_in)
    sites.add("mcu_site_sent_frames_total", labels, stats.frames_out)
    sites.add("mcu_site_packets_lost_total", labels, stats.packets_lost)
    if stats.jitter_seconds is not None:
        sites.add("mcu_site_jitter_seconds", labels, stats.jitter_seconds)
    if stats.rtt_seconds is not None:
        sites.add("mcu_site_round_trip_seconds", labels, stats.rtt_seconds)
    sites.add("mcu_site_frames_per_second_in", labels, stats.fps_in)
    sites.add("mcu_site_frames_per_second_out", labels, stats.fps_out)
    sites.add("mcu_site_speaking", labels, float(stats.speaking))


def _histogram(declared: Declared, buckets: tuple[float, ...]) -> Histogram:
    # registry=None: exposed through the owning collector, never the global registry
    return Histogram(declared.name, declared.help, declared.labels, registry=None,
                     buckets=buckets)


# --- registries and the process-wide entry points ---------------------------------------------

_live: weakref.WeakSet[McuCollector] = weakref.WeakSet()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, McuCollector] = (
    weakref.WeakKeyDictionary()
)
_live_lock = threading.Lock()

REGISTRY = web.AppKey("mcu_metrics_registry", CollectorRegistry)


def make_registry(rooms_source: Callable[[], Iterable[Room]]) -> CollectorRegistry:
    """A registry holding the MCU's metrics over `rooms_source()`, e.g. `server.rooms.values`."""
    registry = CollectorRegistry(auto_describe=False)
    collector = McuCollector(rooms_source)
    registry.register(collector)
    with _live_lock:
        _live.add(collector)
        _by_registry[registry] = collector
    return registry


def collector_of(registry: CollectorRegistry) -> McuCollector:
    with _live_lock:
        collector = _by_registry.get(registry)
    if collector is None:
        raise ValueError("registry was not made by mcu.metrics.make_registry")
    return collector


def _collectors() -> list[McuCollector]:
    with _live_lock:
        return list(_live)


def observe_video_tick(room_id: str, seconds: float) -> None:
    """Record how long one composite tick of room `room_id` took (any thread)."""
    for collector in _collectors():
        collector.observe_tick(collector.composite_tick, room_id, seconds)


def observe_audio_tick(room_id: str, seconds: float) -> None:
    """Record how long one mix tick of room `room_id` took (any thread)."""
    for collector in _collectors():
        collector.observe_tick(collector.mix_tick, room_id, seconds)


async def watch_event_loop(registry: CollectorRegistry, interval: float = 0.5) -> None:
    """Sleep `interval` seconds again and again, recording how late each wake-up is.

    Runs until cancelled; the server that owns `registry` starts it and cancels it on close.
    """
    lag = collector_of(registry).loop_lag
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        lag.observe(max(0.0, loop.time() - asked))


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: the registry of the request's application, in Prometheus text format."""
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
