"""How long one 20 ms audio tick takes: the kernel's N-1 mix and levels beside plain numpy.

For each room size the same speech-like inputs go through both methods, which are checked to
agree before they are timed round-robin, one tick per round.

    .venv/bin/python benchmarks/bench_audio.py [--quick] [--json FILE]
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import common
from mcu import _mix, _mix_ref, media

logger = logging.getLogger(__name__)

SITES = (8, 64, 256, 700)
SAMPLES = 960  # one 20 ms tick at 48 kHz
RATE = 48000
TICKS = 25  # distinct ticks of input per room size, used in turn

DEFAULT_ROUNDS = 1000
QUICK_ROUNDS = 10

TARGET_SITES = 700
TARGET_MS = 1.0

# a few sites talk at once, at -20..0 dB of the track's level; the rest carry faint background
# (-60..-40 dB), as in a large room where most microphones pick up only the hall
TALKERS_MIN = 4
TALKERS_PER_SITE = 1 / 50
TALK_DB = (-20.0, 0.0)
BACKGROUND_DB = (-60.0, -40.0)

SENTENCES = (
    ("vi", "Xin chào các đơn vị, cuộc họp giao ban bắt đầu."),
    ("vi-vn-x-central", "Đề nghị các đồng chí báo cáo tình hình tuần qua."),
    ("vi-vn-x-south", "Chúng tôi đã hoàn thành phần việc được giao đúng hạn."),
    ("vi+f2", "Xin cảm ơn, tôi không có ý kiến gì thêm."),
)

Tick = Callable[[NDArray[np.int16]], None]


# ---------------------------------------------------------------------------------------------
# input


def read_wav(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono s16, got {wav.getparams()}")
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, np.int16)


def speech_track() -> tuple[NDArray[np.int16], str]:
    """A few seconds of Vietnamese speech with pauses, or noise bursts without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return noise_bursts(6 * RATE), "noise bursts (espeak-ng not installed)"
    pause = np.zeros(RATE // 4, np.int16)
    parts = []
    with tempfile.TemporaryDirectory(prefix="mcu-bench-speech-") as scratch:
        for voice, text in SENTENCES:
            parts += [read_wav(media.speech_wav(text, Path(scratch) / "line.wav", voice)), pause]
    return np.concatenate(parts), f"espeak-ng speech, {len(SENTENCES)} voices"


def noise_bursts(length: int, seed: int = 7) -> NDArray[np.int16]:
    """Noise shaped into syllable-long bursts with gaps, near speech's level and rhythm."""
    rng = np.random.default_rng(seed)
    envelope = np.zeros(length)
    at = 0
    while at < length:
        burst = int(rng.uniform(0.08, 0.3) * RATE)
        gap = int(rng.uniform(0.03, 0.25) * RATE)
        envelope[at : at + burst] = np.hanning(burst)[: length - at] * rng.uniform(0.2, 0.6)
        at += burst + gap
    # a short moving average takes the hiss out of white noise
    voiced = np.convolve(rng.standard_normal(length), np.ones(8) / 8, mode="same")
    voiced /= np.abs(voiced).max()
    return np.round(voiced * envelope * 32767).astype(np.int16)


def room_inputs(track: NDArray[np.int16], sites: int, seed: int) -> NDArray[np.int16]:
    """(TICKS, sites, SAMPLES): each site a slice of the track at its own offset and level."""
    rng = np.random.default_rng(seed)
    span = TICKS * SAMPLES
    if len(track) < span:
        track = np.tile(track, span // len(track) + 1)
    starts = rng.integers(0, len(track) - span + 1, sites)
    talkers = min(sites, TALKERS_MIN + int(sites * TALKERS_PER_SITE))
    decibels = rng.uniform(*BACKGROUND_DB, sites)
    decibels[rng.choice(sites, talkers, replace=False)] = rng.uniform(*TALK_DB, talkers)
    gains = 10.0 ** (decibels / 20.0)
    rows = np.stack([track[start : start + span] for start in starts]).astype(np.float64)
    rows *= gains[:, None]
    mixed = np.round(rows).astype(np.int16).reshape(sites, TICKS, SAMPLES)
    return np.ascontiguousarray(mixed.transpose(1, 0, 2))


# ---------------------------------------------------------------------------------------------
# methods: both write the N-1 mixes into `out` and the levels into `levels`


def kernel_tick(out: NDArray[np.int16], levels: NDArray[np.float64]) -> Tick:
    def tick(inputs: NDArray[np.int16]) -> None:
        _mix.mix_minus(inputs, out)
        _mix.levels_dbov(inputs, levels)

    return tick


def limited_tick(out: NDArray[np.int16], levels: NDArray[np.float64]) -> Tick:
    """What the MCU's mixer runs: gains, soft limiter and levels in one pass, with a silent
    extra row whose N-1 is the full mix the listeners share."""
    sites = out.shape[0]
    padded = np.zeros((sites + 1, SAMPLES), np.int16)
    mixed = np.empty((sites + 1, SAMPLES), np.int16)
    gains = np.ones(sites + 1, np.float32)
    padded_levels = np.empty(sites + 1, np.float64)

    def tick(inputs: NDArray[np.int16]) -> None:
        padded[:sites] = inputs
        _mix.mix_minus_limited(padded, gains, mixed, padded_levels)

    return tick


def numpy_tick(out: NDArray[np.int16], levels: NDArray[np.float64]) -> Tick:
    """Vectorised numpy: int32 total minus own row, clipped; RMS of each row in dBov."""
    sites, samples = out.shape
    wide = np.empty((sites, samples), np.int32)
    energy = np.empty(sites, np.int64)

    def tick(inputs: NDArray[np.int16]) -> None:
        total = inputs.sum(axis=0, dtype=np.int32)
        np.subtract(total, inputs, out=wide)
        np.clip(wide, -32768, 32767, out=wide)
        np.copyto(out, wide, casting="unsafe")

        np.multiply(inputs, inputs, out=wide, dtype=np.int32)
        wide.sum(axis=1, dtype=np.int64, out=energy)
        with np.errstate(divide="ignore"):
            np.log10(np.sqrt(energy / samples) / _mix_ref.FULL_SCALE, out=levels)
        np.multiply(levels, 20.0, out=levels)
        np.maximum(levels, _mix_ref.FLOOR_DBOV, out=levels)

    return tick


def check_agree(inputs: NDArray[np.int16]) -> None:
    """Both methods give the same mixes and levels on every tick of `inputs`."""
    sites = inputs.shape[1]
    outs = [np.empty((sites, SAMPLES), np.int16) for _ in range(2)]
    levels = [np.empty(sites, np.float64) for _ in range(2)]
    ticks = [kernel_tick(outs[0], levels[0]), numpy_tick(outs[1], levels[1])]
    for index, frame in enumerate(inputs):
        for tick in ticks:
            tick(frame)
        if not np.array_equal(outs[0], outs[1]) or not np.allclose(
            levels[0], levels[1], rtol=0, atol=1e-9
        ):
            raise AssertionError(
                f"kernel and numpy disagree for {sites} sites on tick {index}: "
                f"mix differs by {np.abs(outs[0].astype(int) - outs[1]).max()}, "
                f"levels by {np.abs(levels[0] - levels[1]).max():.3g} dB"
            )


# ---------------------------------------------------------------------------------------------
# one room size


def run_room(inputs: NDArray[np.int16], rounds: int) -> list[common.Row]:
    sites = inputs.shape[1]
    check_agree(inputs)
    ticks = {
        "kernel": kernel_tick(np.empty((sites, SAMPLES), np.int16), np.empty(sites)),
        "limited": limited_tick(np.empty((sites, SAMPLES), np.int16), np.empty(sites)),
        "numpy": numpy_tick(np.empty((sites, SAMPLES), np.int16), np.empty(sites)),
    }

    def sample(tick: Tick) -> common.Sample:
        # every call takes the next tick of input, so the caches see fresh audio as they would
        position = [0]

        def run() -> float:
            frame = inputs[position[0] % len(inputs)]
            position[0] += 1
            start = time.perf_counter()
            tick(frame)
            return time.perf_counter() - start

        return run

    samples = {name: sample(tick) for name, tick in ticks.items()}
    seconds = common.interleave(samples, {name: rounds for name in samples}, warmup=2)
    return [
        {
            "sites": sites,
            "samples": SAMPLES,
            "method": name,
            "ms_median": common.median_ms(seconds[name]),
            "ms_min": min(seconds[name]) * 1000.0,
            "rounds": len(seconds[name]),
        }
        for name in ticks
    ]


def main(argv: Sequence[str] | None = None) -> int:
    options = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rounds = options.rounds or (QUICK_ROUNDS if options.quick else DEFAULT_ROUNDS)

    track, origin = speech_track()
    print(f"input: {origin}, {len(track) / RATE:.1f} s, each site at its own offset and level;")
    print(f"  {TALKERS_MIN} + 1 in {round(1 / TALKERS_PER_SITE)} sites talk, the others are faint")
    print("kernel: mcu._mix.mix_minus + levels_dbov; limited: mix_minus_limited (gains, soft")
    print("  limiter, levels and the full mix: what the mixer runs); numpy: int32 total - own,")
    print("  clip, RMS")

    rows: list[common.Row] = []
    summary: list[dict[str, object]] = []
    for seed, sites in enumerate(SITES):
        room_rows = run_room(room_inputs(track, sites, seed), rounds)
        rows += room_rows
        ms = {str(row["method"]): float(row["ms_median"]) for row in room_rows}
        target = "-"
        if sites == TARGET_SITES:
            target = (f"kernel <= {TARGET_MS:g} ms {common.verdict(ms['kernel'], TARGET_MS)}; "
                      f"limited {common.verdict(ms['limited'], TARGET_MS)}")
        vs_numpy = common.ratio(ms["kernel"], ms["numpy"])
        summary.append({"sites": sites, "kernel/numpy": vs_numpy, "target": target})

    print()
    print(common.table(rows, ["sites", "method", "ms_median", "ms_min", "rounds"]))
    print()
    print(common.table(summary, ["sites", "kernel/numpy", "target"]))
    print()
    print(f"ms per {SAMPLES}-sample tick: median of interleaved rounds")
    if options.json is not None:
        common.write_json(options.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
