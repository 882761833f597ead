"""Helpers shared by the benchmark scripts: options, interleaved timing, tables and JSON.

The scripts run as `python benchmarks/<name>.py`, so this module is imported as `common`.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# one measurement: run the work once and return the seconds it took per unit of work
Sample = Callable[[], float]

Row = dict[str, Any]


def parser(description: str) -> argparse.ArgumentParser:
    """Command line shared by the benchmarks: --json, --quick, --rounds."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--json", type=Path, metavar="FILE", help="write the rows as JSON")
    args.add_argument("--quick", action="store_true", help="smoke run: few rounds")
    args.add_argument(
        "--rounds", type=int, metavar="N", help="timed rounds of the fast methods (overrides)"
    )
    return args


def timed(work: Callable[[], object]) -> Sample:
    """A sample that times one call of `work` with the monotonic high-resolution clock."""

    def sample() -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return sample


def _takes_part(round_index: int, wanted: int, total: int) -> bool:
    """Whether a method asking for `wanted` of `total` rounds runs in this one (evenly spread)."""
    return (round_index + 1) * wanted // total > round_index * wanted // total


def interleave(
    samples: Mapping[str, Sample], rounds: Mapping[str, int], warmup: int = 1
) -> dict[str, list[float]]:
    """Time every method round-robin and return the seconds per run of each.

    Each round runs every method once, starting from a different method each round, so a burst
    of machine noise lands on all of them alike. A method asking for fewer rounds than the
    others (a slow one) takes part in rounds spread evenly over the whole run.
    """
    names = list(samples)
    for _ in range(warmup):
        for name in names:
            samples[name]()

    total = max((rounds[name] for name in names), default=0)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(total):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if _takes_part(index, rounds[name], total):
                seconds[name].append(samples[name]())
    return seconds


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000.0


def verdict(value: float | None, limit: float) -> str:
    """PASS when `value` is at most `limit`; n/a when there is nothing to judge."""
    if value is None:
        return "n/a"
    return "PASS" if value <= limit else "FAIL"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def show(value: object) -> str:
    """A table cell: floats with 3 significant decimals, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """Rows as a Markdown table, numbers right-aligned."""
    cells = [[show(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]

    def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric)
        ]
        return "| " + " | ".join(padded) + " |"

    numeric = [
        any(isinstance(row.get(column), (int, float)) for row in rows)
        and all(isinstance(row.get(column), (int, float, type(None))) for row in rows)
        for column in columns
    ]
    dashes = [
        "-" * (width + 1) + ":" if right else "-" * (width + 2)
        for width, right in zip(widths, numeric)
    ]
    rule = "|" + "|".join(dashes) + "|"
    out = [line(list(columns), [False] * len(columns)), rule]
    out += [line(values, numeric) for values in cells]
    return "\n".join(out)


def write_json(path: Path, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=2) + "\n", encoding="utf-8")
    logger.info("rows written: %s", path)
