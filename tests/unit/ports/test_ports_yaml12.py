"""The compose YAML loader: YAML 1.2 scalars as go-yaml v3 reads them, and line numbers."""

from __future__ import annotations

import math
import time

import pytest

from opskit import errors
from opskit.ports import yaml12
from opskit.ports.yaml12 import RESET, LineDict, LineList, Override


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the YAML 1.1 traps: base 60, yes/no/on/off, timestamps
        ("22:22", "22:22"),
        ("1:30:00", "1:30:00"),
        ("190:20:30.15", "190:20:30.15"),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("Y", "Y"),
        ("2001-12-14", "2001-12-14"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("=", "="),
        # YAML 1.2 core schema
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("null", None),
        ("~", None),
        ("", None),
        ("80", 80),
        ("-1", -1),
        ("+80", 80),
        ("0x50", 80),
        ("0o17", 15),
        ("0b101", 5),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("-.inf", float("-inf")),
        # go-yaml v3 compatibility: 1.1-style octal and underscores still read as numbers
        ("017", 15),
        ("1_000", 1000),
        ("08", 8.0),
        # strings
        ("8080:80", "8080:80"),
        ("127.0.0.1:8080:80", "127.0.0.1:8080:80"),
        ("80/udp", "80/udp"),
        ("_80", "_80"),
        ("0x", "0x"),
        ("web", "web"),
    ],
)
def test_plain_scalars_resolve_like_compose(text: str, expected):
    value = yaml12.load_yaml(f"value: {text}\n", "test.yaml")["value"]
    assert value == expected
    assert type(value) is type(expected)


def test_nan_reads_as_float():
    assert math.isnan(yaml12.load_yaml("value: .nan\n", "test.yaml")["value"])


def test_quoted_scalars_stay_strings():
    document = yaml12.load_yaml("a: '80'\nb: \"true\"\nc: !!str 22\n", "test.yaml")
    assert document == {"a": "80", "b": "true", "c": "22"}


def test_sexagesimal_port_is_a_string_not_1342():
    document = yaml12.load_yaml("ports:\n  - 22:22\n  - 8080:80\n", "test.yaml")
    assert document["ports"] == ["22:22", "8080:80"]


def test_mappings_and_lists_keep_positions():
    text = "services:\n  web:\n    ports:\n      - 80:80\n      - target: 443\n"
    document = yaml12.load_yaml(text, "test.yaml")
    services = document["services"]
    assert isinstance(services, LineDict)
    assert services.key_positions["web"] == (2, 3)
    ports = services["web"]["ports"]
    assert isinstance(ports, LineList)
    assert ports.positions == [(4, 9), (5, 9)]
    assert ports[1].position == (5, 9)
    assert ports[1].value_positions["target"] == (5, 17)


def test_merge_keys_work_and_explicit_keys_win():
    text = (
        "x-base: &base\n  ports: ['80:80']\n  network_mode: host\n"
        "web:\n  <<: *base\n  network_mode: bridge\n"
    )
    document = yaml12.load_yaml(text, "test.yaml")
    assert document["web"] == {"ports": ["80:80"], "network_mode": "bridge"}
    assert document["web"].value_positions["ports"] == (2, 10)


def test_reset_and_override_tags():
    text = "a: !reset []\nb: !reset null\nc: !override ['80:80']\nd: !override host\n"
    document = yaml12.load_yaml(text, "test.yaml")
    assert document["a"] is RESET
    assert document["b"] is RESET
    assert isinstance(document["c"], Override) and document["c"].value == ["80:80"]
    assert document["c"].value.positions == [(3, 15)]
    assert document["d"].value == "host"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "test.yaml line 2: mapping key 'a' already defined at line 1"),
        ("a: [1\n", "test.yaml line 2"),
        ("a: !unknown 1\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "test.yaml line 2"),
        ("a:\n\t- 1\n", "test.yaml line 2"),
    ],
)
def test_malformed_yaml_is_a_config_error_with_the_line(text: str, message: str):
    with pytest.raises(errors.ConfigError, match=message):
        yaml12.load_yaml(text, "test.yaml")


def test_empty_document_is_none():
    assert yaml12.load_yaml("# nothing\n", "test.yaml") is None


@pytest.mark.parametrize(
    ("text", "tag_suffix"),
    [("22:22", "str"), ("0x1F", "int"), ("1.0", "float"), ("True", "bool"), ("~", "null")],
)
def test_resolve_plain_scalar_tags(text: str, tag_suffix: str):
    tag, _ = yaml12.resolve_plain_scalar(text)
    assert tag.endswith(f":{tag_suffix}")


# -- alias bombs: bounded, fast, one line -----------------------------------------------------


def _list_bomb(levels: int = 12) -> str:
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int = 12) -> str:
    lines = ["m0: &m0 {" + ", ".join(f"a{index}: 1" for index in range(10)) + "}"]
    for level in range(1, levels + 1):
        pairs = ", ".join(f"k{index}: {{<<: *m{level - 1}}}" for index in range(10))
        lines.append(f"m{level}: &m{level} {{{pairs}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bomb", [_list_bomb, _merge_bomb])
def test_load_yaml_refuses_an_alias_bomb_quickly(bomb):
    started = time.monotonic()

    with pytest.raises(errors.ConfigError, match="compose.yaml: more than 1,000,000 values"):
        yaml12.load_yaml(bomb(), "compose.yaml")

    assert time.monotonic() - started < 5


def test_load_yaml_allows_a_few_levels_of_aliases():
    document = yaml12.load_yaml(_list_bomb(levels=4), "compose.yaml")

    assert len(document["x4"]) == 10


def test_load_yaml_refuses_a_recursive_alias():
    with pytest.raises(errors.ConfigError, match="refers to itself"):
        yaml12.load_yaml("a: &a [1, *a]\n", "compose.yaml")
