"""The conference benchmark runs a quick room of each mode and writes sound rows; speed is not
checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_conference.py"
QUICK_SITES = {4, 8}  # the room sizes --quick promises
KEYS = {"sites", "mode", "cpu_seconds_per_second", "late_ticks_pct", "output_fps"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("bench") / "conference.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and rows
    return done.stdout, rows


@pytest.mark.timeout(90)
def test_rows_cover_both_modes_for_each_room(quick_run: tuple[str, list[dict[str, Any]]]) -> None:
    _stdout, rows = quick_run
    for row in rows:
        assert row.keys() >= KEYS, row
    runs = sorted((row["sites"], row["mode"]) for row in rows)
    assert runs == sorted((n, mode) for n in QUICK_SITES for mode in ("shared", "per-site"))


@pytest.mark.timeout(90)
def test_row_values_are_sound(quick_run: tuple[str, list[dict[str, Any]]]) -> None:
    _stdout, rows = quick_run
    for row in rows:
        assert row["cpu_seconds_per_second"] > 0, row
        assert 0 <= row["late_ticks_pct"] <= 100, row
        assert row["output_fps"] > 0, row
        assert row["video_kbps_per_site"] > 0, row
        assert row["decoded_fps"] > 0, row
        assert row["tick_errors"] == 0, row

        # one encoder for the whole room when shared, one per site otherwise; the grids of
        # rooms this small show every site, so every site's video is decoded
        sites = row["sites"]
        assert row["encoders"] == (1 if row["mode"] == "shared" else sites), row
        assert row["decoding_sites"] == sites, row


@pytest.mark.timeout(90)
def test_prints_table_ratio_and_goal(quick_run: tuple[str, list[dict[str, Any]]]) -> None:
    stdout, rows = quick_run
    assert "| sites | mode" in stdout
    assert "per-site/shared cpu" in stdout
    # --quick runs no 64-site room, so the goal cannot be judged
    goal = [line for line in stdout.splitlines() if line.startswith("64-site room at low")]
    assert len(goal) == 1 and goal[0].endswith("n/a (no 64-site run)"), goal
    assert {row["sites"] for row in rows} == QUICK_SITES
