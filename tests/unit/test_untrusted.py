"""Untrusted text is shown escaped: no control character reaches the terminal."""

from __future__ import annotations

import pytest

from opskit import untrusted
from opskit.cli import render


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pgdata-20261126T095132Z-ab12", "pgdata-20261126T095132Z-ab12"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("two\nlines\r", "two\\nlines\\r"),
        ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
        ("sep\u2028arator", "sep\\u2028arator"),
        ("données été 数据", "données été 数据"),
    ],
)
def test_printable_escapes_control_characters_only(text, shown):
    assert untrusted.printable(text) == shown
    assert render.printable(text) == shown


def test_printable_is_idempotent():
    once = untrusted.printable("\x1b[0m\n")

    assert untrusted.printable(once) == once
