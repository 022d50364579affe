"""The port-spec table: short syntax, long syntax, plain ints and expose, as compose reads them.

The short-syntax cases include those of go-connections' `nat/nat_test.go` and
`nat/parse_test.go` (which compose-go's `types.ParsePortConfig` calls) and compose-go's
`transform/ports_test.go`.
"""

from __future__ import annotations

import pytest

from opskit.ports import spec
from opskit.ports.spec import PortSpecError

# (spec, [(host_ip, published, target, protocol), ...])
VALID_SHORT = [
    # plain container port: published on a port the engine picks, all interfaces
    ("80", [(None, None, 80, "tcp")]),
    ("1234/tcp", [(None, None, 1234, "tcp")]),
    ("2345/udp", [(None, None, 2345, "udp")]),
    ("3456/sctp", [(None, None, 3456, "sctp")]),
    ("80/UDP", [(None, None, 80, "udp")]),
    ("80/", [(None, None, 80, "tcp")]),
    # host:container
    ("8080:80", [(None, "8080", 80, "tcp")]),
    ("1234:1234/tcp", [(None, "1234", 1234, "tcp")]),
    ("2345:2345/udp", [(None, "2345", 2345, "udp")]),
    ("3456:3456/sctp", [(None, "3456", 3456, "sctp")]),
    ("22:22", [(None, "22", 22, "tcp")]),
    # ip:host:container
    ("127.0.0.1:8080:80", [("127.0.0.1", "8080", 80, "tcp")]),
    ("0.0.0.0:1234:1234/tcp", [("0.0.0.0", "1234", 1234, "tcp")]),
    ("192.168.1.100:8080:80", [("192.168.1.100", "8080", 80, "tcp")]),
    ("192.168.1.100::80", [("192.168.1.100", None, 80, "tcp")]),
    ("192.168.1.100::6000/udp", [("192.168.1.100", None, 6000, "udp")]),
    ("192.168.1.100::6000/sctp", [("192.168.1.100", None, 6000, "sctp")]),
    (":8080:6000/tcp", [(None, "8080", 6000, "tcp")]),
    # IPv6 with brackets
    ("[::1]:80:80", [("::1", "80", 80, "tcp")]),
    ("[::1]:8080:6000/udp", [("::1", "8080", 6000, "udp")]),
    ("[::1]::6000/udp", [("::1", None, 6000, "udp")]),
    ("[2001:4860:0:2001::68]::333", [("2001:4860:0:2001::68", None, 333, "tcp")]),
    ("[::]:80:80", [("::", "80", 80, "tcp")]),
    ("[]:80:80", [(None, "80", 80, "tcp")]),
    ("[127.0.0.1]:80:80", [("127.0.0.1", "80", 80, "tcp")]),
    # IPv6 without brackets: everything before the last two colons is the IP
    ("::1:80:80", [("::1", "80", 80, "tcp")]),
    ("::1:8080:6000/udp", [("::1", "8080", 6000, "udp")]),
    ("2001:4860:0:2001::68::333", [("2001:4860:0:2001::68", None, 333, "tcp")]),
    ("::::80", [("::", None, 80, "tcp")]),
    ("::::6000/udp", [("::", None, 6000, "udp")]),
    ("::6000", [(None, None, 6000, "tcp")]),
    ("0:0:0:0:0:0:0:1:80:80", [("::1", "80", 80, "tcp")]),
    # ranges expand to one mapping per port
    (
        "0.0.0.0:1234-1235:3333-3334/tcp",
        [("0.0.0.0", "1234", 3333, "tcp"), ("0.0.0.0", "1235", 3334, "tcp")],
    ),
    (
        "1234-1236/tcp",
        [(None, None, 1234, "tcp"), (None, None, 1235, "tcp"), (None, None, 1236, "tcp")],
    ),
    ("2345-2346:2345-2346/udp", [(None, "2345", 2345, "udp"), (None, "2346", 2346, "udp")]),
    (
        "127.0.0.1:3000-3001:5000-5001",
        [("127.0.0.1", "3000", 5000, "tcp"), ("127.0.0.1", "3001", 5001, "tcp")],
    ),
    ("1234-1234", [(None, None, 1234, "tcp")]),
    ("8000-8000:80", [(None, "8000", 80, "tcp")]),
    # a host range with one container port is a pool, not an expansion
    ("8000-8010:80", [(None, "8000-8010", 80, "tcp")]),
    ("127.0.0.1:8000-8010:80/udp", [("127.0.0.1", "8000-8010", 80, "udp")]),
    # numbers as Go's ParseInt reads them
    ("0123:80", [(None, "123", 80, "tcp")]),
    ("+8080:+80", [(None, "8080", 80, "tcp")]),
    ("0:80", [(None, "0", 80, "tcp")]),
    ("65535:65535", [(None, "65535", 65535, "tcp")]),
]

# (spec, words the error message has)
INVALID_SHORT = [
    ("", "no port specified"),
    ("/udp", "no port specified"),
    ("8080:", "no port specified"),
    ("80/tcp/udp", "invalid proto"),
    ("80/icmp", "invalid proto"),
    ("localhost:1234:1234/tcp", "invalid IP address"),
    ("localhost:1234-1236:1234-1236/tcp", "invalid IP address"),
    ("127.0.1:8080:80", "invalid IP address"),
    ("192.168.1.100", "invalid containerPort"),
    ("192.168.1.100:-1:-1", "invalid containerPort"),
    ("01.2.3.4:80:80", "invalid IP address"),
    ("fe80::1%eth0:80:80", "invalid IP address"),
    ("[::1:80:80", "missing ']'"),
    ("[::1]x:80:80", "invalid IP address"),
    ("asdf", "invalid containerPort"),
    ("1asdf", "invalid containerPort"),
    ("65536", "out of range"),
    ("70000:80", "invalid hostPort"),
    ("9000-8000", "invalid port range"),
    ("8000-", "invalid containerPort"),
    ("-9000", "invalid containerPort"),
    ("8000-a", "invalid containerPort"),
    ("8000-9000a", "invalid containerPort"),
    ("a-9000", "invalid containerPort"),
    ("8000a-9000", "invalid containerPort"),
    ("-8000-", "invalid containerPort"),
    ("-", "invalid containerPort"),
    ("1-2-3", "invalid containerPort"),
    (" 80", "invalid containerPort"),
    ("80 ", "invalid containerPort"),
    ("8_0", "invalid containerPort"),
    ("0x50", "invalid containerPort"),
    ("8000-8002:80-81", "invalid ranges"),
    ("80:8000-8001", "invalid ranges"),
    ("${HOST_IP}:${HOST_PORT}:80", "invalid"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID_SHORT, ids=[case[0] for case in VALID_SHORT])
def test_parse_short_syntax_table(raw: str, expected: list[tuple]):
    entries = spec.parse_short_syntax(raw)
    assert [(e.host_ip, e.published, e.target, e.protocol) for e in entries] == expected


@pytest.mark.parametrize(
    ("raw", "problem"), INVALID_SHORT, ids=[case[0] or "<empty>" for case in INVALID_SHORT]
)
def test_parse_short_syntax_rejects_what_compose_rejects(raw: str, problem: str):
    with pytest.raises(PortSpecError, match=problem):
        spec.parse_short_syntax(raw)


def test_parse_short_syntax_range_entries_know_their_group_size():
    entries = spec.parse_short_syntax("8000-8099:8000-8099")
    assert len(entries) == 100
    assert {entry.group_size for entry in entries} == {100}
    assert spec.parse_short_syntax("8000-8099:80")[0].group_size == 1


@pytest.mark.parametrize(
    ("published", "host_port"),
    [(None, None), ("8080", 8080), ("0", None), ("8000-8010", "8000-8010")],
)
def test_port_entry_host_port_is_int_pool_or_engine_chosen(published, host_port):
    assert spec.PortEntry(target=80, published=published).host_port() == host_port


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"target": 80}, (None, None, 80, "tcp", "ingress")),
        ({"target": 80, "published": 8080}, (None, "8080", 80, "tcp", "ingress")),
        ({"target": 80, "published": "8080"}, (None, "8080", 80, "tcp", "ingress")),
        ({"target": 80, "published": "8000-8010"}, (None, "8000-8010", 80, "tcp", "ingress")),
        ({"target": "80", "published": ""}, (None, None, 80, "tcp", "ingress")),
        (
            {"target": 53, "published": 53, "protocol": "UDP", "host_ip": "127.0.0.1"},
            ("127.0.0.1", "53", 53, "udp", "ingress"),
        ),
        ({"target": 80, "host_ip": "::1", "mode": "host"}, ("::1", None, 80, "tcp", "host")),
        (
            {"target": 80, "published": 80, "name": "web", "app_protocol": "http", "x-a": 1},
            (None, "80", 80, "tcp", "ingress"),
        ),
    ],
)
def test_parse_long_syntax(entry: dict, expected: tuple):
    parsed = spec.parse_long_syntax(entry)
    assert (
        parsed.host_ip,
        parsed.published,
        parsed.target,
        parsed.protocol,
        parsed.mode,
    ) == expected


def test_parse_long_syntax_keeps_name_and_app_protocol():
    parsed = spec.parse_long_syntax({"target": 80, "name": "web", "app_protocol": "http"})
    assert (parsed.name, parsed.app_protocol) == ("web", "http")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"published": 80}, "'target' is required"),
        ({"target": 80, "hostip": "127.0.0.1"}, "additional property"),
        ({"target": "eighty"}, "invalid target"),
        ({"target": 70000}, "invalid target"),
        ({"target": True}, "target must be a port number"),
        ({"target": 80, "published": "9000-8000"}, "invalid published"),
        ({"target": 80, "published": [80]}, "published must be"),
        ({"target": 80, "protocol": "icmp"}, "invalid proto"),
        ({"target": 80, "host_ip": "example.com"}, "invalid IP address"),
        ({"target": 80, "host_ip": "[::1]"}, "invalid IP address"),
        ({"target": 80, "mode": "swarm"}, "invalid mode"),
        ({"target": 80, "name": 5}, "name must be a string"),
    ],
)
def test_parse_long_syntax_rejects_invalid_entries(entry: dict, problem: str):
    with pytest.raises(PortSpecError, match=problem):
        spec.parse_long_syntax(entry)


@pytest.mark.parametrize(
    ("entry", "targets"),
    [(80, [80]), (0, [0]), ("80", [80]), ({"target": 81}, [81]), ("90-91", [90, 91])],
)
def test_parse_ports_entry_accepts_ints_strings_and_mappings(entry, targets):
    assert [parsed.target for parsed in spec.parse_ports_entry(entry)] == targets


@pytest.mark.parametrize("entry", [True, None, 8.0, [80], -1, 65536])
def test_parse_ports_entry_rejects_other_types_and_ranges(entry):
    with pytest.raises(PortSpecError):
        spec.parse_ports_entry(entry)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (3000, [(3000, "tcp")]),
        ("3000", [(3000, "tcp")]),
        ("53/udp", [(53, "udp")]),
        ("8000-8002", [(8000, "tcp"), (8001, "tcp"), (8002, "tcp")]),
    ],
)
def test_parse_expose_entry(entry, expected):
    assert spec.parse_expose_entry(entry) == expected


@pytest.mark.parametrize("entry", ["web", "80/icmp", "9000-8000", None, 1.5])
def test_parse_expose_entry_rejects_invalid(entry):
    with pytest.raises(PortSpecError):
        spec.parse_expose_entry(entry)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("0", 0), ("65535", 65535), ("0123", 123), ("+1", 1)],
)
def test_parse_port_number_like_go(text, expected):
    if expected is None:
        with pytest.raises(PortSpecError, match="value is empty"):
            spec.parse_port_number(text)
    else:
        assert spec.parse_port_number(text) == expected


@pytest.mark.parametrize("text", ["   ", "  42  ", "-1", "70000", "foo", "1234abc", "٣"])
def test_parse_port_number_rejects_like_go(text):
    with pytest.raises(PortSpecError):
        spec.parse_port_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234", (1234, 1234)),
        ("1234-1234", (1234, 1234)),
        ("8000-9000", (8000, 9000)),
        ("0-0", (0, 0)),
    ],
)
def test_parse_port_range(text, expected):
    assert spec.parse_port_range(text) == expected


def test_merge_key_defaults_host_ip_and_protocol_like_compose():
    assert spec.PortEntry(target=80, published="8080").merge_key() == "0.0.0.0:8080:80/tcp"
    assert spec.PortEntry(target=80).merge_key() == "0.0.0.0::80/tcp"
    udp = spec.PortEntry(target=53, published="53", host_ip="::1", protocol="udp")
    assert udp.merge_key() == "::1:53:53/udp"
