"""Bad input, fuzzed: the compose port parser (`ports:`/`expose:` entries, interpolation, `.env`
files and whole compose files read as compose's YAML) fails only with its documented errors,
whatever it is given, and in bounded memory.

Documented failures: `spec.parse_ports_entry`/`parse_expose_entry` raise `PortSpecError`,
`interpolate.interpolate` raises `InterpolationError`, `parse_env_text` raises `ValueError`,
and `compose.load_project` raises `ConfigError` (anything wrong inside a `ports:` entry is a
finding instead).
"""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from opskit import errors, untrusted
from opskit.ports import compose, interpolate, spec
from tests.faults.fuzzing import MIB, fuzz, peak_memory

ENVIRONMENT = {"PORT": "8080", "HOST": "127.0.0.1", "EMPTY": "", "RANGE": "9000-9002"}


# --- the pieces of compose's short syntax, and junk around them --------------------------------


def _is_narrow(text: str) -> bool:
    return len(text) <= 7


# Ranges stay narrow (a full `0-65535` is 65,536 entries, and slow to make by the thousand);
# the full range has its own examples and the bounded-memory tests below.
ports_text = st.one_of(
    st.integers(min_value=0, max_value=65535).map(str),
    st.sampled_from(["0", "65535", "65536", "-1", "+80", "080", "0x50", "", " 80", "99999999999"]),
    st.text("0123456789+-", max_size=5),
)
port_ranges = st.one_of(
    ports_text,
    st.builds(
        lambda start, width: f"{start}-{start + width}",
        st.integers(min_value=0, max_value=65540),
        st.integers(min_value=-3, max_value=12),
    ),
    st.tuples(ports_text, ports_text).map("-".join).filter(_is_narrow),
    st.sampled_from(["1-3", "3-1", "8000-8000", "65530-65535", "1--2", "-", "1-", "-1"]),
)
host_ips = st.one_of(
    st.sampled_from(
        [
            "",
            "127.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "[::1]",
            "[::1",
            "::1]",
            "fe80::1%eth0",
            "01.2.3.4",
            "1.2.3.4.5",
            "[]",
            "[[::1]]",
            "localhost",
            "${HOST}",
        ]
    ),
    st.ip_addresses().map(str),
)
protocols = st.sampled_from(["", "/tcp", "/udp", "/sctp", "/UDP", "/icmp", "/", "/tcp/udp"])


def _short_syntax(host_ip: str | None, host_port: str | None, container: str, protocol: str) -> str:
    """`[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]` from its parts (None: left out)."""
    parts = [part for part in (host_ip, host_port) if part is not None]
    return ":".join([*parts, container + protocol])


short_syntax = st.one_of(
    st.builds(
        _short_syntax,
        st.one_of(st.none(), host_ips),
        st.one_of(st.none(), port_ranges),
        port_ranges,
        protocols,
    ),
    st.text(":/-[]0123456789abcdef.%tcpud", max_size=30),
    st.text(max_size=30),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    short_syntax,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
    ),
    max_leaves=12,
)
long_syntax = st.dictionaries(
    st.one_of(
        st.sampled_from([*spec.LONG_SYNTAX_KEYS, "x-note", "extra", "Target"]), st.text(max_size=6)
    ),
    st.one_of(scalars, port_ranges, host_ips, st.sampled_from(["host", "ingress", "tcp", "UDP"])),
    max_size=8,
)
ports_entries = st.one_of(short_syntax, long_syntax, json_values)


def check_entry(entry: spec.PortEntry) -> None:
    """What every canonical entry promises the audit."""
    assert 0 <= entry.target <= spec.MAX_PORT
    assert entry.protocol in spec.PROTOCOLS
    assert entry.mode in ("host", "ingress")
    assert entry.group_size >= 1
    if entry.host_ip is not None:
        assert str(ipaddress.ip_address(entry.host_ip)) == entry.host_ip
    if entry.published is not None:
        start, _, end = entry.published.partition("-")
        assert 0 <= int(start) <= int(end or start) <= spec.MAX_PORT
    host_port = entry.host_port()
    assert host_port is None or isinstance(host_port, int | str)


@fuzz(300)
@given(entry=ports_entries)
@example(entry="::1:80:80")
@example(entry="[::1]:8000-8002:80-82/udp")
@example(entry={"target": "80", "published": "8000-8010", "host_ip": "::"})
@example(entry={"target": True})
@example(entry="1" * 5000)
@example(entry="0-65535:0-65535/udp")
def test_parse_ports_entry_fails_only_with_port_spec_error(entry):
    """Any value a `ports:` list can hold (YAML scalars, lists, mappings, grammar-built and
    junk short syntax) gives canonical entries or `PortSpecError`, nothing else."""
    try:
        entries = spec.parse_ports_entry(entry)
    except spec.PortSpecError as exc:
        assert str(exc)
        return
    assert entries
    for parsed in entries[:20] + entries[-20:]:  # a range's entries differ only in the ports
        check_entry(parsed)
    assert {parsed.group_size for parsed in entries} == {len(entries)} or len(entries) == 1


@fuzz(150)
@given(entry=st.one_of(port_ranges, st.tuples(port_ranges, protocols).map("".join), json_values))
def test_parse_expose_entry_fails_only_with_port_spec_error(entry):
    """Any `expose:` item gives (port, protocol) pairs in range, or `PortSpecError`."""
    try:
        exposed = spec.parse_expose_entry(entry)
    except spec.PortSpecError:
        return
    assert exposed
    assert all(
        0 <= port <= spec.MAX_PORT and protocol in spec.PROTOCOLS for port, protocol in exposed
    )


templates = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "$",
                "$$",
                "{",
                "}",
                "${",
                ":-",
                ":?",
                ":+",
                "-",
                "?",
                "+",
                "PORT",
                "EMPTY",
                "UNSET",
                "_x",
                "1",
                " ",
                "${PORT}",
                "$PORT",
                "${UNSET:?no}",
                "${EMPTY:-d}",
            ]
        ),
        st.text(max_size=4),
    ),
    max_size=30,
).map("".join)


@fuzz(300)
@given(template=templates)
@example(template="${A:-" * 1000 + "x" + "}" * 1000)
@example(template="${" * 10000)
@example(template="${A:-" * 100 + "x" * 20_000 + "}" * 100)
def test_interpolate_fails_only_with_interpolation_error(template):
    """Any template (nested operators, unclosed braces, `${` nested thousands deep) is
    interpolated or refused with `InterpolationError`, never a RecursionError; an unset
    variable is reported through the callback with a valid name."""
    unset: list[str] = []
    try:
        result = interpolate.interpolate(template, ENVIRONMENT.get, unset.append)
    except interpolate.InterpolationError as exc:
        assert str(exc)
        return
    assert isinstance(result, str)
    assert all(interpolate._NAME.fullmatch(name) for name in unset)
    if "$" not in template:
        assert result == template


env_texts = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "A=1",
                "export B=2",
                "C: 3",
                "D",
                "E='x",
                'F="y',
                'G="a\\"b"',
                "#c",
                "  ",
                "H=${A}",
                "I=${UNSET:?x}",
                "bad key=1",
                "=1",
                "J=a #c",
                "K='multi\nline'",
                "\t",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=12,
).map("\n".join)


@fuzz(150)
@given(text=env_texts)
def test_parse_env_text_fails_only_with_value_error(text):
    """Any `.env` text gives string variables with valid keys, or `ValueError` naming a line."""
    try:
        values = interpolate.parse_env_text(text, {"D": "from-process"})
    except ValueError as exc:
        assert str(exc).startswith("line ")
        return
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in values.items())


def test_parse_env_text_takes_linear_time_in_lines():
    """A `.env` file of 200,000 lines is read in well under the time a quadratic line count
    took (50 s to 3 min here): the bound is generous for a slow machine (the linear count
    takes about 1 s), and far below the old behaviour."""
    text = "A=b\n" * 200_000
    started = time.monotonic()
    assert interpolate.parse_env_text(text, {}) == {"A": "b"}
    assert time.monotonic() - started < 10


# --- whole compose files ------------------------------------------------------------------------


def yaml_scalar(value: object) -> str:
    """`value` in YAML flow syntax: strings quoted (JSON strings are YAML) or plain."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ".nan" if value != value else (".inf" if value > 1e308 else repr(value))
    return str(value)


_FLOW_SPECIAL = set(",[]{}#&*!|>'\"%@`")


def _is_plain(text: str) -> bool:
    return bool(text) and not set(text) & _FLOW_SPECIAL


# Every strategy is built once, here: building them inside draws costs more than the tests.
yaml_tags = st.sampled_from(
    [
        "",
        "",
        "",
        "",
        "!reset ",
        "!override ",
        "!!str ",
        "!!int ",
        "&a ",
        "!!float ",
        "!!bool ",
        "!!binary ",
        "!!timestamp ",
        "!custom ",
    ]
)
yaml_leaves = st.one_of(
    st.tuples(yaml_tags, st.one_of(scalars, port_ranges).map(yaml_scalar)),
    st.tuples(
        yaml_tags,
        st.one_of(
            short_syntax.filter(_is_plain),
            st.sampled_from(
                [
                    "22:22",
                    "0o17",
                    "0x50",
                    "1_000",
                    "017",
                    "yes",
                    "~",
                    "1e3",
                    "2020-13-01",
                    "${PORT}:80",
                    "${UNSET:?x}",
                    "8_0:8_0",
                ]
            ),
        ),
    ),
    st.just(("", "*a")),
).map("".join)
yaml_keys = st.one_of(
    st.sampled_from([*spec.LONG_SYNTAX_KEYS, "ports", "expose", "x-a"]),
    st.text(max_size=5).map(json.dumps),
)


def _flow_list(parts: tuple[str, list[str]]) -> str:
    tag, items = parts
    return tag + "[" + ", ".join(items) + "]"


def _flow_map(parts: tuple[str, bool, list[tuple[str, str]]]) -> str:
    tag, merge, pairs = parts
    items = (["<<: *a"] if merge else []) + [f"{key}: {value}" for key, value in pairs]
    return tag + "{" + ", ".join(items) + "}"


yaml_values = st.recursive(
    yaml_leaves,
    lambda children: st.one_of(
        st.tuples(yaml_tags, st.lists(children, max_size=4)).map(_flow_list),
        st.tuples(
            yaml_tags, st.booleans(), st.lists(st.tuples(yaml_keys, children), max_size=4)
        ).map(_flow_map),
    ),
    max_leaves=6,
)
service_names = st.sampled_from(["web", "db", "'x'", "1", "web"])
service_keys = st.lists(
    st.sampled_from(["ports", "expose", "network_mode", "container_name", "extends", "image"]),
    max_size=4,
    unique=True,
)
list_tags = st.sampled_from(["", "!override ", "!reset "])
services_tags = st.sampled_from(["", "", "", "!override ", "!reset "])


@st.composite
def compose_documents(draw) -> str:
    """A compose file in block style: services with ports/expose/network_mode/... lines."""
    lines = []
    if draw(st.booleans()):
        lines.append(f"x-common: &a {draw(yaml_values)}")
    if draw(st.booleans()):
        lines.append(f"name: {draw(yaml_leaves)}")
    if draw(st.integers(0, 9)) == 0:
        lines.append(f"include: {draw(yaml_values)}")
    lines.append(f"services: {draw(services_tags)}".rstrip())
    for index in range(draw(st.integers(0, 2))):
        lines.append(f"  {draw(service_names)}{index}:")
        for key in draw(service_keys):
            if key in ("ports", "expose") and draw(st.booleans()):
                lines.append(f"    {key}: {draw(list_tags)}")
                for _ in range(draw(st.integers(0, 3))):
                    lines.append(f"      - {draw(yaml_values)}")
            else:
                lines.append(f"    {key}: {draw(yaml_values)}")
    return "\n".join(lines) + "\n"


MUTATION_TOKENS = [
    "&a ",
    "*a",
    "<<: ",
    "!reset ",
    "!override ",
    "\t",
    ":",
    "- ",
    "\n  ",
    "${",
    "}",
    "[",
    "{",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "\x00",
    "\ufeff",
    "'",
    '"',
    "#",
    "? ",
    "|",
    "\n",
]
mutation_tokens = st.one_of(st.sampled_from(MUTATION_TOKENS), st.text(max_size=3))
mutation_kinds = st.sampled_from(["insert", "delete", "duplicate"])


@st.composite
def mutated(draw, documents) -> str:
    """A document with a few tokens inserted, ranges deleted or duplicated."""
    text = draw(documents)
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(text)))
        operation = draw(mutation_kinds)
        if operation == "insert":
            text = text[:position] + draw(mutation_tokens) + text[position:]
        else:
            end = min(len(text), position + draw(st.integers(1, 20)))
            copy = text[position:end] if operation == "duplicate" else ""
            text = text[:position] + copy + copy + text[end:]
    return text


compose_texts = st.one_of(compose_documents(), mutated(compose_documents()))


@pytest.fixture(scope="module")
def project_directory(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-compose")


def load(directory: Path, *texts: str) -> compose.ComposeProject:
    files = []
    for index, text in enumerate(texts):
        path = directory / f"compose{index}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        files.append(path)
    return compose.load_project(files, process_environment=ENVIRONMENT)


def check_project(project: compose.ComposeProject) -> None:
    """What a loaded project promises the audit's rules and reports."""
    assert project.name == compose.normalize_project_name(project.name)
    for mapping in project.mappings():
        assert 0 <= mapping.container_port <= spec.MAX_PORT
        assert mapping.protocol in spec.PROTOCOLS
        assert mapping.host_port is None or isinstance(mapping.host_port, int | str)
        if mapping.host_ip is not None:
            ipaddress.ip_address(mapping.host_ip)
    for finding in project.findings:
        assert finding.rule in ("invalid-port-spec", "unset-variable", "incomplete-audit")
        assert finding.location is not None and finding.location.line >= 1


@fuzz(120)
@given(texts=st.lists(compose_texts, min_size=1, max_size=2))
@example(texts=["services:\n  a:\n    ports: [!!int [1], !!float {}, !!bool [x]]\n"])
@example(texts=["services:\n  a:\n    ports: [!!timestamp 2020-13-01]\n"])
@example(texts=["services:\n  a:\n    ports: [" + "1" * 5000 + "]\n"])
@example(texts=['services:\n  a:\n    ports: ["' + "${A:-" * 2000 + "1}" + "}" * 1999 + '"]\n'])
@example(texts=["services: !reset\n", "services: !override {a: {ports: [80]}}\n"])
def test_load_project_fails_only_with_config_error(project_directory, texts):
    """Any compose files (grammar-built, with tags, anchors, aliases, merge keys, and mutated
    into invalid YAML) load into a project whose mappings are in range, or fail with
    `ConfigError`: never a traceback."""
    try:
        project = load(project_directory, *texts)
    except errors.ConfigError as exc:
        # One line for people: whatever the file holds, no control character reaches it.
        assert str(exc) and not untrusted.has_control_characters(str(exc)), repr(exc)
        return
    check_project(project)


@fuzz(60)
@given(data=st.binary(max_size=300))
@example(data=b"\xff\xfe\x00")
@example(data=b"services:\n  a:\n    ports: ['\xc3\x28']\n")
def test_load_project_of_random_bytes_fails_only_with_config_error(project_directory, data):
    """A compose file of random bytes (not UTF-8, NULs, a BOM) loads or is a `ConfigError`."""
    path = project_directory / "bytes.yaml"
    path.write_bytes(data)
    try:
        check_project(compose.load_project([path], process_environment=ENVIRONMENT))
    except errors.ConfigError:
        pass


# --- bounded memory -----------------------------------------------------------------------------


def test_load_project_stops_a_port_range_bomb_at_the_bound(project_directory):
    """Two thousand `0-65535:0-65535` entries would be 131 million mappings (tens of GB): the
    loader refuses the file at the entry that passes `MAX_EXPANDED_PORTS` (the second one),
    with a `ConfigError`, without reading the rest."""
    text = "services:\n  a:\n    ports:\n" + '      - "0-65535:0-65535"\n' * 2000
    started = time.monotonic()
    with pytest.raises(errors.ConfigError, match="line 5: more than 100,000 ports once the port"):
        load(project_directory, text)
    assert time.monotonic() - started < 20


def test_load_project_memory_up_to_the_bound_stays_bounded(project_directory, monkeypatch):
    """Memory grows with the ports expanded before the bound stops the file: measured with
    tracemalloc under a bound of 10,000 (fast to reach), then scaled to the real bound plus
    the one entry that may cross it (65,536 ports), it stays under 160 MiB."""
    monkeypatch.setattr(compose, "MAX_EXPANDED_PORTS", 10_000)
    text = "services:\n  a:\n    ports:\n" + '      - "1000-1999:1000-1999"\n' * 2000
    peak, outcome = peak_memory(lambda: load(project_directory, text))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "line 14: more than 10,000 ports" in str(outcome)
    per_port = peak / 11_000
    projected = per_port * (100_000 + 65_536)
    assert projected < 160 * MIB, f"{per_port:.0f} bytes a port: {projected / MIB:.0f} MiB"


def test_load_project_counts_exposed_ranges_repeated_by_an_alias(project_directory, monkeypatch):
    """An alias repeating one `expose:` range in a thousand services counts once per service:
    the bound stops it at the service that passes it, in small memory."""
    monkeypatch.setattr(compose, "MAX_EXPANDED_PORTS", 10_000)
    services = "".join(f"  s{index}: {{expose: *r}}\n" for index in range(1000))
    text = 'x-r: &r ["1000-1999/udp"]\nservices:\n' + services
    peak, outcome = peak_memory(lambda: load(project_directory, text))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "more than 10,000 ports" in str(outcome)
    assert peak < 16 * MIB, f"peak {peak / MIB:.0f} MiB"


def test_load_project_refuses_an_alias_bomb_in_bounded_memory(project_directory):
    """A billion-laughs document (10 levels of 10 aliases) fails at once with `ConfigError`
    instead of building 10^10 values."""
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 11):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    text = "\n".join(lines) + "\nservices:\n  a:\n    ports: *l10\n"
    peak, outcome = peak_memory(lambda: load(project_directory, text))

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "aliases" in str(outcome)
    assert peak < 16 * MIB, f"peak {peak / MIB:.0f} MiB"


def test_load_project_refuses_a_huge_file_reading_only_its_bound(project_directory):
    """A compose file past `MAX_COMPOSE_FILE_BYTES` is refused having read only that much."""
    path = project_directory / "huge.yaml"
    with path.open("wb") as stream:
        stream.write(b"# " + b"x" * (16 * MIB) + b"\n")
    peak, outcome = peak_memory(
        lambda: compose.load_project([path], process_environment=ENVIRONMENT)
    )

    assert isinstance(outcome, errors.ConfigError), outcome
    assert "larger than" in str(outcome)
    assert peak < compose.MAX_COMPOSE_FILE_BYTES + 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_load_project_refuses_deep_nesting_in_bounded_memory(project_directory):
    """YAML nested 100,000 deep fails with `ConfigError` in bounded memory, and a port entry
    whose variables nest 1,000 deep is an invalid-port-spec finding, not a RecursionError."""
    peak, outcome = peak_memory(lambda: load(project_directory, "a: " + "[" * 100_000))
    assert isinstance(outcome, errors.ConfigError), outcome
    assert peak < 64 * MIB, f"peak {peak / MIB:.0f} MiB"

    entry = "${A:-" * 1000 + "80" + "}" * 1000
    project = load(project_directory, f"services:\n  a:\n    ports: ['{entry}']\n")
    assert [finding.rule for finding in project.findings] == ["invalid-port-spec"]
    assert "nested more than" in project.findings[0].message
