"""The conference: who is present, where each site goes, and the two media clocks.

The room's roster is an immutable tuple replaced on the event loop whenever a site joins or leaves;
the video and audio clock threads read whichever tuple is current at their tick, so a join or a
leave re-flows the layout on the next tick without any lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Mapping

from aiortc import RTCIceServer

from .clock import Clock
from .compositor import BACKGROUND, Canvas, Placement, Planes
from .config import Profile, RoomConfig
from .exceptions import McuError
from .layout import Layout, LayoutLibrary, place, site_order
from .mixer import Mixer
from .site import Site
from .speaker import RoomSpeaker

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
STALE_AFTER = 3.0  # seconds a tile keeps a silent site's last frame before showing it empty


class UnknownSite(LookupError):
    """The site is not configured in this room."""


class Room:
    """One configured room and its running media."""

    def __init__(
        self,
        config: RoomConfig,
        profiles: Mapping[str, Profile],
        layouts: LayoutLibrary,
        ice_servers: list[RTCIceServer],
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.config = config
        self.profiles = profiles
        self.layouts = layouts
        self.ice_servers = ice_servers
        self.stale_after = stale_after
        self.layout_name = config.layout
        self.chair = config.chair
        self.pins: dict[int, str] = {}  # tile index → site, set by the operator
        self.floor: str | None = None  # the active speaker
        self.recent: tuple[str, ...] = ()  # most recent speakers first
        self.sites: dict[str, Site] = {}
        self.roster: tuple[Site, ...] = ()
        self._watchers: set[asyncio.Task[None]] = set()
        self._canvases: dict[tuple[int, int], Canvas] = {}
        self._mixer = Mixer()
        self._speaker = RoomSpeaker()  # owned by the audio clock thread
        self._heard: set[str] = set()  # sites the speaker tracker knows
        self._epoch = time.monotonic()
        self._next_frame_due: dict[Site, float] = {}
        self._previous: tuple[str, dict[str, int]] = ("", {})  # layout name, site → tile index

        # the clock runs at the fastest profile any of the room's sites may use
        fps = max(profiles[config.profile_of(s.id)].fps for s in config.sites)
        self.video_clock = Clock(f"video-{config.id}", 1 / fps, self._video_tick)
        self.audio_clock = Clock(f"audio-{config.id}", 0.020, self._audio_tick)

    @property
    def id(self) -> str:
        return self.config.id

    def start(self) -> None:
        self.video_clock.start()
        self.audio_clock.start()
        logger.info("room=%s started: layout=%s, %d sites configured", self.id,
                    self.layout_name, len(self.config.sites))

    async def join(self, site_id: str, offer_sdp: str) -> tuple[Site, str]:
        """Answer a site's offer. A site already present is replaced by the new session."""
        site_config = self.config.site(site_id)
        if site_config is None:
            raise UnknownSite(site_id)
        profile = self.profiles[self.config.profile_of(site_id)]
        site = Site(self.id, site_config, profile, self.ice_servers)
        try:
            answer = await site.answer(offer_sdp)
        except BaseException:
            await site.close()
            raise

        old = self.sites.get(site_id)
        self.sites[site_id] = site
        self._reflow()
        if old is not None:
            logger.info("room=%s site=%s dialled again: replacing session %s", self.id, site_id,
                        old.session_id)
            await old.close()
        logger.info("room=%s site=%s joined (profile %s, session %s); %d present", self.id,
                    site_id, profile.name, site.session_id, len(self.roster))

        watcher = asyncio.ensure_future(self._watch(site))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return site, answer

    async def hang_up(self, site_id: str, session_id: str) -> bool:
        """End a session; False when that session is not the site's current one."""
        site = self.sites.get(site_id)
        if site is None or site.session_id != session_id:
            return False
        await self._remove(site, "hung up")
        return True

    async def _watch(self, site: Site) -> None:
        # a peer connection that fails or closes ends the session like a hang-up
        await site.closed.wait()
        if self.sites.get(site.id) is site:
            await self._remove(site, "connection lost")

    async def _remove(self, site: Site, reason: str) -> None:
        if self.sites.get(site.id) is site:
            del self.sites[site.id]
            self._reflow()
            logger.info("room=%s site=%s left (%s); %d present", self.id, site.id, reason,
                        len(self.roster))
        await site.close()

    def _reflow(self) -> None:
        order = site_order([s.id for s in self.config.sites], self.chair, self.sites)
        self.roster = tuple(self.sites[site_id] for site_id in order)

    async def close(self) -> None:
        """Hang up every site and stop both clocks."""
        for watcher in list(self._watchers):
            watcher.cancel()
        for watcher in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        sites = list(self.sites.values())
        self.sites.clear()
        self.roster = ()
        await asyncio.gather(*(site.close() for site in sites), return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.video_clock.stop)
        await loop.run_in_executor(None, self.audio_clock.stop)
        logger.info("room=%s closed", self.id)

    # --- clock threads -------------------------------------------------------------------------

    # --- operator actions: applied at the next frame, then every encoder sends a keyframe ------

    def set_layout(self, name: str) -> None:
        if name not in self.layouts.names:
            raise McuError(f"room {self.id}: no layout {name!r}; expected one of: "
                           f"{', '.join(self.layouts.names)}")
        if name != self.layout_name:
            self.layout_name = name
            logger.info("room=%s layout changed to %s", self.id, name)
            self._refresh_pictures()

    def set_chair(self, site_id: str | None) -> None:
        if site_id is not None and self.config.site(site_id) is None:
            raise McuError(f"room {self.id}: no site {site_id!r} to make chair")
        if site_id != self.chair:
            self.chair = site_id
            logger.info("room=%s chair changed to %s", self.id, site_id or "nobody")
            self._reflow()
            self._refresh_pictures()

    def set_pins(self, pins: Mapping[int, str]) -> None:
        for index, site_id in pins.items():
            if not isinstance(index, int) or index < 0:
                raise McuError(f"room {self.id}: pin tile must be a tile index >= 0, not {index!r}")
            if self.config.site(site_id) is None:
                raise McuError(f"room {self.id}: no site {site_id!r} to pin")
        self.pins = dict(pins)
        logger.info("room=%s pins set: %s", self.id,
                    ", ".join(f"tile {i + 1}={s}" for i, s in sorted(pins.items())) or "none")
        self._refresh_pictures()

    def _refresh_pictures(self) -> None:
        for site in self.roster:
            site.request_keyframe("layout change")

    def current_layout(self, present: int) -> Layout:
        return self.layouts.choose(self.layout_name, present)

    def _video_tick(self, deadline: float) -> None:
        roster = self.roster
        if not roster:
            self._next_frame_due.clear()
            return
        layout = self.current_layout(len(roster))
        by_id = {site.id: site for site in roster}
        before_name, before = self._previous
        shown = place(
            layout,
            [site.id for site in roster],
            chair=self.chair,
            floor=self.floor,
            recent=self.recent,
            pins=self.pins,
            previous=before if before_name == layout.name else None,
        )
        self._previous = (layout.name, {s: i for i, s in enumerate(shown) if s is not None})
        now = time.monotonic()
        pts = int((deadline - self._epoch) * 90000)

        # one canvas per output size; each source frame's planes are extracted once per tick
        plane_cache: dict[int, Planes] = {}
        frames = {}
        for size in {(s.profile.width, s.profile.height) for s in roster}:
            canvas = self._canvases.get(size)
            if canvas is None:
                canvas = self._canvases[size] = Canvas(*size)
            placements = [
                self._placement(tile.rect(*size), by_id[site_id] if site_id else None, now)
                for tile, site_id in zip(layout.tiles, shown, strict=True)
            ]
            frame = canvas.compose(placements, plane_cache)
            frame.pts = pts
            frame.time_base = VIDEO_TIME_BASE
            frames[size] = frame

        # each site at its own profile's frame rate
        for site in roster:
            due = self._next_frame_due.get(site, deadline)
            if deadline + 1e-3 < due:
                continue
            self._next_frame_due[site] = max(due + 1 / site.profile.fps, deadline)
            site.video_out.offer(frames[(site.profile.width, site.profile.height)])
        for gone in [s for s in self._next_frame_due if s not in by_id.values()]:
            del self._next_frame_due[gone]

    def _placement(self, rect: tuple[int, int, int, int], site: Site | None,
                   now: float) -> Placement:
        if site is None:
            return Placement(rect, None, BACKGROUND)
        slot = site.video_slot
        speaking = site.id == self.floor
        if slot is None or now - slot.arrived > self.stale_after:
            return Placement(rect, None, name=site.name, highlight=speaking)
        return Placement(rect, slot.frame, name=site.name, highlight=speaking)

    def _audio_tick(self, deadline: float) -> None:
        roster = self.roster
        inputs = self._mixer.tick(roster)

        # speaker detection on the same frames; a site that left gives up the floor
        present = {site.id for site in roster}
        for gone in self._heard - present:
            self._speaker.remove(gone)
        self._heard = present
        change = self._speaker.update(
            deadline,
            {site.id: site.level_dbov for site in roster},
            {site.id: inputs[i] for i, site in enumerate(roster)},
        )
        self.recent = self._speaker.floor.recent()
        if change is not None:
            self.floor = change.site
            logger.info("room=%s site=%s has the floor (after %s)", self.id, change.site,
                        change.previous or "nobody")
        elif self.floor is not None and self.floor not in present:
            self.floor = self._speaker.holder
