"""Fixtures for the port-audit unit tests."""

from __future__ import annotations

import pytest

from opskit.log import configure_logging


@pytest.fixture(autouse=True)
def logs_to_the_current_stderr():
    """Point structlog at the current stderr before each test.

    A CliRunner run configures logging onto its own captured stream and closes it; without
    this, the next test that logs a warning would write to a closed file.
    """
    configure_logging(0)
    yield
    configure_logging(0)
