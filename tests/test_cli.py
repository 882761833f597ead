"""The `mcu` command as an operator runs it: token, serve (start, config errors, SIGTERM)."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import LAYOUTS


def run_mcu(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcu", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_token_prints_a_token_and_its_hash() -> None:
    result = run_mcu("token")
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    token = values["token        "].strip()
    digest = values["token_sha256 "].strip().strip('"')
    assert len(token) >= 40
    assert hashlib.sha256(token.encode()).hexdigest() == digest
    assert run_mcu("token").stdout != result.stdout, "every token is new"


def test_a_config_typo_is_named_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    text = (Path(__file__).resolve().parents[1] / "conf" / "demo.toml").read_text("utf-8")
    config.write_text(text.replace("video_kbps", "vidoe_kbps", 1), "utf-8")
    result = run_mcu("serve", "--config", str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "vidoe_kbps" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_health_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    digest = hashlib.sha256(b"t").hexdigest()
    config = tmp_path / "mcu.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nlayouts = "{LAYOUTS}"\n'
        "[profiles.p]\nwidth = 320\nheight = 180\nfps = 10\nvideo_kbps = 200\naudio_kbps = 24\n"
        '[rooms.r]\nname = "Phòng"\nlayout = "auto"\nprofile = "p"\n'
        f'[rooms.r.sites.a]\nname = "Điểm cầu A"\ntoken_sha256 = "{digest}"\n',
        "utf-8",
    )
    process = subprocess.Popen([sys.executable, "-m", "mcu", "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        output = process.communicate()[0]
        assert "room=r started" in output and "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_dial_sends_a_clip_and_records_the_composite(mcu_server, tmp_path: Path) -> None:
    import asyncio

    import av

    from mcu.media import clip

    from .conftest import room_config, site_token, url

    server = await mcu_server(room_config(["hq", "north"]))
    record = tmp_path / "received.mp4"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcu", "dial", url(server, "test", "north"),
        "--token", site_token("north"), "--video", str(clip("carphone_pristine.mp4")),
        "--record", str(record), "--duration", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    lines = []

    async def read() -> None:
        assert process.stdout
        async for line in process.stdout:
            lines.append(line.decode())

    try:
        await asyncio.wait_for(read(), 60)
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        raise AssertionError("".join(lines)[-3000:]) from None
    text = "".join(lines)
    assert process.returncode == 0, text
    assert "site north:" in text and "320x180" in text

    with av.open(str(record)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
    assert (stream.width, stream.height) == (320, 180)
    assert len(frames) >= 20, "about 4 s at 15 fps"
    # north, alone in the room, fills the first tile with the talking head; the others are empty
    image = frames[-1].to_ndarray(format="gray")
    assert image[:90, :160].std() > 10, "north's tile shows the clip"
    assert image[:90, 160:].std() < 3 and image[90:].std() < 3, "empty tiles are flat"


def test_dial_errors_are_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    target = f"http://127.0.0.1:{port}/rooms/r/sites/a"
    result = run_mcu("dial", target, "--token", "t", "--duration", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"mcu: cannot reach the MCU at {target}")
    result = run_mcu("dial", target, "--token", "t", "--video", str(tmp_path / "none.mp4"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"mcu: no such media file: {tmp_path}/none.mp4"


async def test_dial_ends_when_the_mcu_hangs_up(mcu_server) -> None:
    import asyncio

    from .conftest import room_config, site_token, url

    server = await mcu_server(room_config(["hq", "north"]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcu", "dial", url(server, "test", "north"),
        "--token", site_token("north"), "--duration", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    room = server.rooms["test"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while "north" not in room.sites:
        assert loop.time() < deadline, "north never joined"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    started = loop.time()
    await room.close()  # the MCU hangs up everyone
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "the MCU ended the call" in stderr.decode()
    assert loop.time() - started < 15


async def test_sigterm_with_sites_connected_ends_every_call_and_exits_0(tmp_path: Path) -> None:
    import asyncio

    import aiohttp

    from mcu import ice
    from mcu.dial import Call
    from mcu.sources import ColourTrack, ToneTrack

    port = free_port()
    config = tmp_path / "mcu.toml"
    sites = "".join(
        f'[rooms.r.sites.{s}]\nname = "Điểm cầu {s}"\n'
        f'token_sha256 = "{hashlib.sha256(s.encode()).hexdigest()}"\n' for s in ("a", "b"))
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nrtp_ports = [44000, 44999]\n'
        "[profiles.p]\nwidth = 320\nheight = 180\nfps = 10\nvideo_kbps = 200\naudio_kbps = 24\n"
        '[rooms.r]\nname = "Phòng"\nlayout = "auto"\nprofile = "p"\n' + sites, "utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcu", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    ice.configure(["127.0.0.1"], None)
    calls = [Call(f"http://127.0.0.1:{port}/rooms/r/sites/{s}", s,
                  video=ColourTrack((90, 128, 128)), audio=ToneTrack(440, 0.1)) for s in "ab"]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert loop.time() < deadline, "the server did not come up"
                await asyncio.sleep(0.3)
        await asyncio.gather(*(call.connect() for call in calls))
        await asyncio.gather(*(call.wait_video(3, timeout=20) for call in calls))
        started = loop.time()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert loop.time() - started < 5
        await asyncio.wait_for(asyncio.gather(*(call.ended.wait() for call in calls)), 10)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.gather(*(call.hang_up(timeout=1) for call in calls))
        ice.reset()
