"""Every example config in configs/ validates against the schema."""

from pathlib import Path

import pytest

from opskit.config.load import load_config

EXAMPLES = sorted((Path(__file__).parents[3] / "configs").glob("*.yaml"))


def test_examples_exist():
    assert EXAMPLES, "configs/ holds no example YAML"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_config_validates(path: Path):
    config = load_config(path)
    assert config.helper_image
