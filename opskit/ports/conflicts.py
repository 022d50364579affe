"""The duplicate-host-port rule: two mappings that claim the same host address, port, protocol.

Address overlap follows the kernel's bind rules as Docker uses them: no host IP means both
0.0.0.0 and ::; 0.0.0.0 overlaps every IPv4 address and :: every IPv6 address; two specific
addresses overlap only when equal. tcp, udp and sctp never collide with each other. Host pools
and engine-chosen ports are left out: the engine picks a free port for them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Sequence

from opskit.ports.model import Finding, Mapping, Severity

# Given two mappings, say whether they may share a port (the same deployment seen twice).
Exemption = Callable[[Mapping, Mapping], bool]


def addresses_overlap(first: str | None, second: str | None) -> bool:
    """Return whether binding both host addresses on one port and protocol collides."""
    if first is None or second is None:
        return True
    first_address = ipaddress.ip_address(first)
    second_address = ipaddress.ip_address(second)
    if first_address.version != second_address.version:
        return False
    if first_address.is_unspecified or second_address.is_unspecified:
        return True
    return first_address == second_address


def _where(mapping: Mapping) -> str:
    if mapping.location is not None:
        return f", {mapping.location.file} line {mapping.location.line}"
    return ""


def duplicate_findings(
    mappings: Sequence[Mapping], exempt: Exemption | None = None
) -> list[Finding]:
    """Return a finding for each pair of mappings that collide on the host.

    The finding is about the compose side of a compose/runtime pair (it is the one to fix),
    otherwise about the later mapping; it names the other one.
    """
    buckets: dict[tuple[str, int], list[Mapping]] = defaultdict(list)
    for mapping in mappings:
        port = mapping.fixed_host_port
        if port is not None:
            buckets[(mapping.protocol, port)].append(mapping)
    findings = []
    for (protocol, port), claims in buckets.items():
        for later_index in range(1, len(claims)):
            later = claims[later_index]
            for earlier in claims[:later_index]:
                if not addresses_overlap(earlier.host_ip, later.host_ip):
                    continue
                if exempt is not None and exempt(earlier, later):
                    continue
                subject, other = later, earlier
                if later.source == "runtime" and earlier.source == "compose":
                    subject, other = earlier, later
                related = (other.location,) if other.location is not None else ()
                findings.append(
                    Finding.about(
                        "duplicate-host-port",
                        Severity.high,
                        f"host port {port}/{protocol} is claimed twice: {subject.owner()} "
                        f"({subject.describe()}) and {other.owner()} "
                        f"({other.describe()}{_where(other)})",
                        subject,
                        related=related,
                    )
                )
    return findings
