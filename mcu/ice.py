"""Host ICE candidates on the addresses the operator names.

aioice gathers host candidates from every interface except loopback and always binds an ephemeral
port. An MCU must instead offer exactly its media address(es) (its public address behind NAT, or
127.0.0.1 on a test machine) and bind inside a firewall-friendly UDP port range. `configure()`
installs that policy for every peer connection created afterwards in this process; with no policy
aioice's own gathering is used unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from dataclasses import dataclass

import aioice
import aioice.ice
import aiortc.rtcicetransport
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostPolicy:
    """Addresses to offer as host candidates and the inclusive UDP port range to bind."""

    addresses: tuple[str, ...]
    port_min: int = 0
    port_max: int = 0

    def ports(self) -> list[int]:
        """Ports to try, starting at a random point so parallel sessions rarely collide."""
        if self.port_min == 0:
            return [0]
        span = list(range(self.port_min, self.port_max + 1))
        start = random.randrange(len(span))
        return span[start:] + span[:start]


_policy: HostPolicy | None = None


def configure(addresses: list[str] | tuple[str, ...], port_range: tuple[int, int] | None) -> None:
    """Offer `addresses` as host candidates, binding within `port_range` when given."""
    global _policy
    lo, hi = port_range if port_range else (0, 0)
    _policy = HostPolicy(tuple(addresses), lo, hi)
    aiortc.rtcicetransport.Connection = PolicyConnection  # type: ignore[attr-defined]
    logger.info("ICE host candidates: addresses=%s ports=%s", list(addresses), port_range or "any")


def reset() -> None:
    """Return to aioice's own host gathering."""
    global _policy
    _policy = None
    aiortc.rtcicetransport.Connection = aioice.Connection  # type: ignore[attr-defined]


class PolicyConnection(aioice.Connection):
    """An aioice connection whose host candidates follow the configured `HostPolicy`."""

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        policy = _policy
        if policy is None:
            return await super().get_component_candidates(component, addresses, timeout)

        candidates = []
        for address in policy.addresses:
            protocol = await _bind(self, component, address, policy)
            self._protocols.append(protocol)
            candidates.append(protocol.local_candidate)

        # relayed candidates still come from aioice; with no host sockets it asks no STUN server
        candidates += await super().get_component_candidates(component, [], timeout)
        return candidates


async def _bind(
    connection: aioice.Connection, component: int, address: str, policy: HostPolicy
) -> aioice.ice.StunProtocol:
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for port in policy.ports():
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise OSError(exc.errno, f"cannot bind media address {address}: {exc}") from exc
            last_error = exc
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        host, bound_port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=bound_port,
            type="host",
        )
        return protocol
    raise OSError(
        errno.EADDRINUSE,
        f"no free UDP port on {address} in {policy.port_min}-{policy.port_max}: {last_error}",
    )
