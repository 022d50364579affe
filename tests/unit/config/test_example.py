"""The example config is generated from the schema, up to date in configs/, and valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from opskit.config.example import generate_example
from opskit.config.load import load_config, parse_config
from opskit.config.schema import Config

CONFIGS = Path(__file__).parents[3] / "configs"


def test_the_example_file_is_the_generated_example():
    written = (CONFIGS / "opskit.example.yaml").read_text()

    assert written == generate_example(), (
        "configs/opskit.example.yaml is out of date: regenerate it with "
        "`opskit config example > configs/opskit.example.yaml`"
    )


def test_the_generated_example_validates_with_the_jobs_of_the_issue():
    config = parse_config(generate_example())

    job = config.jobs[0]
    assert (job.name, job.volumes, job.target, job.schedule) == (
        "nightly-db", ["pgdata"], "offsite", "daily at 02:30"
    )  # fmt: skip
    assert (job.compress, job.stop_containers) == ("zstd", True)
    assert job.verify_check is not None
    assert (job.verify_check.image, job.verify_check.cmd) == (
        "postgres:16", "pg_checksums --check -D /data/pgdata"
    )  # fmt: skip
    assert job.retention is not None
    assert (job.retention.keep_last, job.retention.keep_daily) == (3, 7)
    assert (job.retention.keep_weekly, job.retention.keep_monthly) == (4, 6)
    assert config.targets["local"].url == "/var/backups/opskit"
    offsite = config.targets["offsite"]
    assert (offsite.url, offsite.storage_class) == ("s3://acme-backups/prod", "STANDARD_IA")
    assert offsite.endpoint_url
    assert config.metrics.listen and config.notifications.webhook_url
    assert config.notifications.on == ["failure", "recovery"]


def test_every_top_level_key_appears_in_the_example():
    document = yaml.safe_load(generate_example())

    assert list(document) == list(Config.model_fields)


def test_every_description_appears_as_a_comment():
    text = " ".join(
        line.strip().removeprefix("# ")
        for line in generate_example().splitlines()
        if line.strip().startswith("#")
    )

    for name, field in Config.model_fields.items():
        assert field.description is not None, f"{name} has no description"
        assert " ".join(field.description.split()) in text


def test_the_example_lines_fit_the_width():
    too_long = [line for line in generate_example().splitlines() if len(line) > 100]

    assert too_long == []


def test_the_minimal_example_has_one_target_and_one_job():
    config = load_config(CONFIGS / "opskit.minimal.yaml")

    assert len(config.targets) == 1
    assert len(config.jobs) == 1
    assert config.jobs[0].target in config.targets
