"""Several sources at once, `--all` with labels, and the opt-out labels (issue 9), on the real
engine, through the CLI as a user runs it."""

from __future__ import annotations

import json

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import (
    STOPPABLE_COMMAND,
    assert_failed_with_one_line,
    describe,
    list_backups,
    run_json,
    run_opskit,
)

pytestmark = pytest.mark.integration


def test_backup_several_sources_reports_each_and_fails_for_the_missing_one(
    docker_client, resources, unique_name, tmp_path
):
    first = resources.volume(f"{unique_name}-a")
    second = resources.volume(f"{unique_name}-b")
    trees.populate_files(docker_client, first, {"a.txt": "a\n"})
    trees.populate_files(docker_client, second, {"b.txt": "b\n"})
    missing = f"{unique_name}-missing"
    store = tmp_path / "backups"

    result = run_opskit("volume", "backup", first, missing, second, "--to", str(store), "--json")

    assert result.returncode == 1, describe(result)
    outcomes = json.loads(result.stdout)
    assert [(item["source"], item["status"]) for item in outcomes] == [
        (first, "backed-up"),
        (missing, "failed"),
        (second, "backed-up"),
    ]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and missing in errors[0], describe(result)
    assert sorted(record["source"] for record in list_backups(store)) == sorted([first, second])


def test_backup_several_sources_text_has_one_line_each(
    docker_client, resources, unique_name, tmp_path
):
    names = [resources.volume(f"{unique_name}-{index}") for index in range(2)]

    result = run_opskit("volume", "backup", *names, "--to", str(tmp_path / "b"))

    assert result.returncode == 0, describe(result)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("backed up volume ") for line in lines)


def test_backup_all_with_labels_takes_matching_volumes_and_skips_opt_outs(
    docker_client, resources, unique_name, tmp_path
):
    selector = {"com.example.run": unique_name}
    chosen = resources.volume(f"{unique_name}-db", labels={**selector, "tier": "db"})
    other_tier = resources.volume(f"{unique_name}-web", labels={**selector, "tier": "web"})
    opted_out = resources.volume(
        f"{unique_name}-cache", labels={**selector, "tier": "db", "opskit.backup": "false"}
    )
    by_container = resources.volume(f"{unique_name}-tmp", labels={**selector, "tier": "db"})
    resources.container(
        command=STOPPABLE_COMMAND,
        volumes={by_container: {"bind": "/tmp/x", "mode": "rw"}},
        labels={"opskit.backup": "false"},
    )
    store = tmp_path / "backups"

    outcomes = run_json(
        "volume", "backup", "--all", "--label", f"com.example.run={unique_name}",
        "--label", "tier=db", "--to", str(store),
    )  # fmt: skip

    status = {item["source"]: item["status"] for item in outcomes}
    assert status == {chosen: "backed-up", opted_out: "skipped", by_container: "skipped"}
    assert other_tier not in status
    reasons = {item["source"]: item["reason"] for item in outcomes}
    assert "opskit.backup=false" in reasons[opted_out]
    assert "container" in reasons[by_container]
    assert [record["source"] for record in list_backups(store)] == [chosen]


def test_backup_all_with_labels_matching_nothing_fails_with_one_line(unique_name, tmp_path):
    result = run_opskit(
        "volume", "backup", "--all", "--label", f"com.example.none={unique_name}",
        "--to", str(tmp_path / "b"),
    )  # fmt: skip

    assert_failed_with_one_line(result, "no volumes", unique_name)


def test_backup_names_and_all_together_is_a_usage_error(resources, unique_name, tmp_path):
    name = resources.volume(f"{unique_name}-a")

    result = run_opskit("volume", "backup", name, "--all", "--to", str(tmp_path / "b"))

    assert_failed_with_one_line(result, "--all", exit_code=2)


def test_backup_several_with_stop_containers_stops_a_shared_user_once(
    docker_client, resources, unique_name, tmp_path
):
    first = resources.volume(f"{unique_name}-a")
    second = resources.volume(f"{unique_name}-b")
    app = resources.container(
        command=STOPPABLE_COMMAND,
        volumes={first: {"bind": "/a", "mode": "rw"}, second: {"bind": "/b", "mode": "rw"}},
    )

    result = run_opskit(
        "volume", "backup", first, second, "--to", str(tmp_path / "b"), "--stop-containers"
    )

    assert result.returncode == 0, describe(result)
    assert result.stderr.count(f"stopping {app.name}") == 1, describe(result)
    app.reload()
    assert app.status == "running"


def test_backup_several_with_stop_containers_stops_each_user_only_for_its_own_source(
    docker_client, resources, unique_name, tmp_path
):
    """No service is down for the sum of all the backups: each is started again before the
    next source's users are stopped."""
    first = resources.volume(f"{unique_name}-a")
    second = resources.volume(f"{unique_name}-b")
    apps = [
        resources.container(command=STOPPABLE_COMMAND, volumes={v: {"bind": "/d", "mode": "rw"}})
        for v in (first, second)
    ]

    result = run_opskit(
        "volume", "backup", first, second, "--to", str(tmp_path / "b"), "--stop-containers"
    )

    assert result.returncode == 0, describe(result)
    lines = result.stderr.splitlines()
    restarted_first = next(i for i, line in enumerate(lines) if f"started {apps[0].name}" in line)
    stopping_second = next(i for i, line in enumerate(lines) if f"stopping {apps[1].name}" in line)
    assert restarted_first < stopping_second, describe(result)
