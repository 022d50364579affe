"""Loading the config file: valid files, every error at once with its place, YAML syntax errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opskit import errors
from opskit.config import load
from opskit.config.load import find_config_path, load_config, parse_config
from opskit.config.schema import DEFAULT_HELPER_IMAGE, DEFAULT_TARGET

VALID = """\
helper_image: registry.example.com/busybox:1.36
default_target: offsite
targets:
  offsite:
    url: s3://ops-backups/docker
    region: eu-west-1
    storage_class: STANDARD_IA
  local:
    url: /var/backups/opskit
"""


def test_parse_config_reads_a_valid_file():
    config = parse_config(VALID)

    assert config.helper_image == "registry.example.com/busybox:1.36"
    assert config.default_target == "offsite"
    assert config.targets["offsite"].url == "s3://ops-backups/docker"
    assert config.targets["offsite"].region == "eu-west-1"
    assert config.resolve_target("offsite").storage_class == "STANDARD_IA"
    assert config.resolve_target("/var/backups/opskit/").url == "/var/backups/opskit"
    assert config.resolve_target("/elsewhere").url == "/elsewhere"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_parse_config_of_an_empty_file_gives_the_defaults(text):
    config = parse_config(text)

    assert config.helper_image == DEFAULT_HELPER_IMAGE
    assert config.default_target == DEFAULT_TARGET
    assert config.targets == {}


def test_unknown_top_level_key_is_named_with_its_place():
    with pytest.raises(errors.ConfigError, match=r"at 'helper_imag'") as raised:
        parse_config("helper_imag: busybox\n", source="/etc/opskit/opskit.yaml")

    assert "/etc/opskit/opskit.yaml" in str(raised.value)
    assert raised.value.exit_code == 2


def test_unknown_nested_key_is_named_with_its_full_path():
    text = "targets:\n  offsite:\n    url: s3://b/p\n    regoin: eu-west-1\n"

    with pytest.raises(errors.ConfigError, match=r"at 'targets\.offsite\.regoin'"):
        parse_config(text)


def test_every_invalid_field_is_reported_at_once():
    text = "bogus: 1\ntargets:\n  offsite:\n    region: eu-west-1\n"

    with pytest.raises(errors.ConfigError) as raised:
        parse_config(text)

    message = str(raised.value)
    assert "at 'bogus'" in message
    assert "at 'targets.offsite.url'" in message  # the missing required field
    assert "\n" not in message, "the error must fit on one line"


def test_wrong_type_is_reported_with_its_place():
    with pytest.raises(errors.ConfigError, match=r"at 'targets\.offsite\.part_size'"):
        parse_config("targets:\n  offsite:\n    url: s3://b/p\n    part_size: big\n")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("helper_image: busybox\ntargets: [offsite\ndefault_target: x\n", 3),
        ("targets:\n  offsite:\n\turl: s3://b/p\n", 3),
        ("helper_image: busybox\n  default_target: x\n", 2),
    ],
    ids=["unclosed-bracket", "tab", "bad-indentation"],
)
def test_yaml_syntax_error_names_the_file_and_line(text, line):
    with pytest.raises(errors.ConfigError, match=rf"line {line}\b") as raised:
        parse_config(text, source="opskit.yaml")

    assert "opskit.yaml" in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_an_error(text):
    with pytest.raises(errors.ConfigError, match="mapping"):
        parse_config(text)


def test_load_config_reads_the_given_file(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_text(VALID)

    assert load_config(path).default_target == "offsite"


def test_load_config_names_the_file_in_errors(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_text("nope: 1\n")

    with pytest.raises(errors.ConfigError, match=str(path)):
        load_config(path)


def test_load_config_of_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_find_config_path_prefers_the_explicit_path(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSKIT_CONFIG", str(tmp_path / "from-env.yaml"))

    assert find_config_path(tmp_path / "given.yaml") == tmp_path / "given.yaml"


def test_find_config_path_uses_opskit_config(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSKIT_CONFIG", str(tmp_path / "from-env.yaml"))

    assert find_config_path(None) == tmp_path / "from-env.yaml"


def test_find_config_path_falls_back_to_the_first_existing_default(tmp_path, monkeypatch):
    monkeypatch.delenv("OPSKIT_CONFIG", raising=False)
    second = tmp_path / "second.yaml"
    second.write_text("")
    monkeypatch.setattr(load, "DEFAULT_CONFIG_PATHS", (tmp_path / "first.yaml", second))

    assert find_config_path(None) == second


def test_without_any_config_file_the_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.delenv("OPSKIT_CONFIG", raising=False)
    monkeypatch.setattr(load, "DEFAULT_CONFIG_PATHS", (tmp_path / "none.yaml",))

    assert find_config_path(None) is None
    assert load_config().helper_image == DEFAULT_HELPER_IMAGE


# -- bounded reads: huge, binary and alias-bomb configs fail fast with one line ---------------


def _alias_bomb(levels: int = 12) -> str:
    """The 'billion laughs': each level lists the previous one ten times."""
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"x{level}: &x{level} [" + ", ".join([f"*x{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_load_config_of_dev_zero_fails_fast_with_one_line():
    with pytest.raises(errors.ConfigError, match="config /dev/zero is larger than 1 MiB") as raised:
        load_config(Path("/dev/zero"))

    assert raised.value.exit_code == 2
    assert "\n" not in str(raised.value)


def test_load_config_of_a_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "opskit.yaml"
    path.write_bytes(b"helper_image: \xff\xfe\x00binary")

    with pytest.raises(errors.ConfigError, match="is not UTF-8 text") as raised:
        load_config(path)

    assert raised.value.exit_code == 2


def test_parse_config_refuses_an_alias_bomb_quickly():
    started = time.monotonic()

    with pytest.raises(errors.ConfigError, match="once its aliases are expanded"):
        parse_config("helper_image: busybox\nx-bomb:\n" + _indent(_alias_bomb()))

    assert time.monotonic() - started < 5


def test_parse_config_refuses_an_alias_to_its_own_container():
    with pytest.raises(errors.ConfigError, match="refers to itself"):
        parse_config("targets: &t\n  loop: *t\n")


def test_parse_config_allows_ordinary_aliases():
    text = "targets:\n  a: &common\n    url: s3://b/p\n    region: eu-west-1\n  b: *common\n"

    assert parse_config(text).targets["b"].region == "eu-west-1"


def test_keys_with_escape_codes_are_escaped_in_config_errors():
    with pytest.raises(errors.ConfigError) as raised:
        parse_config('"bad\\e[2Jkey": 1\n')

    assert "\x1b" not in str(raised.value)
    assert "\\x1b[2J" in str(raised.value)


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())
