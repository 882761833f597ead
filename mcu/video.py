"""The room's video, one tick at a time: who is shown where, the canvases, the encoder groups.

Runs in the room's video clock thread. Each tick it places the present sites in the layout, draws
one canvas per (variant, output size) that some site needs, and hands each canvas to the encoder
groups that encode it. Every site belongs to exactly one group: the one for its canvas variant,
its current profile and its codec. At most two variants exist: the shared canvas ("all") and,
when the room has no self view, the canvas the active speaker sees ("speaker").
"""

from __future__ import annotations

import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import av

from .compositor import BACKGROUND, Canvas, Placement, Planes
from .encoder import GroupKey, VideoEncoderGroup
from .layout import Layout, LayoutLibrary, place

if TYPE_CHECKING:
    from .site import Site
    from .viewer import Viewer

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
ALL, SPEAKER = "all", "speaker"
GROUP_IDLE_CLOSE = 5.0  # seconds an encoder group without members lives on before it is closed


@dataclass(frozen=True)
class Stage:
    """What the room wants shown this tick; read once per tick from the room's state."""

    roster: tuple[Site, ...]
    layout_name: str
    chair: str | None
    pins: dict[int, str]
    floor: str | None
    previous_floor: str | None
    recent: tuple[str, ...]
    self_view: bool
    stale_after: float
    muted_video: frozenset[str] = frozenset()
    audience: tuple[Viewer, ...] = ()  # receive-only viewers: the shared canvas, no tile


@dataclass
class _Variant:
    shown: list[str | None] = field(default_factory=list)
    layout: Layout | None = None
    previous: tuple[str, dict[str, int]] = ("", {})  # layout name, site → tile index


class VideoMixer:
    """Placement, canvases and encoder groups of one room; owned by its video clock thread."""

    def __init__(self, room_id: str, layouts: LayoutLibrary,
                 on_visible: Callable[[frozenset[str]], None], shared: bool = True) -> None:
        self.room_id = room_id
        # False: every site gets a canvas and an encoder of its own (for comparison only)
        self.shared = shared
        self.layouts = layouts
        self.groups: dict[GroupKey, VideoEncoderGroup] = {}
        self.member_of: dict[Site | Viewer, GroupKey] = {}
        self._on_visible = on_visible
        self._visible: frozenset[str] = frozenset()
        self._variants = {ALL: _Variant(), SPEAKER: _Variant()}
        self._canvases: dict[tuple[str, int, int], Canvas] = {}
        self._due: dict[GroupKey, float] = {}
        self._idle_since: dict[GroupKey, float] = {}
        self._epoch = time.monotonic()

    def variant_of(self, site: Site | Viewer, stage: Stage) -> str:
        if not self.shared:
            return f"site:{site.id}"
        return SPEAKER if not stage.self_view and site.id == stage.floor else ALL

    def tick(self, deadline: float, stage: Stage) -> None:
        roster = stage.roster
        now = time.monotonic()
        self._update_membership(stage, now)
        if not roster:
            self._report_visible(frozenset())
            return

        # who goes where, for each variant some site sees
        present = [site.id for site in roster]
        layout = self.layouts.choose(stage.layout_name, len(roster))
        wanted = {key.variant for key in self.member_of.values()}
        self._place(ALL, layout, present, stage.floor, stage)
        if SPEAKER in wanted and stage.floor in present:
            # the speaker sees the previous speaker in its own place, never itself
            others = [site for site in present if site != stage.floor]
            self._place(SPEAKER, self.layouts.choose(stage.layout_name, len(others)), others,
                        stage.previous_floor, stage)
        visible = set(self._variants[ALL].shown)
        if SPEAKER in wanted:
            visible |= set(self._variants[SPEAKER].shown)
        self._report_visible(frozenset(s for s in visible if s is not None))

        # one canvas per (variant, size) with a group due this tick; each group its own frame
        by_id = {site.id: site for site in roster}
        pts = int((deadline - self._epoch) * 90000)
        plane_cache: dict[int, Planes] = {}
        drawn: dict[tuple[str, str], Canvas] = {}
        for key, group in self.groups.items():
            if group.members == 0 or not self._is_due(key, group, deadline):
                continue
            canvas_key = (key.variant, key.profile)
            canvas = drawn.get(canvas_key)
            if canvas is None:
                canvas = self._draw(key.variant, group, by_id, stage, now, plane_cache)
                drawn[canvas_key] = canvas
            frame = canvas.frame()
            frame.pts = pts
            frame.time_base = VIDEO_TIME_BASE
            group.submit(frame)

    def _place(self, variant: str, layout: Layout, present: list[str], floor: str | None,
               stage: Stage) -> None:
        state = self._variants[variant]
        before_name, before = state.previous
        state.shown = place(
            layout, present, chair=stage.chair, floor=floor, recent=stage.recent,
            pins=stage.pins, previous=before if before_name == layout.name else None,
        )
        state.layout = layout
        state.previous = (layout.name, {s: i for i, s in enumerate(state.shown) if s})

    def _draw(self, variant: str, group: VideoEncoderGroup, by_id: dict[str, Site],
              stage: Stage, now: float, plane_cache: dict[int, Planes]) -> Canvas:
        profile = group.profile
        size = (variant, profile.width, profile.height)
        canvas = self._canvases.get(size)
        if canvas is None:
            canvas = self._canvases[size] = Canvas(profile.width, profile.height)
        state = self._variants.get(variant, self._variants[ALL])
        assert state.layout is not None
        placements = [
            _placement(tile.rect(profile.width, profile.height), by_id.get(site_id or ""),
                       now, stage)
            for tile, site_id in zip(state.layout.tiles, state.shown, strict=True)
        ]
        canvas.compose(placements, plane_cache)
        return canvas

    def _is_due(self, key: GroupKey, group: VideoEncoderGroup, deadline: float) -> bool:
        # each group at its own profile's frame rate, on the room clock's deadlines
        due = self._due.get(key, deadline)
        if deadline + 1e-3 < due:
            return False
        self._due[key] = max(due + 1 / group.profile.fps, deadline)
        return True

    def _update_membership(self, stage: Stage, now: float) -> None:
        members: tuple[Site | Viewer, ...] = (*stage.roster, *stage.audience)
        present = set(members)
        for site in [s for s in self.member_of if s not in present]:
            self.groups[self.member_of.pop(site)].remove(site.video_out)
        for site in members:
            if site.codec is None:
                continue
            key = GroupKey(self.variant_of(site, stage), site.profile.name, site.codec)
            current = self.member_of.get(site)
            if current == key:
                continue
            if current is not None:
                self.groups[current].remove(site.video_out)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = VideoEncoderGroup(self.room_id, key, site.profile)
            group.add(site.video_out, site.video_out.offer, site.id)
            self.member_of[site] = key

        # an encoder nobody has needed for a while is closed
        for key, group in list(self.groups.items()):
            if group.members:
                self._idle_since.pop(key, None)
            elif now - self._idle_since.setdefault(key, now) > GROUP_IDLE_CLOSE:
                group.close()
                del self.groups[key]
                del self._idle_since[key]
                self._due.pop(key, None)
                logger.info("room=%s encoder group %s/%s/%s closed (no members)", self.room_id,
                            key.variant, key.profile, key.codec)

    def _report_visible(self, visible: frozenset[str]) -> None:
        if visible != self._visible:
            self._visible = visible
            self._on_visible(visible)

    def group_of(self, site: Site | Viewer) -> VideoEncoderGroup | None:
        key = self.member_of.get(site)
        return self.groups.get(key) if key is not None else None

    def force_keyframes(self, reason: str) -> None:
        for group in list(self.groups.values()):
            group.force_keyframe(reason)

    def close(self) -> None:
        for group in self.groups.values():
            group.close()
        self.groups.clear()
        self.member_of.clear()


def _placement(rect: tuple[int, int, int, int], site: Site | None, now: float,
               stage: Stage) -> Placement:
    if site is None:
        return Placement(rect, None, BACKGROUND)
    slot = site.video_slot
    speaking = site.id == stage.floor
    if (slot is None or now - slot.arrived > stage.stale_after or not site.receiving_video
            or site.id in stage.muted_video):
        return Placement(rect, None, name=site.name, highlight=speaking)
    frame: av.VideoFrame = slot.frame
    return Placement(rect, frame, name=site.name, highlight=speaking)
