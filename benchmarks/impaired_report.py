"""Impaired links, measured longer than the tests do: one line of figures per condition.

Runs the call of `tests/test_impaired.py` (a `mcu dial` site in a network namespace behind a
lossy, delayed or rate-limited veth pair, two aiortc sites on the host) for each condition,
a clean link first as the baseline, and prints what it measured. Needs root, iproute2, iptables,
and for the delay the PyPI package NetfilterQueue.

    .venv/bin/python benchmarks/impaired_report.py [--quick] [--only "5% loss"] [--json FILE]
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

import common

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcu import ice
from mcu.config import Config
from mcu.server import Server
from tests import test_impaired as impaired
from tests.netem import Link, delay_unavailable, unavailable

logger = logging.getLogger(__name__)

CONDITIONS = [impaired.CLEAN, impaired.LOSS_5, impaired.LOSS_10, impaired.DELAY,
              impaired.RATE, impaired.DISTRICT_LINK]


async def run_one(condition: impaired.Impairment, timing: impaired.Timing,
                  workdir: Path) -> impaired.Figures:
    servers: list[Server] = []

    async def start(config: Config) -> Server:
        server = Server(config)
        await server.start()
        servers.append(server)
        return server

    with Link() as link:
        try:
            return await impaired.measure(start, link, condition, workdir, timing)
        finally:
            for server in servers:
                await server.close()
            ice.reset()


async def run(conditions: list[impaired.Impairment], timing: impaired.Timing) -> list[common.Row]:
    rows: list[common.Row] = []
    for condition in conditions:
        with tempfile.TemporaryDirectory(prefix="mcu-impaired-") as scratch:
            figures = await run_one(condition, timing, Path(scratch))
        print(figures.line(), flush=True)
        rows.append(dataclasses.asdict(figures))
    return rows


def main() -> int:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--only", action="append", metavar="NAME",
                      help="run this condition only (repeatable): "
                           + ", ".join(c.name for c in CONDITIONS).replace("%", "%%"))
    options = args.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reason = unavailable()
    if reason:
        print(f"impaired_report: {reason}", file=sys.stderr)
        return 2
    conditions = [c for c in CONDITIONS if not options.only or c.name in options.only]
    if delay_unavailable():
        print(f"impaired_report: {delay_unavailable()}; delay left out", file=sys.stderr)
        conditions = [c for c in conditions if not c.delay]
    timing = (impaired.Timing() if options.quick
              else impaired.Timing(settle=8.0, steady=20.0, after=5.0))
    rows = asyncio.run(run(conditions, timing))
    if options.json:
        common.write_json(options.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
