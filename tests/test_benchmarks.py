"""The benchmark scripts run and write sound JSON rows; how fast anything is, is not checked."""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# the cases the composite benchmark must cover, as the task gives them
LAYOUT_CANVASES = {("2x2", "640x360"), ("3x3", "1280x720"), ("4x4", "1280x720"),
                   ("1+5", "1280x720")}  # fmt: skip
COMPOSITE_SOURCES = {"1280x720", "640x360", "176x144"}
AUDIO_SITES = {8, 64, 256, 700}


def run_quick(script: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Run one benchmark with --quick --json; return its rows."""
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and rows
    return rows


def expected_video_methods() -> set[str]:
    methods = {"kernel", "swscale", "numpy", "floor", "read"}
    if ctypes.util.find_library("yuv") is not None:
        methods.add("libyuv")
    if importlib.util.find_spec("cv2") is not None:
        methods.add("opencv")
    if shutil.which("ffmpeg") is not None:
        methods.add("ffmpeg")
    return methods


@pytest.mark.timeout(150)
def test_composite_benchmark_rows(tmp_path: Path) -> None:
    rows = run_quick("bench_composite", tmp_path)

    for row in rows:
        assert {"layout", "canvas", "source", "method", "ms_median", "rounds"} <= row.keys()
        assert row["ms_median"] > 0, row
        assert row["rounds"] >= 1, row

    cases = {(row["layout"], row["canvas"], row["source"]) for row in rows}
    for layout, canvas in LAYOUT_CANVASES:
        for source in COMPOSITE_SOURCES:
            assert (layout, canvas, source) in cases

    # every case is timed with the same methods: the kernel and all the others available here
    wanted = expected_video_methods()
    for case in cases:
        methods = [
            row["method"] for row in rows if (row["layout"], row["canvas"], row["source"]) == case
        ]
        assert sorted(methods) == sorted(wanted), case


@pytest.mark.timeout(150)
def test_composite_benchmark_runs_the_kernel_at_a_chosen_simd_level(tmp_path: Path) -> None:
    script = str(BENCHMARKS / "bench_composite.py")
    out = tmp_path / "portable.json"
    done = subprocess.run(
        [sys.executable, script, "--quick", "--simd", "portable", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SIMD level portable" in done.stdout
    assert any(row["method"] == "kernel" for row in json.loads(out.read_text(encoding="utf-8")))

    wrong = subprocess.run(
        [sys.executable, script, "--simd", "neon"], capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 2
    assert "invalid choice: 'neon'" in wrong.stderr


@pytest.mark.timeout(90)
def test_audio_benchmark_rows(tmp_path: Path) -> None:
    rows = run_quick("bench_audio", tmp_path)

    for row in rows:
        assert {"sites", "method", "ms_median", "rounds"} <= row.keys()
        assert row["ms_median"] > 0, row
        assert row["rounds"] >= 1, row

    pairs = sorted((row["sites"], row["method"]) for row in rows)
    assert pairs == sorted((sites, method) for sites in AUDIO_SITES
                           for method in ("kernel", "limited", "numpy"))  # fmt: skip
