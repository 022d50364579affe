"""The audit's rules: their ids, severities and texts, and the checks on single mappings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from opskit.ports.model import Finding, Mapping, Severity


@dataclass(frozen=True)
class Rule:
    """A rule's stable id, default severity, and the texts the docs and SARIF show."""

    id: str
    severity: Severity
    title: str
    why: str
    fix: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "all-interfaces",
            Severity.low,
            "Port published on all interfaces",
            "A port published without a host IP (or on 0.0.0.0 or ::) is reachable from every "
            "network the host is on, not just from where it is needed.",
            "Publish on one address, e.g. `127.0.0.1:8080:80` behind a reverse proxy, or allow "
            "the port in the config when it is meant to be public.",
        ),
        Rule(
            "sensitive-port-public",
            Severity.high,
            "Datastore, admin or remote-access port published on all interfaces",
            "Databases, caches, admin consoles, remote shells and above all the Docker API "
            "(2375/2376, critical: it gives root on the host) are prime targets for scanners.",
            "Do not publish it; let other containers reach it over a compose network, or bind "
            "it to 127.0.0.1 and use an SSH tunnel or VPN.",
        ),
        Rule(
            "privileged-host-port",
            Severity.info,
            "Host port below 1024",
            "Ports below 1024 are the well-known service ports; publishing one takes it from "
            "the host (and from any host service that needs it) and makes the container look "
            "like a system service.",
            "Use a port of 1024 or more, or allow the port (80 and 443 on a proxy, say).",
        ),
        Rule(
            "host-network",
            Severity.medium,
            "Container uses the host network",
            "With `network_mode: host` every port the container listens on is open on the "
            "host, `ports:` is ignored, and network isolation is gone.",
            "Use a bridge network and publish only the ports you need.",
        ),
        Rule(
            "duplicate-host-port",
            Severity.high,
            "Two services or containers claim the same host port",
            "Only one can bind a host address, port and protocol; the second fails to start. "
            "0.0.0.0 collides with every IPv4 address and :: with every IPv6 address.",
            "Give one of them another host port, or different specific host IPs.",
        ),
        Rule(
            "drift",
            Severity.medium,
            "Running container differs from its compose file",
            "What runs is not what the file says: a port was added or changed by hand, or the "
            "file changed and nobody ran `docker compose up`. Audits of the file then miss "
            "what is really exposed.",
            "Run `docker compose up -d` to apply the file, or update the file to what runs.",
        ),
        Rule(
            "firewall-bypass",
            Severity.high,
            "Published port bypasses the host firewall",
            "Docker writes its own iptables rules ahead of ufw's and firewalld's, so a port "
            "published on all interfaces is reachable even when the firewall denies it.",
            "Publish on 127.0.0.1 or a private address, or filter in the DOCKER-USER chain.",
        ),
        Rule(
            "wide-range",
            Severity.medium,
            "Published range of more than 100 ports",
            "Each published port is its own iptables rule and docker-proxy process; wide "
            "ranges slow container start, use memory and expose much more than needed.",
            "Publish only the ports in use, or a host pool (`8000-8100:80`) for one port.",
        ),
        Rule(
            "invalid-port-spec",
            Severity.high,
            "Port entry compose rejects",
            "Compose refuses the whole file when one port entry is invalid, so the deploy fails.",
            "Fix the entry: `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]`.",
        ),
        Rule(
            "unset-variable",
            Severity.info,
            "Variable in a port entry is not set",
            "An unset variable reads as an empty string: `${BIND_IP}:5432:5432` becomes "
            "`:5432:5432`, published on all interfaces.",
            "Set it in the environment or `.env`, or give a default: `${BIND_IP:-127.0.0.1}`.",
        ),
        Rule(
            "incomplete-audit",
            Severity.info,
            "The audit could not see everything",
            "Some ports could not be checked: `extends:`/`include:` are not followed, or the "
            "compose files of a running project are not readable here.",
            "Audit the files the ports come from, or run the audit where the files are.",
        ),
    )
}

# Ports that should never face every network. Name shown in messages.
SENSITIVE_PORTS: dict[int, str] = {
    22: "SSH",
    23: "Telnet",
    1433: "SQL Server",
    1521: "Oracle",
    2375: "Docker API (plain)",
    2376: "Docker API (TLS)",
    2379: "etcd",
    3306: "MySQL/MariaDB",
    3389: "RDP",
    5432: "PostgreSQL",
    5601: "Kibana",
    5900: "VNC",
    5984: "CouchDB",
    6379: "Redis",
    8500: "Consul",
    9042: "Cassandra",
    9200: "Elasticsearch",
    9300: "Elasticsearch transport",
    11211: "memcached",
    15672: "RabbitMQ management",
    27017: "MongoDB",
}
CRITICAL_PORTS = frozenset({2375, 2376})
PRIVILEGED_PORT_LIMIT = 1024
WIDE_RANGE_LIMIT = 100


def _lowest_host_port(mapping: Mapping) -> int | None:
    if isinstance(mapping.host_port, int):
        return mapping.host_port
    if isinstance(mapping.host_port, str):
        return int(mapping.host_port.split("-", 1)[0])
    return None


def sensitive_port(mapping: Mapping) -> int | None:
    """Return the sensitive port a mapping exposes (host port first, then container port)."""
    host_port = mapping.fixed_host_port
    if host_port in SENSITIVE_PORTS:
        return host_port
    if mapping.container_port in SENSITIVE_PORTS:
        return mapping.container_port
    return None


def mapping_findings(mapping: Mapping, firewalls: Sequence[str] = ()) -> list[Finding]:
    """Given one mapping, return the findings of the rules that look at one mapping alone.

    `firewalls` names the host firewalls that are active (ufw, firewalld).
    """
    findings = []
    described = mapping.describe()
    if mapping.on_all_interfaces:
        findings.append(
            Finding.about(
                "all-interfaces",
                Severity.low,
                f"{mapping.owner()} publishes {described} on all interfaces",
                mapping,
            )
        )
        port = sensitive_port(mapping)
        if port is not None:
            findings.append(
                Finding.about(
                    "sensitive-port-public",
                    Severity.critical if port in CRITICAL_PORTS else Severity.high,
                    f"{mapping.owner()} publishes {described} ({SENSITIVE_PORTS[port]}) "
                    "on all interfaces",
                    mapping,
                )
            )
        for firewall in firewalls:
            findings.append(
                Finding.about(
                    "firewall-bypass",
                    Severity.high,
                    f"{firewall} is active, but Docker's iptables rules let {described} of "
                    f"{mapping.owner()} past it",
                    mapping,
                )
            )
    lowest = _lowest_host_port(mapping)
    if lowest is not None and 0 < lowest < PRIVILEGED_PORT_LIMIT:
        findings.append(
            Finding.about(
                "privileged-host-port",
                Severity.info,
                f"{mapping.owner()} publishes {described} on privileged host port {lowest}",
                mapping,
            )
        )
    return findings


def wide_range_findings(mappings: Iterable[Mapping]) -> list[Finding]:
    """Return one finding per range of more than WIDE_RANGE_LIMIT published ports."""
    findings = []
    seen_groups = set()
    for mapping in mappings:
        if mapping.group is None or mapping.group_size <= WIDE_RANGE_LIMIT:
            continue
        if mapping.group in seen_groups:
            continue
        seen_groups.add(mapping.group)
        findings.append(
            Finding.about(
                "wide-range",
                Severity.medium,
                f"{mapping.owner()} publishes a range of {mapping.group_size} ports starting "
                f"at {mapping.describe()}",
                mapping,
            )
        )
    return findings


def collapse_groups(findings: Sequence[Finding]) -> list[Finding]:
    """Merge the findings of one rule about the ports of one range into the first of them.

    A range like `8000-8999:8000-8999` is a thousand mappings; one line per rule is enough.
    """
    result: list[Finding] = []
    first_index: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], int] = {}
    for finding in findings:
        if finding.group is None:
            result.append(finding)
            continue
        key = (finding.rule, finding.group)
        if key in first_index:
            counts[key] += 1
            continue
        first_index[key] = len(result)
        counts[key] = 1
        result.append(finding)
    for key, index in first_index.items():
        more = counts[key] - 1
        if more:
            finding = result[index]
            noun = "port" if more == 1 else "ports"
            message = f"{finding.message} (and {more} more {noun} of the same range)"
            result[index] = replace(finding, message=message)
    return result
