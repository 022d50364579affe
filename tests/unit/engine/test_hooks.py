"""The pure parts of backup hooks: labels, timeouts, one-line descriptions."""

from __future__ import annotations

import pytest

from opskit import errors
from opskit.engine import hooks


def test_hook_command_reads_the_phase_label():
    labels = {hooks.PRE_LABEL: " pg_dump -f /d/dump.sql ", hooks.POST_LABEL: ""}
    assert hooks.hook_command(labels, "pre") == "pg_dump -f /d/dump.sql"
    assert hooks.hook_command(labels, "post") is None
    assert hooks.hook_command({}, "pre") is None


@pytest.mark.parametrize(
    ("text", "seconds"), [(None, 300.0), ("", 300.0), ("2.5", 2.5), ("60", 60.0)]
)
def test_hook_timeout_default_and_given(text, seconds):
    labels = {} if text is None else {hooks.TIMEOUT_LABEL: text}
    assert hooks.hook_timeout(labels) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan", "inf"])
def test_hook_timeout_refuses_what_is_not_a_positive_number(text):
    with pytest.raises(errors.UsageError):
        hooks.hook_timeout({hooks.TIMEOUT_LABEL: text})


def test_hook_result_describe_is_one_line_with_the_last_output_lines():
    result = hooks.HookResult("db", "pre", "x", 2, False, "a\nb\n\nc\nd\n", 0.1)
    assert not result.ok
    assert result.describe() == "pre hook of container db exited 2: b | c | d"


def test_hook_result_describe_a_timeout():
    result = hooks.HookResult("db", "post", "x", None, True, "", 5.0)
    assert result.describe() == "post hook of container db timed out after 5 s"
