"""The conference: who is present, the two media clocks, rate control and operator actions.

The room's roster is an immutable tuple replaced on the event loop whenever a site joins or leaves;
the video and audio clock threads read whichever tuple is current at their tick, so a join or a
leave re-flows the layout on the next tick without any lock. The video side (placement, canvases,
encoder groups) is `video.VideoMixer`; the audio side is `mixer.Mixer` plus speaker detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiortc import RTCIceServer

from . import metrics
from .bitrate import AdaptiveProfile, ladder
from .clock import Clock
from .config import Profile, RoomConfig
from .exceptions import McuError
from .layout import Layout, LayoutLibrary, site_order
from .mixer import Mixer
from .site import Site
from .speaker import RoomSpeaker
from .stats import snapshot
from .tasks import stop_tasks
from .uplink import FLOOR_BPS, UplinkBudget
from .viewer import Viewer
from .video import Stage, VideoMixer

logger = logging.getLogger(__name__)

STALE_AFTER = 3.0  # seconds a tile keeps a silent site's last frame before showing its card
HIDDEN_REMB_BPS = 150_000  # what a site not shown anywhere is asked to send
CONTROL_PERIOD = 1.0  # seconds between rate-control rounds
LINK_MEMORY = 600.0  # seconds a site's last profile and uplink budget are kept for its return


@dataclass(frozen=True)
class RememberedLink:
    """Where a site's rate control stood when its session ended: a district that drops off a
    poor link and dials again starts there, not at a profile its link just failed to carry."""

    profile: str
    uplink_bps: int
    at: float  # monotonic seconds


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
        self.previous_floor: str | None = None
        self.recent: tuple[str, ...] = ()  # most recent speakers first
        self.sites: dict[str, Site] = {}
        self.roster: tuple[Site, ...] = ()
        self.viewers: dict[str, Viewer] = {}
        self.audience: tuple[Viewer, ...] = ()  # the viewers, for the clock threads
        self.visible: frozenset[str] = frozenset()
        self.muted_audio: frozenset[str] = frozenset()  # by the operator, by site id
        self.muted_video: frozenset[str] = frozenset()
        self.speaker_changes = 0
        self.blocked: dict[str, float] = {}  # site → monotonic time until it may dial again
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.video = VideoMixer(config.id, layouts, self._visible_changed)
        self._mixer = Mixer()
        self._speaker = RoomSpeaker()  # owned by the audio clock thread
        self._heard: set[str] = set()  # sites the speaker tracker knows
        self._links: dict[str, RememberedLink] = {}  # rate control of sites that left
        self._epoch = time.monotonic()

        # the clock runs at the fastest profile any of the room's sites may use
        fps = max(profiles[config.profile_of(s.id)].fps for s in config.sites)
        # no site need send more video than the richest profile among them carries
        self.uplink_ceiling_bps = 1000 * max(
            [profiles[config.profile].video_kbps]
            + [profiles[config.profile_of(s.id)].video_kbps for s in config.sites])
        self.video_clock = Clock(f"video-{config.id}", 1 / fps, self._video_tick)
        self.audio_clock = Clock(f"audio-{config.id}", 0.020, self._audio_tick)

    @property
    def id(self) -> str:
        return self.config.id

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.video_clock.start()
        self.audio_clock.start()
        self._own(self._control())
        logger.info("room=%s started: layout=%s, %d sites configured", self.id,
                    self.layout_name, len(self.config.sites))

    def _own(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sites joining and leaving ------------------------------------------------------------

    async def join(self, site_id: str, offer_sdp: str) -> tuple[Site, str]:
        """Answer a site's offer. A site already present is replaced by the new session."""
        site_config = self.config.site(site_id)
        if site_config is None:
            raise UnknownSite(site_id)
        own = self.profiles[self.config.profile_of(site_id)]
        steps = ladder(list(self.profiles.values()), own)
        present = self.sites.get(site_id)
        if present is not None:  # dialling again over a session not yet seen to fail
            self._remember(present)
        start, uplink = own, UplinkBudget(max(self.uplink_ceiling_bps, FLOOR_BPS))
        remembered = self._links.get(site_id)
        if remembered is not None and time.monotonic() - remembered.at < LINK_MEMORY:
            start = next((p for p in steps if p.name == remembered.profile), own)
            uplink = UplinkBudget(max(self.uplink_ceiling_bps, FLOOR_BPS),
                                  start_bps=remembered.uplink_bps)
            logger.info("room=%s site=%s starts at profile %s, uplink %d kbit/s, where its last "
                        "session ended %.0f s ago", self.id, site_id, start.name,
                        uplink.bps // 1000, time.monotonic() - remembered.at)
        adaptive = AdaptiveProfile(steps, start)
        site = Site(self.id, site_config, adaptive, self.ice_servers, uplink)
        site.on_picture_loss = self._picture_lost
        site.video_out.on_overflow = lambda: self._picture_lost(site, "sender backlog")
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
        logger.info("room=%s site=%s joined (profile %s, codec %s, session %s); %d present",
                    self.id, site_id, start.name, site.codec, site.session_id, len(self.roster))
        self._own(self._watch(site))
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
            await self._remove(site, "hung up" if site.ended_by_peer else "connection lost")

    def _remember(self, site: Site) -> None:
        self._links[site.id] = RememberedLink(site.profile.name, site.uplink.bps,
                                              time.monotonic())

    async def _remove(self, site: Site, reason: str) -> None:
        self._remember(site)
        if self.sites.get(site.id) is site:
            del self.sites[site.id]
            self._reflow()
            logger.info("room=%s site=%s left (%s); %d present", self.id, site.id, reason,
                        len(self.roster))
        await site.close()

    async def watch(self, offer_sdp: str) -> tuple[Viewer, str]:
        """Answer a receive-only viewer's offer (the console's live preview)."""
        viewer = Viewer(self.id, self.profiles[self.config.profile], self.ice_servers)
        viewer.on_picture_loss = self._picture_lost
        try:
            answer = await viewer.answer(offer_sdp)
        except BaseException:
            await viewer.close()
            raise
        self.viewers[viewer.id] = viewer
        self.audience = tuple(self.viewers.values())
        logger.info("room=%s viewer %s watching (%d viewers)", self.id, viewer.id,
                    len(self.viewers))
        self._own(self._watch_viewer(viewer))
        return viewer, answer

    async def stop_watching(self, viewer_id: str) -> bool:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        self.audience = tuple(self.viewers.values())
        await viewer.close()
        logger.info("room=%s viewer %s left", self.id, viewer_id)
        return True

    async def _watch_viewer(self, viewer: Viewer) -> None:
        await viewer.closed.wait()
        await self.stop_watching(viewer.id)

    def _reflow(self) -> None:
        order = site_order([s.id for s in self.config.sites], self.chair, self.sites)
        self.roster = tuple(self.sites[site_id] for site_id in order)

    async def close(self) -> None:
        """Hang up every site, stop both clocks and every encoder."""
        await stop_tasks(self._tasks)
        sites = list(self.sites.values())
        viewers = list(self.viewers.values())
        self.sites.clear()
        self.viewers.clear()
        self.roster = ()
        self.audience = ()
        peers: list[Site | Viewer] = [*sites, *viewers]
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.video_clock.stop)
        await loop.run_in_executor(None, self.audio_clock.stop)
        await loop.run_in_executor(None, self.video.close)
        logger.info("room=%s closed", self.id)

    # --- feedback and rate control (event loop) -------------------------------------------------

    def _picture_lost(self, site: Site | Viewer, reason: str) -> None:
        group = self.video.group_of(site)
        if group is not None:
            group.request_keyframe(site.id, reason)

    def _visible_changed(self, visible: frozenset[str]) -> None:
        # called from the video thread: the sites shown anywhere changed
        self.visible = visible
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._apply_visibility)

    def _apply_visibility(self) -> None:
        # decode only the video of sites someone sees; resume with a keyframe request
        for site in self.roster:
            site.request_video(site.id in self.visible, "on screen" if site.id in self.visible
                               else "not on screen")

    async def _control(self) -> None:
        while True:
            await asyncio.sleep(CONTROL_PERIOD)
            now = time.monotonic()
            for site in self.roster:
                site.stats = await snapshot(site, site.stats, self.floor)
                site.watch_decoding(now)
                site.tune_receiving()
                sent = site.stats.kbps_out * 1000 if site.stats is not None else None
                change = site.adaptive.update(now, site.remb_bps, site.loss_fraction, sent)
                if change is not None:
                    logger.info("room=%s site=%s profile %s -> %s (%s)", self.id, site.id,
                                change.before, change.after, change.reason)
                await site.steer_uplink(now, None if site.receiving_video else HIDDEN_REMB_BPS)

    # --- operator actions: applied at the next frame, then every encoder sends a keyframe ------

    def set_layout(self, name: str) -> None:
        if name not in self.layouts.names:
            raise McuError(f"room {self.id}: no layout {name!r}; expected one of: "
                           f"{', '.join(self.layouts.names)}")
        if name != self.layout_name:
            self.layout_name = name
            logger.info("room=%s layout changed to %s", self.id, name)
            self.video.force_keyframes("layout change")

    def set_chair(self, site_id: str | None) -> None:
        if site_id is not None and self.config.site(site_id) is None:
            raise McuError(f"room {self.id}: no site {site_id!r} to make chair")
        if site_id != self.chair:
            self.chair = site_id
            logger.info("room=%s chair changed to %s", self.id, site_id or "nobody")
            self._reflow()
            self.video.force_keyframes("chair change")

    def set_pins(self, pins: Mapping[int, str]) -> None:
        for index, site_id in pins.items():
            if not isinstance(index, int) or index < 0:
                raise McuError(f"room {self.id}: pin tile must be a tile index >= 0, not {index!r}")
            if self.config.site(site_id) is None:
                raise McuError(f"room {self.id}: no site {site_id!r} to pin")
        self.pins = dict(pins)
        logger.info("room=%s pins set: %s", self.id,
                    ", ".join(f"tile {i + 1}={s}" for i, s in sorted(pins.items())) or "none")
        self.video.force_keyframes("pins change")

    def mute(self, site_id: str, audio: bool | None = None, video: bool | None = None) -> None:
        """Mute or unmute a site's audio and/or video at the MCU (kept across reconnects)."""
        if self.config.site(site_id) is None:
            raise McuError(f"room {self.id}: no site {site_id!r} to mute")
        if audio is not None:
            self.muted_audio = (self.muted_audio | {site_id} if audio
                                else self.muted_audio - {site_id})
        if video is not None:
            self.muted_video = (self.muted_video | {site_id} if video
                                else self.muted_video - {site_id})
        logger.info("room=%s site=%s audio %s, video %s", self.id, site_id,
                    "muted" if site_id in self.muted_audio else "on",
                    "muted" if site_id in self.muted_video else "on")

    async def disconnect(self, site_id: str, reason: str = "disconnected by the operator",
                         block_seconds: float = 0.0) -> bool:
        """Hang up a site, and refuse its dial-ins for `block_seconds` (its page would
        otherwise reconnect at once); False when it is not present."""
        if block_seconds > 0:
            self.blocked[site_id] = time.monotonic() + block_seconds
        site = self.sites.get(site_id)
        if site is None:
            return False
        await self._remove(site, reason)
        return True

    def blocked_for(self, site_id: str) -> float:
        """Seconds the site must still wait before dialling in again (0: it may)."""
        until = self.blocked.get(site_id)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self.blocked[site_id]
            return 0.0
        return left

    def current_layout(self, present: int) -> Layout:
        return self.layouts.choose(self.layout_name, present)

    # --- clock threads -------------------------------------------------------------------------

    def _video_tick(self, deadline: float) -> None:
        started = time.monotonic()
        stage = Stage(
            roster=self.roster,
            layout_name=self.layout_name,
            chair=self.chair,
            pins=dict(self.pins),
            floor=self.floor,
            previous_floor=self.previous_floor,
            recent=self.recent,
            self_view=self.config.self_view,
            stale_after=self.stale_after,
            muted_video=self.muted_video,
            audience=self.audience,
        )
        self.video.tick(deadline, stage)
        metrics.observe_video_tick(self.id, time.monotonic() - started)

    def _audio_tick(self, deadline: float) -> None:
        started = time.monotonic()
        roster = self.roster
        pts = round((deadline - self._epoch) / 0.020) * 960  # the room's audio clock, in samples
        inputs = self._mixer.tick(roster, deadline, pts, self.muted_audio, self.audience)

        # speaker detection on the same frames; a site that left gives up the floor
        present = {site.id for site in roster}
        for gone in self._heard - present:
            self._speaker.remove(gone)
        self._heard = present
        # a site's own voice flag (RTP audio-level header) may only add speech: aiortc, for
        # one, sends the header with the flag always off
        now = time.monotonic()
        flags = {site.id: True for site in roster if site.says_voice(now)}
        change = self._speaker.update(
            deadline,
            {site.id: site.level_dbov for site in roster},
            {site.id: inputs[i] for i, site in enumerate(roster)},
            flags,
        )
        self.recent = self._speaker.floor.recent()
        if change is not None:
            self.previous_floor = change.previous
            self.floor = change.site
            self.speaker_changes += 1
            logger.info("room=%s site=%s has the floor (after %s)", self.id, change.site,
                        change.previous or "nobody")
        elif self.floor is not None and self.floor not in present:
            self.floor = self._speaker.holder
        metrics.observe_audio_tick(self.id, time.monotonic() - started)
