"""Compose variable interpolation and .env files; cases follow compose-go's template tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit import errors
from opskit.ports import interpolate
from opskit.ports.interpolate import InterpolationError

VARIABLES = {"FOO": "first", "BAR": ""}


def lookup(name: str) -> str | None:
    return VARIABLES.get(name)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("foo", "foo"),
        ("$${foo}", "${foo}"),
        ("$$FOO", "$FOO"),
        ("a $ string", "a $ string"),
        ("^REGEX$", "^REGEX$"),
        ("$}", "$}"),
        ("$", "$"),
        ("$1", "$1"),
        ("$FOO-bar", "first-bar"),
        ("This $FOO var", "This first var"),
        ("This ${FOO} var", "This first var"),
        ("This ${missing} var", "This  var"),
        ("This ${BAR} var", "This  var"),
        ("ok ${missing:-def}", "ok def"),
        ("ok ${missing-def}", "ok def"),
        ("ok ${BAR:-def}", "ok def"),
        ("ok ${FOO:-def}", "ok first"),
        ("ok ${BAR-def}", "ok "),
        ("ok ${UNSET_VAR:+presence_value}", "ok "),
        ("ok ${UNSET_VAR+presence_value}", "ok "),
        ("ok ${FOO:+presence_value}", "ok presence_value"),
        ("ok ${FOO+presence_value}", "ok presence_value"),
        ("ok ${BAR+presence_value}", "ok presence_value"),
        ("ok ${BAR:+presence_value}", "ok "),
        ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
        ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
        ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
        (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
        (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
        ("ok ${UNSET_VAR-$FOO}", "ok first"),
        ("ok ${UNSET_VAR-${FOO}}", "ok first"),
        ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
        ("ok ${FOO:?err}", "ok first"),
        ("ok ${FOO?err}", "ok first"),
        ("ok ${BAR?err}", "ok "),
        ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
        ("${FOO?bar-baz}", "first"),
        ("${foo:-x}", "x"),
        ("${FOO:-a}}", "first}"),
        ("${FOO}:${FOO}", "first:first"),
    ],
)
def test_interpolate_like_compose(template: str, expected: str):
    assert interpolate.interpolate(template, lookup) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${", "invalid template"),
        ("${}", "invalid template"),
        ("${ }", "invalid template"),
        ("${ foo}", "invalid template"),
        ("${foo }", "invalid template"),
        ("${foo!}", "invalid template"),
        ("${1abc}", "invalid template"),
        (
            "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
            "^required variable UNSET_VAR is missing a value: Mandatory Variable Unset$",
        ),
        (
            "not ok ${BAR:?Mandatory Variable Empty}",
            "required variable BAR is missing a value: Mandatory Variable Empty",
        ),
        ("not ok ${UNSET_VAR:?}", "^required variable UNSET_VAR is missing a value$"),
        ("not ok ${UNSET_VAR?}", "^required variable UNSET_VAR is missing a value$"),
        ("${UNSET_VAR?bar-baz}", "missing a value: bar-baz"),
        ("${UNSET_VAR:?Mandatory ${FOO}}", "missing a value: Mandatory first"),
    ],
)
def test_interpolate_errors_like_compose(template: str, message: str):
    with pytest.raises(InterpolationError, match=message):
        interpolate.interpolate(template, lookup)


def test_unset_variables_are_reported_and_read_empty():
    unset: list[str] = []
    result = interpolate.interpolate("$A-${B}-${C:-c}-${FOO}", lookup, unset.append)
    assert result == "--c-first"
    assert unset == ["A", "B"]


def test_set_but_empty_variable_is_not_reported_as_unset():
    unset: list[str] = []
    assert interpolate.interpolate("${BAR}", lookup, unset.append) == ""
    assert unset == []


def test_process_environment_overrides_dotenv():
    lookup_both = interpolate.environment_lookup({"A": "dotenv", "B": "dotenv"}, {"A": "process"})
    assert (lookup_both("A"), lookup_both("B"), lookup_both("C")) == ("process", "dotenv", None)


def test_parse_env_text_forms():
    text = (
        "# comment\n"
        "\n"
        "export A=1\n"
        "B = spaced\n"
        'C="two\\nlines ${A}"\n'
        "D='literal ${A}'\n"
        "E=value # comment\n"
        "F=x#not-a-comment\n"
        "G: yaml style\n"
        'H="multi\nline"\n'
        "INHERITED\n"
        "I=${A}-${MISSING:-d}\n"
        "J=\n"
    )
    values = interpolate.parse_env_text(text, {"INHERITED": "from-process"})
    assert values == {
        "A": "1",
        "B": "spaced",
        "C": "two\nlines 1",
        "D": "literal ${A}",
        "E": "value",
        "F": "x#not-a-comment",
        "G": "yaml style",
        "H": "multi\nline",
        "INHERITED": "from-process",
        "I": "1-d",
        "J": "",
    }


def test_parse_env_text_expansion_prefers_process_environment():
    values = interpolate.parse_env_text("A=file\nB=${A}\n", {"A": "process"})
    assert values["B"] == "process"


@pytest.mark.parametrize(
    ("text", "message"),
    [('A="open\n', "line 1: unterminated"), ("OK=1\nBAD KEY=1\n", "line 2: invalid variable")],
)
def test_parse_env_text_rejects_bad_lines(text: str, message: str):
    with pytest.raises(ValueError, match=message):
        interpolate.parse_env_text(text, {})


def test_read_env_file_missing_is_config_error(tmp_path: Path):
    with pytest.raises(errors.ConfigError, match="cannot read env file"):
        interpolate.read_env_file(tmp_path / "nope.env", {})


def test_read_env_file_invalid_is_config_error(tmp_path: Path):
    path = tmp_path / "bad.env"
    path.write_text("A='open\n")
    with pytest.raises(errors.ConfigError, match="bad.env: line 1"):
        interpolate.read_env_file(path, {})
