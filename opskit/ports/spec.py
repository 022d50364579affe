"""Parsing compose `ports:` and `expose:` entries exactly as compose (compose-go, go-connections).

Short syntax is `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]`, read like
go-connections' `nat.ParsePortSpec`:

- the text splits on `:`; the last part is the container port, the one before it the host
  port, and everything before that the host IP, so an IPv6 address may go without brackets
  (`::1:80:80`) or with them (`[::1]:80:80`);
- a port is a decimal number 0-65535 (leading zeros and a `+` sign are accepted, as Go's
  ParseInt does); a range is `START-END` with END >= START;
- equal-length host and container ranges expand to one mapping per port; a host range with a
  single container port is a pool the engine picks one free port from; any other range pair
  is an error;
- protocols are tcp, udp and sctp, in any case; the default is tcp.

Long syntax is a mapping with `target`, `published` (int, string or range), `host_ip`,
`protocol`, `mode` (host or ingress), `app_protocol` and `name`. A plain YAML integer is a
container port published on a port the engine picks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("tcp", "udp", "sctp")
LONG_SYNTAX_KEYS = ("target", "published", "host_ip", "protocol", "mode", "app_protocol", "name")
MAX_PORT = 65535

_GO_DECIMAL = re.compile(r"[+-]?[0-9]+")


class PortSpecError(ValueError):
    """An entry compose would reject; the message says why, in compose's words where it can."""


@dataclass(frozen=True)
class PortEntry:
    """One canonical `ports:` entry (compose's long syntax), after short-syntax expansion.

    `published` is None when the engine picks the host port, a decimal string for one port,
    or "A-B" for a host pool. `group_size` counts the entries one short-syntax range made.
    """

    target: int
    published: str | None = None
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None
    group_size: int = 1

    def merge_key(self) -> str:
        """The key compose uses to drop an earlier entry redefined by a later one."""
        host_ip = self.host_ip or "0.0.0.0"
        return f"{host_ip}:{self.published or ''}:{self.target}/{self.protocol}"

    def host_port(self) -> int | str | None:
        """Return the host port as the audit reports it: int, "A-B" pool, or None."""
        if self.published is None:
            return None
        if "-" in self.published:
            return self.published
        port = int(self.published)
        return None if port == 0 else port


def parse_port_number(text: str) -> int:
    """Return the port in `text` (0-65535), as go-connections' parsePortNumber reads it."""
    if text == "":
        raise PortSpecError("value is empty")
    if not _GO_DECIMAL.fullmatch(text):
        raise PortSpecError(f"invalid syntax {text!r}")
    if len(text.lstrip("+-").lstrip("0")) > len(str(MAX_PORT)):
        # Out of range, and int() would refuse thousands of digits with a ValueError.
        raise PortSpecError(f"value {text} out of range (0-65535)")
    port = int(text)
    if not 0 <= port <= MAX_PORT:
        raise PortSpecError(f"value {text} out of range (0-65535)")
    return port


def parse_port_range(text: str) -> tuple[int, int]:
    """Return (start, end) for `PORT` or `START-END`. Raise `PortSpecError` if invalid."""
    if text == "":
        raise PortSpecError("empty string specified for ports")
    start_text, dash, end_text = text.partition("-")
    try:
        start = parse_port_number(start_text)
    except PortSpecError as exc:
        raise PortSpecError(f"invalid start port {start_text!r}: {exc}") from exc
    if not dash or start_text == end_text:
        return start, start
    try:
        end = parse_port_number(end_text)
    except PortSpecError as exc:
        raise PortSpecError(f"invalid end port {end_text!r}: {exc}") from exc
    if end < start:
        raise PortSpecError(f"invalid port range: {text}")
    return start, end


def normalize_ip(text: str) -> str:
    """Return the canonical form of an IPv4/IPv6 address. Raise `PortSpecError` if invalid.

    Like Go's net.ParseIP: no zone (`%eth0`), no brackets, no leading zeros in IPv4.
    """
    if "%" in text:
        raise PortSpecError(f"invalid IP address: {text}")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise PortSpecError(f"invalid IP address: {text}") from exc


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _strip_brackets(host_ip: str) -> str:
    if not host_ip.startswith("["):
        return host_ip
    closing = host_ip.find("]")
    if closing < 0:
        raise PortSpecError(f"invalid IP address {host_ip}: missing ']' in address")
    if closing != len(host_ip) - 1 or "[" in host_ip[1:]:
        raise PortSpecError(f"invalid IP address {host_ip}: unexpected characters")
    return host_ip[1:closing]


def parse_short_syntax(raw: str) -> list[PortEntry]:
    """Given a short-syntax string, return its canonical entries (one per port of a range).

    Raise `PortSpecError` with compose's reason if compose would reject it.
    """
    host_ip, host_port, container_part = _split_parts(raw)
    container_port, _, protocol = container_part.partition("/")
    if container_port == "":
        raise PortSpecError(f"no port specified: {raw}<empty>")
    protocol = (protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {protocol}")
    host_ip = _strip_brackets(host_ip)
    if host_ip:
        host_ip = normalize_ip(host_ip)
    try:
        start, end = parse_port_range(container_port)
    except PortSpecError as exc:
        raise PortSpecError(f"invalid containerPort: {container_port} ({exc})") from exc
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = parse_port_range(host_port)
        except PortSpecError as exc:
            raise PortSpecError(f"invalid hostPort: {host_port} ({exc})") from exc
        if end - start != host_end - host_start and end != start:
            raise PortSpecError(
                "invalid ranges specified for container and host ports: "
                f"{container_port} and {host_port}"
            )
    count = end - start + 1
    entries = []
    for offset in range(count):
        published = None
        if host_port:
            published = str(host_start + offset)
            if count == 1 and host_start != host_end:
                published = f"{host_start}-{host_end}"
        entries.append(
            PortEntry(
                target=start + offset,
                published=published,
                host_ip=host_ip or None,
                protocol=protocol,
                group_size=count,
            )
        )
    return entries


def parse_long_syntax(entry: dict[str, Any]) -> PortEntry:
    """Given a long-syntax mapping, return its canonical entry. Raise `PortSpecError`."""
    unknown = [
        key for key in entry if key not in LONG_SYNTAX_KEYS and not str(key).startswith("x-")
    ]
    if unknown:
        raise PortSpecError(f"additional property {unknown[0]!r} is not allowed")
    if entry.get("target") is None:
        raise PortSpecError("'target' is required")
    target = _long_syntax_port(entry["target"], "target")
    published = _long_syntax_published(entry.get("published"))
    host_ip = entry.get("host_ip")
    if host_ip is not None and not isinstance(host_ip, str):
        raise PortSpecError(f"host_ip must be a string, not {host_ip!r}")
    protocol = entry.get("protocol") or "tcp"
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {protocol}")
    mode = entry.get("mode") or "ingress"
    if mode not in ("host", "ingress"):
        raise PortSpecError(f"invalid mode {mode!r} (host or ingress)")
    return PortEntry(
        target=target,
        published=published,
        host_ip=normalize_ip(host_ip) if host_ip else None,
        protocol=protocol.lower(),
        mode=mode,
        name=_optional_string(entry.get("name"), "name"),
        app_protocol=_optional_string(entry.get("app_protocol"), "app_protocol"),
    )


def _long_syntax_port(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PortSpecError(f"{field} must be a port number, not {value!r}")
    try:
        return parse_port_number(str(value))
    except PortSpecError as exc:
        raise PortSpecError(f"invalid {field} {value!r}: {exc}") from exc


def _long_syntax_published(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PortSpecError(f"published must be a port or range, not {value!r}")
    try:
        start, end = parse_port_range(str(value))
    except PortSpecError as exc:
        raise PortSpecError(f"invalid published {value!r}: {exc}") from exc
    return str(start) if start == end else f"{start}-{end}"


def _optional_string(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PortSpecError(f"{field} must be a string, not {value!r}")


def parse_ports_entry(entry: Any) -> list[PortEntry]:
    """Given one item of a `ports:` list (string, int or mapping), return its entries.

    Raise `PortSpecError` for anything compose would reject.
    """
    if isinstance(entry, bool) or entry is None:
        raise PortSpecError(f"invalid type {_type_name(entry)} for port")
    if isinstance(entry, int):
        if not 0 <= entry <= MAX_PORT:
            raise PortSpecError(f"invalid port {entry}: value out of range (0-65535)")
        return [PortEntry(target=entry)]
    if isinstance(entry, str):
        return parse_short_syntax(entry)
    if isinstance(entry, dict):
        return [parse_long_syntax(entry)]
    raise PortSpecError(f"invalid type {_type_name(entry)} for port")


def parse_expose_entry(entry: Any) -> list[tuple[int, str]]:
    """Given one `expose:` item (`3000`, `"8000-8010"`, `"53/udp"`), return (port, protocol)s."""
    if isinstance(entry, bool) or not isinstance(entry, int | str):
        raise PortSpecError(f"invalid type {_type_name(entry)} for expose")
    port_range, _, protocol = str(entry).partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {protocol}")
    start, end = parse_port_range(port_range)
    return [(port, protocol) for port in range(start, end + 1)]


def _type_name(value: Any) -> str:
    names = {bool: "bool", float: "float", type(None): "null", list: "list"}
    return names.get(type(value), type(value).__name__)
