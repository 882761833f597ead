"""The browser pages in real headless Chromium (join, operator console, link test), plus plain HTTP
checks of how the pages and the link-test endpoints are served.

The browser is a site with a fake camera (a talking head) and microphone (Vietnamese speech); the
other site is an aiortc `Call` sending flat red and a tone, so both can be found again in what the
other receives. Screenshots go to out/test-artefacts/.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from yarl import URL

from mcu import ice
from mcu.config import Config, parse_config
from mcu.dial import Call
from mcu.pages import PAGES_KEY
from mcu.server import Server
from mcu.sources import ColourTrack, ToneTrack

from .analysis import colour_close, region_colour
from .browser import (
    CHROMIUM,
    chromium_args,
    fake_media,
    frames_shown,
    grab_frame,
    looks_like,
    loudness,
    region,
    save_image,
    screenshot,
    until,
    yuv_to_rgb,
)
from .conftest import LAYOUTS, site_token

OPERATOR = "operator-secret-for-browser-tests"
RED = (82, 90, 240)  # I420 of pure red
GREEN = (145, 54, 34)
RED_RGB = yuv_to_rgb(RED)
TONE = 500.0
# the browser site "web" and the aiortc site "red" meet; "lab" and "far" only run link tests
PROFILES = {
    "small": (320, 180, 15, 400, 32),
    "tiny": (160, 90, 10, 60, 16),  # a link test on loopback easily carries it
    "huge": (320, 180, 15, 50_000, 64),  # no link test here carries 50 Mbit/s
}
SITES = {"red": None, "web": None, "lab": "tiny", "far": "huge"}


def browser_config() -> Config:
    """One room, 2x2, chair "red" (so red has the first tile), profile "small" unless set."""
    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        'media_addresses = ["127.0.0.1"]',
        "rtp_ports = [42000, 42999]",
        "max_offer_bytes = 20000",
        f'layouts = "{LAYOUTS}"',
    ]
    for name, (width, height, fps, video, audio) in PROFILES.items():
        lines += ["", f"[profiles.{name}]", f"width = {width}", f"height = {height}",
                  f"fps = {fps}", f"video_kbps = {video}", f"audio_kbps = {audio}"]
    lines += ["", "[rooms.test]", 'name = "Phòng thử"', 'layout = "2x2"', 'profile = "small"',
              'chair = "red"']
    for site, profile in SITES.items():
        digest = hashlib.sha256(site_token(site).encode()).hexdigest()
        lines += ["", f"[rooms.test.sites.{site}]", f'name = "Điểm cầu {site}"',
                  f'token_sha256 = "{digest}"']
        if profile:
            lines.append(f'profile = "{profile}"')
    return parse_config("\n".join(lines) + "\n", Path("browser-test.toml"))


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return fake_media(tmp_path_factory.mktemp("browser-media"))


@pytest.fixture
async def server(mcu_server, monkeypatch) -> Server:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCU_OPERATOR_TOKEN", OPERATOR)
    started: Server = await mcu_server(browser_config())
    return started


@pytest.fixture
async def chromium(server: Server, media: tuple[Path, Path],
                   tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh headless Chromium (its own profile folder); script errors on a page fail the test."""
    if CHROMIUM is None:
        pytest.skip("chromium is not on PATH: install the Debian package chromium "
                    "(make test installs it)")
    playwright_api = pytest.importorskip("playwright.async_api")
    errors: list[str] = []
    async with playwright_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM,
            args=chromium_args(*media), viewport={"width": 960, "height": 600})
        context.set_default_timeout(30_000)
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
        try:
            yield context
        finally:
            await context.close()
    assert not errors, f"script errors on the pages: {errors}"


@pytest.fixture
async def red(server: Server) -> AsyncIterator[Call]:
    """The aiortc site: flat red and a 500 Hz tone."""
    call = Call(f"{base(server)}/rooms/test/sites/red", site_token("red"),
                video=ColourTrack(RED, 320, 180, fps=15), audio=ToneTrack(TONE, 0.2))
    await call.connect()
    try:
        await call.wait_video(1, timeout=20)
        yield call
    finally:
        await call.hang_up()


def base(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


# --- page helpers --------------------------------------------------------------------------------


async def state_of(page: Any, selector: str = "#status") -> str:
    value: str = await page.eval_on_selector(selector, "e => e.dataset.state")
    return value


async def join(chromium: Any, server: Server, site: str = "web") -> Any:
    """Open the site's join link and wait until its composite plays."""
    page = await chromium.new_page()
    await page.goto(f"{base(server)}/join/test/{site}#token={site_token(site)}")

    async def playing() -> bool:
        return await state_of(page) == "connected" and await frames_shown(page, "#composite") > 3

    await until(playing, f"{site}'s join page to connect and play", timeout=40)
    return page


async def open_console(chromium: Any, server: Server) -> Any:
    """The operator console with the token entered and room "test" chosen."""
    page = await chromium.new_page()
    await page.goto(f"{base(server)}/console")
    await page.fill("#token", OPERATOR)
    await page.click("#token-save")
    await page.click("[data-testid=room-test]")
    await page.wait_for_selector("#roster tr[data-site=web][data-state=connected]")
    return page


async def grab(page: Any, selector: str = "#composite") -> np.ndarray:
    image = await grab_frame(page, selector)
    assert image is not None, f"{selector} has no picture"
    return image


async def is_state(page: Any, state: str) -> bool:
    return await state_of(page) == state


async def more_frames(page: Any, selector: str, than: int) -> bool:
    return await frames_shown(page, selector) > than + 5


async def red_first(page: Any, selector: str = "#composite") -> np.ndarray | None:
    """The picture, when red shows in its first tile."""
    image = await grab(page, selector)
    return image if looks_like(quadrant(image, 0), RED_RGB) else None


def quadrant(image: np.ndarray, index: int) -> np.ndarray:
    """Tile `index` of the 2x2 layout, row by row."""
    return region(image, 0.5 * (index % 2), 0.5 * (index // 2), 0.5, 0.5)


def half_up(value: float) -> int:
    """Rounded as JavaScript's Math.round does (halves up, not to even)."""
    return math.floor(value + 0.5)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


async def api(server: Server, method: str, path: str, body: object = None) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{base(server)}{path}", json=body,
                                headers={"Authorization": f"Bearer {OPERATOR}"}) as reply:
            assert reply.status < 300, await reply.text()
            return await reply.json()


# --- browser tests -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_browser_site_joins_and_sees_the_other_site(server: Server, chromium: Any,
                                                            red: Call) -> None:
    page = await join(chromium, server)

    # the token left the address bar; the names came from the backend
    assert "token" not in page.url
    assert await page.inner_text("#room-name") == "Phòng thử"
    assert await page.inner_text("#site-name") == "Điểm cầu web"
    assert "small" in await page.inner_text("#profile")

    # red is the chair, so the first tile; the second is the browser's own camera (self view)
    image = await until(lambda: red_first(page), "red's tile in the browser's composite")
    save_image(image, "join-composite.png")
    assert not looks_like(quadrant(image, 1), RED_RGB)
    assert quadrant(image, 1).std(axis=0).mean() > 8, "the camera tile should show a picture"

    # and the aiortc site sees the browser's camera: a textured picture, not a flat card
    room = server.rooms["test"]
    assert [site.id for site in room.roster] == ["red", "web"]

    def web_tile_luma_spread() -> float:
        frame = red.latest_video
        assert frame is not None
        luma = frame.to_ndarray(format="yuv420p")[: frame.height]
        h, w = frame.height, frame.width
        # the middle half of the top right tile, above its label
        return float(luma[h // 8: h * 3 // 8, w * 5 // 8: w * 7 // 8].std())

    async def red_sees_camera() -> bool:
        return web_tile_luma_spread() > 8

    await until(red_sees_camera, "the browser's camera in red's composite", timeout=20)

    # the quality indicator grades the link from getStats()
    await until(lambda: page.eval_on_selector(
        "#quality", "e => ['good', 'fair', 'poor'].includes(e.dataset.grade)"),
        "a connection quality grade")
    await screenshot(page, "join-page.png")


def camera_like(pixels: np.ndarray) -> bool:
    """A tile showing the talking head: textured, and not red."""
    return not looks_like(pixels, RED_RGB) and float(pixels.std(axis=0).mean()) > 8


@pytest.mark.timeout(120)
async def test_the_console_steers_what_the_browser_sees(server: Server, chromium: Any,
                                                        red: Call) -> None:
    page = await join(chromium, server)
    console = await open_console(chromium, server)
    room = server.rooms["test"]

    async def shows(*tiles: str) -> bool:
        """Whether the browser's 2x2 quadrants show red / the camera, in that order."""
        image = await grab(page)
        save_image(image, "steered-composite.png")
        checks = {"red": lambda p: looks_like(p, RED_RGB), "camera": camera_like}
        return all(checks[tile](quadrant(image, i)) for i, tile in enumerate(tiles))

    await until(lambda: shows("red", "camera"), "the 2x2 composite: red first, the camera second")
    assert await console.eval_on_selector("#layout", "e => e.value") == "2x2"

    # the chair control reaches the room (placement is stable: a chair change moves no tile)
    await console.select_option("#chair", "web")
    await until(lambda: room.chair == "web", "the room's chair to change")
    await console.select_option("#chair", "red")
    await until(lambda: room.chair == "red", "the chair back to red")

    # a pin puts the browser site in tile 1, moving red to tile 2
    await console.fill("#pin-tile", "1")
    await console.select_option("#pin-site", "web")
    await console.click("#pin-set")
    await until(lambda: room.pins == {0: "web"}, "web pinned to tile 1")
    await until(lambda: shows("camera", "red"), "the tiles to swap after the pin")
    assert await console.inner_text("#pins") == "1: web"

    # "1x1" shows only the pinned site; pinning red instead fills the picture with red
    await console.select_option("#layout", "1x1")
    await until(lambda: room.layout_name == "1x1", "the room's layout to change")
    await until(lambda: shows("camera", "camera", "camera", "camera"),
                "the camera to fill the browser's composite")
    await until(lambda: console.eval_on_selector("#layout", "e => e.value === '1x1'"),
                "the console to show the new layout")
    await console.select_option("#pin-site", "red")
    await console.click("#pin-set")
    await until(lambda: shows("red", "red", "red", "red"), "red to fill the composite")
    save_image(await grab(page), "layout-1x1-composite.png")

    # pins cleared, back to 2x2 through the console: both sites again
    await console.click("#pins-clear")
    await console.select_option("#layout", "2x2")
    await until(lambda: (room.pins, room.layout_name) == ({}, "2x2"), "pins cleared, 2x2")

    async def both() -> bool:
        return await shows("red", "camera") or await shows("camera", "red")

    await until(both, "the 2x2 composite with both sites again")
    await screenshot(console, "console.png", full=True)


@pytest.mark.timeout(120)
async def test_muting_in_the_console_silences_a_site_in_the_others_mix(
        server: Server, chromium: Any, red: Call) -> None:
    page = await join(chromium, server)
    console = await open_console(chromium, server)
    room = server.rooms["test"]

    # the browser hears red's tone; muted at the MCU, it hears nothing
    before = await loudness(page, "#composite")
    assert before is not None and before > 0.03, f"the browser hears {before} before the mute"
    await console.click("[data-testid=mute-audio-red]")
    await until(lambda: "red" in room.muted_audio, "red muted at the MCU")
    await console.wait_for_selector("[data-testid=mute-audio-red][aria-pressed=true]")

    async def browser_hears_silence() -> bool:
        level = await loudness(page, "#composite", 0.5)
        return level is not None and level < before / 20

    await until(browser_hears_silence, "silence in the browser's mix after muting red")

    # red hears the browser's speech until the operator mutes the browser site
    async def red_hears_speech() -> bool:
        return rms(red.recent_audio(2.0)) > 300

    await until(red_hears_speech, "the browser's speech in red's mix")
    await console.click("[data-testid=mute-audio-web]")

    async def red_hears_nothing() -> bool:
        return rms(red.recent_audio(1.0)) < 30

    await until(red_hears_nothing, "silence in red's mix after muting the browser site")
    await console.click("[data-testid=mute-audio-web]")  # unmute
    await until(red_hears_speech, "the browser's speech back in red's mix")

    # the join page's own microphone button: the track is disabled, red hears silence again
    await page.click("#mute-mic")
    assert await page.eval_on_selector("#mute-mic", "e => e.getAttribute('aria-pressed')") == \
        "true"
    await until(red_hears_nothing, "silence in red's mix after the page muted its microphone")
    await page.click("#mute-mic")
    await until(red_hears_speech, "the browser's speech after unmuting the microphone")


@pytest.mark.timeout(120)
async def test_the_console_preview_shows_the_composite(server: Server, chromium: Any,
                                                       red: Call) -> None:
    await join(chromium, server)
    console = await open_console(chromium, server)
    room = server.rooms["test"]
    sessions = {site.id: site.session_id for site in room.roster}

    await console.click("#preview-start")

    async def preview_playing() -> int:
        size = await console.eval_on_selector("#preview", "v => [v.videoWidth, v.videoHeight]")
        return await frames_shown(console, "#preview") if size == [320, 180] else 0

    first = await until(preview_playing, "the preview to play the room's 320x180 composite")
    await until(lambda: len(room.viewers) == 1, "one viewer in the room")
    await until(lambda: more_frames(console, "#preview", first), "more preview frames")
    assert await console.eval_on_selector("#preview", "v => v.muted"), "muted by default"

    image = await until(lambda: red_first(console, "#preview"), "red's tile in the preview")
    save_image(image, "console-preview.png")
    assert {site.id: site.session_id for site in room.roster} == sessions, \
        "a preview is not a site"
    await screenshot(console, "console-preview-page.png", full=True)

    await console.click("#preview-stop")
    await until(lambda: room.viewers == {}, "the preview to hang up")

    # an ad-hoc room from two of the sites: the console lists one join link per site
    await console.fill("#adhoc-name", "Họp khẩn")
    await console.check("[data-testid=adhoc-site-red]")
    await console.check("[data-testid=adhoc-site-lab]")
    await console.click("#adhoc-create")
    await console.wait_for_selector("[data-testid=adhoc-link-lab]")
    links = await console.eval_on_selector_all(
        "#adhoc-links input", "inputs => inputs.map((i) => i.value)")
    assert [link.split("#token=")[0] for link in links] == [
        f"{base(server)}/join/adhoc-hop-khan/red", f"{base(server)}/join/adhoc-hop-khan/lab"]
    assert "adhoc-hop-khan" in server.rooms
    assert await console.is_visible("[data-testid=room-adhoc-hop-khan]")


@pytest.mark.timeout(120)
async def test_the_link_test_measures_and_gives_a_verdict_without_joining(
        server: Server, chromium: Any, red: Call) -> None:
    await join(chromium, server)
    room = server.rooms["test"]
    sessions = {site.id: site.session_id for site in room.roster}
    assert set(sessions) == {"red", "web"}
    pages = server.app[PAGES_KEY]

    # two technicians at once: "lab" needs little, "far" needs 50 Mbit/s
    tests = {}
    for site in ("lab", "far"):
        tests[site] = await chromium.new_page()
        await tests[site].goto(f"{base(server)}/linktest/test/{site}#token={site_token(site)}")
    for page in tests.values():
        await page.click("#start:not([disabled])")
    await until(lambda: len(pages.echoes) == 2, "both echo peers to run")
    echoes = {site: pages.echoes[f"test/{site}"] for site in tests}

    # while they run, nothing changes in the room
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    while not all([await state_of(page) in ("done", "error") for page in tests.values()]):
        assert {site.id: site.session_id for site in room.roster} == sessions
        assert loop.time() < deadline, "the link tests did not finish"
        await asyncio.sleep(0.5)

    for site, page in tests.items():
        assert await state_of(page) == "done", await page.inner_text("#error")
        await screenshot(page, f"linktest-{site}.png", full=True)
        shown = await page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('td[id^=result-]')].map(
                (cell) => [cell.id.slice(7), Number(cell.dataset.value)]))""")
        profile = PROFILES[SITES[site] or "small"]
        need = profile[3] + profile[4]

        # the page's numbers agree with what the echo peer itself counted
        echo = echoes[site]
        await until(echo.closed.is_set, f"{site}'s echo to end")
        counted = echo.counters
        assert counted is not None
        assert 0.6 * counted.kbps_in < shown["up"] < 1.4 * counted.kbps_in, (shown, counted)
        assert 0.6 * counted.kbps_out < shown["down"] < 1.4 * counted.kbps_out, (shown, counted)
        assert 0 < shown["rtt"] < 100 and shown["loss-up"] < 0.02 and shown["loss-down"] < 0.02

        # the verdict follows from the numbers: pass, or every shortfall with its amount
        verdict = await page.eval_on_selector("#verdict", "e => e.dataset.pass")
        shortfalls = await page.inner_text("#shortfalls")
        expected_short = [(label, shown[key]) for label, key in
                          (("Upstream", "up"), ("Downstream", "down")) if shown[key] < need]
        assert verdict == ("false" if expected_short else "true"), (site, shown, verdict)
        for label, measured in expected_short:
            assert f"{label}: {half_up(measured)} kbit/s" in shortfalls, shortfalls
            assert f"short by {half_up(need - measured)} kbit/s" in shortfalls, shortfalls
        if site == "lab":
            assert verdict == "true" and "Đạt / Pass" in await page.inner_text("#verdict")
        else:
            assert verdict == "false" and len(expected_short) == 2

    assert pages.echoes == {}
    assert {site.id: site.session_id for site in room.roster} == sessions


@pytest.mark.timeout(120)
async def test_the_join_page_reconnects_after_a_drop(server: Server, chromium: Any,
                                                     red: Call) -> None:
    page = await join(chromium, server)
    room = server.rooms["test"]
    first_session = room.sites["web"].session_id
    assert await page.evaluate("() => document.body.dataset.dials") == "1"

    # remember every state the page shows from now on
    await page.evaluate("""() => {
        window.seenStates = [];
        const status = document.getElementById('status');
        new MutationObserver(() => window.seenStates.push(status.dataset.state))
            .observe(status, {attributes: true, attributeFilter: ['data-state']});
    }""")

    # the MCU ends the session (as a network drop would, so without refusing the site for a
    # while, as an operator's kick does); the page dials again by itself
    await api(server, "POST", "/api/rooms/test/sites/web/disconnect", {"block_seconds": 0})
    assert "web" not in room.sites
    await until(lambda: page.evaluate("() => window.seenStates.includes('reconnecting')"),
                "the page to show that it reconnects", timeout=10)
    await screenshot(page, "join-reconnecting.png")

    async def back() -> bool:
        site = room.sites.get("web")
        return site is not None and site.session_id != first_session and site.frames_in > 10

    await until(back, "the browser to dial again and send video", timeout=40)
    assert await page.evaluate("() => document.body.dataset.dials") == "2"

    async def playing_again() -> bool:
        return await state_of(page) == "connected" and await frames_shown(page, "#composite") > 5

    await until(playing_again, "the composite to play again", timeout=30)
    image = await until(lambda: red_first(page), "red's tile after the reconnect")
    save_image(image, "join-after-reconnect.png")


@pytest.mark.timeout(60)
async def test_a_kicked_page_stays_out_and_says_why(server: Server, chromium: Any) -> None:
    page = await join(chromium, server)
    room = server.rooms["test"]
    await api(server, "POST", "/api/rooms/test/sites/web/disconnect", {"block_seconds": 120})
    await until(lambda: is_state(page, "error"), "the page to stop dialling", timeout=30)
    assert "was disconnected by the operator" in await page.inner_text("#error")
    assert "web" not in room.sites


@pytest.mark.timeout(60)
async def test_a_wrong_join_link_says_why(server: Server, chromium: Any) -> None:
    page = await chromium.new_page()
    await page.goto(f"{base(server)}/join/test/web#token=not-the-token")
    await until(lambda: is_state(page, "error"), "the page to give up")
    assert "401: wrong token for site 'web'" in await page.inner_text("#error")
    assert "web" not in server.rooms["test"].sites


@pytest.mark.timeout(60)
async def test_leaving_the_page_hangs_up(server: Server, chromium: Any,
                                         caplog: pytest.LogCaptureFixture) -> None:
    page = await join(chromium, server)
    room = server.rooms["test"]
    caplog.set_level(logging.INFO, logger="mcu.room")

    # pagehide sends the DELETE (keepalive), so the MCU hears a hang-up, not a lost connection
    await page.close(run_before_unload=True)
    await until(lambda: "web" not in room.sites, "the site to leave the room", timeout=15)
    left = [r.getMessage() for r in caplog.records if "site=web left" in r.getMessage()]
    assert left == ["room=test site=web left (hung up); 0 present"], left


# --- the echo peer without a browser -------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_the_echo_returns_the_sites_own_picture_and_ends_by_itself(server: Server) -> None:
    pages = server.app[PAGES_KEY]
    pages.echo_seconds = 3.0
    call = Call(f"{base(server)}/linktest/test/lab", site_token("lab"),
                video=ColourTrack(GREEN, 320, 180, fps=15), audio=ToneTrack(TONE, 0.2))
    await call.connect()
    try:
        await call.wait_video(5, timeout=20)
        frame = call.latest_video
        assert frame is not None
        assert colour_close(region_colour(frame, (0, 0, frame.width, frame.height)), GREEN)
        assert call.audio_frames > 0
        assert server.rooms["test"].roster == (), "a link test never joins the room"
        echo = pages.echoes["test/lab"]
        await asyncio.wait_for(echo.closed.wait(), 10)
        assert pages.echoes == {}
    finally:
        await call.hang_up()


@pytest.mark.timeout(60)
async def test_closing_the_server_ends_running_echoes() -> None:
    server = Server(browser_config())
    await server.start()
    call = Call(f"{base(server)}/linktest/test/lab", site_token("lab"),
                video=ColourTrack(GREEN, 320, 180, fps=15))
    try:
        await call.connect()
        await call.wait_video(2, timeout=20)
        echo = server.app[PAGES_KEY].echoes["test/lab"]
        assert not echo.closed.is_set()
        await asyncio.wait_for(server.close(), 10)
        assert echo.closed.is_set() and echo.pc.connectionState == "closed"
        assert server.app[PAGES_KEY].echoes == {}
    finally:
        await call.hang_up()
        ice.reset()


# --- plain HTTP: files, traversal, the link-test endpoints' refusals -----------------------------


async def fetch(server: Server, method: str, path: str, *, token: str | None = None,
                body: bytes | None = None, content_type: str | None = None,
                raw: bool = False) -> tuple[int, dict[str, str], bytes]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    url = URL(f"{base(server)}{path}", encoded=raw)
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers, data=body) as reply:
            return reply.status, dict(reply.headers), await reply.read()


@pytest.mark.parametrize(("path", "content_type", "marker"), [
    ("/join/test/web", "text/html", b'id="composite"'),
    ("/linktest/test/lab", "text/html", b'id="verdict"'),
    ("/console", "text/html", b'id="roster"'),
    ("/web/mcu.css", "text/css", b"#composite"),
    ("/web/join.js", "text/javascript", b"pagehide"),
    ("/web/common.js", "text/javascript", b"iceGatheringState"),
])
async def test_pages_are_served_with_their_type_and_no_caching(
        server: Server, path: str, content_type: str, marker: bytes) -> None:
    status, headers, body = await fetch(server, "GET", path)
    assert status == 200
    assert headers["Content-Type"] == f"{content_type}; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert marker in body
    if content_type == "text/html":
        assert b'<html lang="vi">' in body and b'charset="utf-8"' in body


@pytest.mark.parametrize("path", [
    "/web/../pages.py",
    "/web/..%2Fpages.py",
    "/web/%2e%2e%2fpages.py",
    "/web/..%2F..%2Fpyproject.toml",
    "/web/%2Fetc%2Fpasswd",
    "/web/join.html",  # pages only under their own routes
    "/web/missing.js",
    "/join/..%2F..%2Fpyproject.toml/x",
    "/join/test/..%2Fweb",
])
async def test_path_traversal_is_refused(server: Server, path: str) -> None:
    status, _, body = await fetch(server, "GET", path, raw=True)
    assert status == 404, (path, status)
    assert b"import" not in body and b"[project]" not in body and b"root:" not in body


async def test_the_profile_endpoint_gives_the_sites_profile(server: Server) -> None:
    status, headers, body = await fetch(server, "GET", "/rooms/test/sites/lab/profile",
                                        token=site_token("lab"))
    assert status == 200 and headers["Cache-Control"] == "no-store"
    width, height, fps, video, audio = PROFILES["tiny"]
    assert json.loads(body) == {"name": "tiny", "width": width, "height": height, "fps": fps,
                                "video_kbps": video, "audio_kbps": audio,
                                "room_name": "Phòng thử", "site_name": "Điểm cầu lab"}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/linktest/{room}/{site}"),
    ("GET", "/rooms/{room}/sites/{site}/profile"),
])
async def test_site_endpoints_refuse_like_dial_in(server: Server, method: str, path: str) -> None:
    offer = b"v=0\r\n"
    sdp = "application/sdp"
    url = path.format(room="test", site="lab")
    status, headers, _ = await fetch(server, method, url, body=offer, content_type=sdp)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = await fetch(server, method, url, token="guess", body=offer,
                                  content_type=sdp)
    assert (status, body) == (401, b"wrong token for site 'lab'\n")
    status, _, body = await fetch(server, method, url, token=site_token("web"), body=offer,
                                  content_type=sdp)
    assert status == 401, "another site's token"
    status, _, body = await fetch(server, method, path.format(room="nowhere", site="lab"),
                                  token=site_token("lab"), body=offer, content_type=sdp)
    assert (status, body) == (404, b"no room 'nowhere'\n")
    status, _, body = await fetch(server, method, path.format(room="test", site="ghost"),
                                  token=site_token("lab"), body=offer, content_type=sdp)
    assert (status, body) == (404, b"no site 'ghost' in room 'test'\n")


async def test_link_test_offers_are_checked_like_dial_in(server: Server) -> None:
    url = "/linktest/test/lab"
    token = site_token("lab")
    status, _, body = await fetch(server, "POST", url, token=token, body=b"v=0\r\n",
                                  content_type="text/plain")
    assert status == 415
    status, _, body = await fetch(server, "POST", url, token=token, body=b"v=0\r\n" * 5000,
                                  content_type="application/sdp")
    assert (status, body) == (413, b"offer larger than 20000 bytes\n")
    status, _, body = await fetch(server, "POST", url, token=token, body=b"hello",
                                  content_type="application/sdp")
    assert (status, body) == (400, b"offer is not SDP: it must start with 'v=0'\n")
    status, _, body = await fetch(server, "POST", url, token=token, body=b"v=0\r\n",
                                  content_type="application/sdp")
    assert (status, body) == (400, b"offer has no audio or video media section\n")
    assert server.app[PAGES_KEY].echoes == {}


async def test_link_tests_are_capped(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mcu.pages.MAX_ECHOES", 0)
    offer = b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
    status, headers, body = await fetch(server, "POST", "/linktest/test/lab",
                                        token=site_token("lab"), body=offer,
                                        content_type="application/sdp")
    assert (status, headers["Retry-After"]) == (503, "15")
    assert body == b"0 link tests are running; try again in 15 s\n"
