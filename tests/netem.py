"""Impaired links for the end-to-end tests, made only of things this kernel has.

A `Link` is a network namespace of its own joined to the host by a veth pair with a private /30.
A site run inside the namespace reaches the MCU only through that pair, so everything done to the
link touches that site's packets and nothing else on the machine:

- loss: iptables `statistic` DROP rules on the receiving side's INPUT (the namespace's for the
  downlink, the host's for the uplink, matched on our veth only; a DROP on OUTPUT would make the
  sender's sendto() fail instead of losing the packet);
- rate: a `tbf` qdisc on the egress of both veth ends;
- delay and jitter: NFQUEUE rules in the namespace handing its UDP packets, both ways, to a small
  handler process (`python -m tests.netem delay ...`) that holds each one before accepting it.
  This kernel has no netem.

`Link.echo()` sends datagrams to an echo inside the namespace, so a test can check what the
link really does. Every rule, qdisc, process and namespace a `Link` made is removed by
`close()`; a namespace or host rule left by a test process that died is swept by the next
`Link`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "mcu-test-"  # namespaces and host rule comments: mcu-test-<pid>-<hex>
REPO = Path(__file__).resolve().parents[1]
DELAY_QUEUES = (0, 1)  # NFQUEUE numbers inside the namespace: downlink, uplink
TOOLS = ("ip", "tc", "iptables")


@dataclass(frozen=True)
class Impairment:
    """What a link does to the packets crossing it, the same both ways."""

    name: str
    loss: float = 0.0  # fraction of UDP packets dropped at random
    delay: float = 0.0  # seconds each UDP packet is held
    jitter: float = 0.0  # the hold varies uniformly by ± this many seconds
    rate_kbps: int | None = None  # tbf rate limit on each direction

    def describe(self) -> str:
        parts = []
        if self.loss:
            parts.append(f"{self.loss:.0%} loss")
        if self.delay:
            parts.append(f"{self.delay * 1000:.0f}±{self.jitter * 1000:.0f} ms")
        if self.rate_kbps:
            parts.append(f"{self.rate_kbps} kbit/s")
        return ", ".join(parts) or "clean"


def unavailable() -> str | None:
    """Why impaired links cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "impaired links need root (network namespaces, iptables, tc)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"impaired links need {', '.join(missing)} (Debian: iproute2, iptables)"
    for argv in (["ip", "netns", "list"], ["iptables", "-S", "INPUT"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"`{' '.join(argv)}` fails here: {done.stderr.strip()}"
    return None


def delay_unavailable() -> str | None:
    """Why the NFQUEUE delay handler cannot run, or None."""
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "delay needs the PyPI package NetfilterQueue (Debian libnetfilter-queue-dev)"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{shlex.join(argv)}` failed: {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> int | None:
    match = re.match(rf"{PREFIX}(\d+)-", name)
    return int(match.group(1)) if match else None


def sweep_stale() -> None:
    """Remove namespaces and host rules left by test processes that no longer run."""
    listing = _run("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner(name)
        if pid is not None and not _alive(pid):
            logger.warning("removing namespace %s left by process %d", name, pid)
            _run("ip", "netns", "del", name, check=False)
    rules = _run("iptables", "-S", "INPUT", check=False).stdout
    for rule in rules.splitlines():
        match = re.search(rf"--comment \"?({PREFIX}\d+-[0-9a-f]+)", rule)
        if match and rule.startswith("-A "):
            pid = _owner(match.group(1))
            if pid is not None and not _alive(pid):
                logger.warning("removing host rule left by process %d: %s", pid, rule)
                _run("iptables", "-D", *shlex.split(rule)[1:], check=False)


def _free_subnet() -> int:
    """A random third octet for 169.254.<x>.0/30 that no interface here uses yet."""
    used = _run("ip", "-4", "-o", "addr", check=False).stdout
    for _ in range(100):
        octet = random.randrange(1, 254)
        if octet != 169 and f"169.254.{octet}." not in used:  # 169.254.169.254: metadata
            return octet
    raise RuntimeError("no free 169.254.x.0/30 subnet for a test link")


class Link:
    """A namespace joined to the host by a veth pair; impairments are added one by one.

    `host_address` is the host end (the MCU listens and offers media there), `site_address` the
    namespace end; `command(...)` prefixes an argv to run it inside the namespace.
    """

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"{PREFIX}{os.getpid()}-{tag}"
        self.host_dev = f"mcuh{tag}"
        self.site_dev = f"mcus{tag}"
        self.host_address = ""
        self.site_address = ""
        self._host_rules: list[list[str]] = []  # iptables specs to delete, after "-D"
        self._handler: subprocess.Popen[str] | None = None
        self.delayed = 0  # packets the delay handler held, as it reported on exit
        self._open = False

    def __enter__(self) -> Link:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        sweep_stale()
        octet = _free_subnet()
        self.host_address = f"169.254.{octet}.1"
        self.site_address = f"169.254.{octet}.2"
        _run("ip", "netns", "add", self.name)
        self._open = True
        try:
            _run("ip", "link", "add", self.host_dev, "type", "veth", "peer", "name",
                 self.site_dev)
            _run("ip", "link", "set", self.site_dev, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_dev)
            _run("ip", "link", "set", self.host_dev, "up")
            self._ns("ip", "addr", "add", f"{self.site_address}/30", "dev", self.site_dev)
            self._ns("ip", "link", "set", self.site_dev, "up")
            self._ns("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        logger.info("link %s: host %s (%s) <-> site %s (%s)", self.name, self.host_address,
                    self.host_dev, self.site_address, self.site_dev)

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """Start `python -m tests.netem ARGV` inside the namespace and wait for its "ready"."""
        process = subprocess.Popen(
            self.command(sys.executable, "-m", "tests.netem", *argv),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert process.stdout is not None
        ready = process.stdout.readline()
        if not ready.startswith("ready"):
            process.kill()
            _, errors = process.communicate(timeout=5)
            raise RuntimeError(f"`{' '.join(argv)}` did not start in {self.name}: {errors.strip()}")
        return process

    def echo(self, count: int, size: int, spacing: float,
             wait: float = 1.0) -> tuple[list[float], int]:
        """Send `count` datagrams of `size` bytes, one each `spacing` seconds, to an echo in the
        namespace; returns the round trips of those that came back, and the bytes received."""
        echo = self.start("echo", "--address", self.site_address, "--port", "9")
        sent_at: dict[int, float] = {}
        trips: list[float] = []
        received = 0
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                start = time.monotonic()
                sequence = 0
                while time.monotonic() < start + count * spacing + wait:
                    now = time.monotonic()
                    if sequence < count and now >= start + sequence * spacing:
                        sock.sendto(sequence.to_bytes(4, "big") + bytes(size - 4),
                                    (self.site_address, 9))
                        sent_at[sequence] = now
                        sequence += 1
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        time.sleep(0.0005)
                        continue
                    received += len(data)
                    trips.append(time.monotonic() - sent_at[int.from_bytes(data[:4], "big")])
        finally:
            echo.terminate()
            echo.wait(5)
        return trips, received

    def _ns(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run(*self.command(*argv))

    def _host_rule(self, *spec: str, first: bool = False) -> list[str]:
        rule = [*spec, "-m", "comment", "--comment", self.name]
        if first:
            _run("iptables", "-I", rule[0], "1", *rule[1:])
        else:
            _run("iptables", "-A", *rule)
        self._host_rules.append(rule)
        return rule

    def _drop_host_rule(self, rule: list[str]) -> None:
        _run("iptables", "-D", *rule, check=False)
        with contextlib.suppress(ValueError):
            self._host_rules.remove(rule)

    def apply(self, impairment: Impairment) -> None:
        """Add everything `impairment` asks for."""
        if impairment.loss:
            self.set_loss(impairment.loss)
        if impairment.rate_kbps:
            self.set_rate(impairment.rate_kbps)
        if impairment.delay:
            self.start_delay(impairment.delay, impairment.jitter)

    def set_loss(self, fraction: float) -> None:
        """Drop `fraction` of the UDP packets each way, each at the receiving side's INPUT."""
        random_drop = ["-p", "udp", "-m", "statistic", "--mode", "random", "--probability",
                       f"{fraction:.4f}", "-j", "DROP"]
        self._ns("iptables", "-A", "INPUT", "-i", self.site_dev, *random_drop)
        self._host_rule("INPUT", "-i", self.host_dev, *random_drop)

    def set_rate(self, kbps: int) -> None:
        """Limit each direction to `kbps` with a token bucket (a queue of at most 200 ms)."""
        shape = ["root", "tbf", "rate", f"{kbps}kbit", "burst", "6kb", "latency", "200ms"]
        _run("tc", "qdisc", "replace", "dev", self.host_dev, *shape)
        self._ns("tc", "qdisc", "replace", "dev", self.site_dev, *shape)

    def start_delay(self, delay: float, jitter: float, seed: int = 1) -> None:
        """Hold every UDP packet, both ways, `delay` ± `jitter` seconds in a handler process."""
        reason = delay_unavailable()
        if reason:
            raise RuntimeError(reason)
        downlink, uplink = DELAY_QUEUES
        self._handler = self.start("delay", "--delay", str(delay), "--jitter", str(jitter),
                                   "--seed", str(seed), "--queue", str(downlink),
                                   "--queue", str(uplink))

        # only once the queues are bound: a rule sending packets to an unbound queue drops them
        queue = ["-p", "udp", "-j", "NFQUEUE", "--queue-num"]
        self._ns("iptables", "-A", "INPUT", "-i", self.site_dev, *queue, str(downlink))
        self._ns("iptables", "-A", "OUTPUT", "-o", self.site_dev, *queue, str(uplink))

    @contextlib.contextmanager
    def upstream_blackout(self) -> Iterator[None]:
        """Drop every UDP packet from the site to the host while the block runs."""
        rule = self._host_rule("INPUT", "-i", self.host_dev, "-p", "udp", "-j", "DROP",
                               first=True)
        try:
            yield
        finally:
            self._drop_host_rule(rule)

    def close(self) -> None:
        """Undo everything; safe to call twice and after a failed `open()`."""
        handler, self._handler = self._handler, None
        if handler is not None:
            if handler.poll() is None:
                handler.send_signal(signal.SIGTERM)
            try:
                output, _ = handler.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                handler.kill()
                output, _ = handler.communicate()
            match = re.search(r"held (\d+)", output or "")
            self.delayed = int(match.group(1)) if match else 0
        for rule in list(self._host_rules):
            self._drop_host_rule(rule)
        if self._open:
            # the namespace takes its end of the pair, its rules and its qdisc with it
            _run("ip", "netns", "del", self.name, check=False)
            self._open = False
        if _run("ip", "link", "show", self.host_dev, check=False).returncode == 0:
            _run("ip", "link", "del", self.host_dev, check=False)


class DelayLine:
    """Release times for held packets: `delay` ± `jitter` each, never out of order.

    Jitter on a real path comes from queues, which keep packet order, so a packet is never
    released before the one ahead of it.
    """

    def __init__(self, delay: float, jitter: float, rng: random.Random) -> None:
        if delay < 0 or jitter < 0 or jitter > delay:
            raise ValueError(f"need 0 <= jitter <= delay, not delay={delay} jitter={jitter}")
        self.delay = delay
        self.jitter = jitter
        self._rng = rng
        self._held: collections.deque[tuple[float, Any]] = collections.deque()
        self._last = 0.0

    def hold(self, item: Any, now: float) -> float:
        """Hold `item` arriving at `now`; returns when it will be released."""
        wanted = now + self.delay + self._rng.uniform(-self.jitter, self.jitter)
        release = max(wanted, self._last)
        self._last = release
        self._held.append((release, item))
        return release

    def due(self, now: float) -> list[Any]:
        """The items whose time has come, in arrival order."""
        out = []
        while self._held and self._held[0][0] <= now:
            out.append(self._held.popleft()[1])
        return out

    def next_release(self) -> float | None:
        return self._held[0][0] if self._held else None

    def __len__(self) -> int:
        return len(self._held)


def serve_delay(queues: list[int], delay: float, jitter: float, seed: int) -> int:
    """Bind `queues` and hold their packets until SIGTERM; one FIFO line per queue."""
    from netfilterqueue import COPY_META, NetfilterQueue

    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(seed)
    bound: list[tuple[Any, DelayLine]] = []
    held = 0
    for number in queues:
        line = DelayLine(delay, jitter, rng)
        nfq = NetfilterQueue()

        def arrived(packet: Any, line: DelayLine = line) -> None:
            nonlocal held
            line.hold(packet, time.monotonic())
            held += 1

        nfq.bind(number, arrived, max_len=4096, mode=COPY_META)
        bound.append((nfq, line))
    print("ready", flush=True)

    # wake for new packets or for the next release, whichever comes first
    fds = {nfq.get_fd(): nfq for nfq, _ in bound}
    try:
        while not stop:
            now = time.monotonic()
            for _, line in bound:
                for packet in line.due(now):
                    packet.accept()
            releases = [r for _, line in bound if (r := line.next_release()) is not None]
            wait = max(0.0, min(releases) - time.monotonic()) if releases else 0.2
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select(list(fds), [], [], min(wait, 0.2))
                for fd in readable:
                    fds[fd].run(block=False)
    finally:
        # let the rest through rather than leave the kernel holding them
        for nfq, line in bound:
            for packet in line.due(float("inf")):
                with contextlib.suppress(OSError):
                    packet.accept()
            nfq.unbind()
    print(f"held {held}", flush=True)
    return 0


def serve_echo(address: str, port: int) -> int:
    """Send every UDP datagram back where it came from, until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, port))
        print("ready", flush=True)
        while True:
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netem")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="a UDP echo, to measure a link")
    echo.add_argument("--address", required=True)
    echo.add_argument("--port", type=int, required=True)
    delay = commands.add_parser("delay", help="hold NFQUEUE packets delay ± jitter seconds")
    delay.add_argument("--queue", type=int, action="append", required=True)
    delay.add_argument("--delay", type=float, required=True)
    delay.add_argument("--jitter", type=float, default=0.0)
    delay.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "echo":
        return serve_echo(args.address, args.port)
    return serve_delay(args.queue, args.delay, args.jitter, args.seed)


if __name__ == "__main__":
    sys.exit(main())
