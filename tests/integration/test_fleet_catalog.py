"""A fleet sharing one S3 target: each host backs up under its own prefix, a listing shows every
host, a host restores and verifies another's backup, and prune works on one host at a time.

The actions run in-process against moto_server on loopback and the real engine. Two hosts are
simulated on this machine by setting the host prefix our code takes for this machine
(`hosts.this_host`); everything else is real.
"""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from opskit import errors
from opskit.actions.backup import BackupRequest, run_backup
from opskit.actions.context import RunContext
from opskit.actions.list_backups import run_list_backups
from opskit.actions.prune import PruneRequest, run_prune
from opskit.actions.restore import RestoreRequest, run_restore
from opskit.actions.verify import VerifyRequest, run_verify
from opskit.config.load import parse_config
from opskit.config.schema import Config
from opskit.repository import catalog
from opskit.repository.retention import Policy
from opskit.storage import hosts, registry
from tests.integration import trees
from tests.integration.opskit_cli import wait_for_next_second

pytestmark = pytest.mark.integration


def keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


@pytest.fixture
def config(s3_env, s3_bucket: str) -> Config:
    """One target, `fleet`, on S3: host prefixes by default."""
    return parse_config(f"targets:\n  fleet:\n    url: s3://{s3_bucket}/fleet\n")


@pytest.fixture
def as_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make this machine's host prefix `name` from now on."""

    def become(name: str) -> None:
        monkeypatch.setattr(hosts, "this_host", lambda: name)

    return become


def back_up(config: Config, source: str, count: int = 1) -> list[catalog.BackupRecord]:
    with RunContext(config) as context:
        return [run_backup(BackupRequest(source, "fleet"), context) for _ in range(count)]


def ids(listing: list[catalog.BackupRecord]) -> list[str]:
    return [record.id for record in listing]


def test_hosts_share_a_target_and_each_reaches_the_others_backups(
    config, as_host, s3_bucket, s3_client, docker_client: docker.DockerClient, resources,
    unique_name,
) -> None:  # fmt: skip
    source = resources.volume(f"{unique_name}-app")
    trees.populate_files(docker_client, source, {"data/version.txt": "one\n"})
    as_host("host-a")
    (a_first,) = back_up(config, source)
    wait_for_next_second()
    trees.populate_files(docker_client, source, {"data/version.txt": "two on host-a\n"})
    a_tree = trees.snapshot(docker_client, source)
    (a_second,) = back_up(config, source)
    wait_for_next_second()
    trees.populate_files(docker_client, source, {"data/version.txt": "three on host-b\n"})
    as_host("host-b")
    b_backups = back_up(config, source, count=2)

    # Each host's objects are under its own prefix; nothing else is at the target's root.
    stored = keys(s3_client, s3_bucket)
    assert {key.split("/")[1] for key in stored} == {"host-a", "host-b"}
    for record in (a_first, a_second):
        assert f"fleet/host-a/{catalog.metadata_name(record.id)}" in stored
        assert record.location == f"s3://{s3_bucket}/fleet/host-a/{record.archive}"
    for record in b_backups:
        assert f"fleet/host-b/{record.archive}" in stored
    assert registry.fleet_hosts("fleet", config) == ["host-a", "host-b"]

    with RunContext(config) as context:
        own = run_list_backups("fleet", context)
        of_a = run_list_backups("fleet", context, host="host-a")
        fleet = run_list_backups("fleet", context, all_hosts=True)
    assert sorted(ids(own)) == sorted(ids(b_backups))
    assert ids(of_a) == [a_first.id, a_second.id]
    assert sorted(ids(fleet)) == sorted(ids([a_first, a_second, *b_backups]))
    assert ids(fleet)[:2] == [a_first.id, a_second.id]  # oldest first, across hosts
    assert {record.location.split("/")[4] for record in fleet} == {"host-a", "host-b"}
    assert all(record.hostname for record in fleet) and fleet.problems == []

    # Host B restores host A's latest backup: A's data, not B's own latest.
    restored = resources.track_volume(f"{unique_name}-from-a")
    with RunContext(config) as context:
        result = run_restore(RestoreRequest(source, "fleet", into=restored, host="host-a"), context)
    assert result.backup.id == a_second.id
    trees.assert_same_tree(a_tree, trees.snapshot(docker_client, restored), "host-a's backup")

    with RunContext(config) as context:
        verified = run_verify(VerifyRequest("fleet", volume=source, host="host-a"), context)
    assert [outcome.backup_id for outcome in verified.verifications] == [a_second.id]
    assert verified.ok, verified.failed

    # Prune works on one host's part: first B's own, then A's; the other host's stay.
    with RunContext(config) as context:
        pruned_own = run_prune(PruneRequest("fleet", Policy(last=1)), context)
        assert pruned_own.location == f"s3://{s3_bucket}/fleet/host-b"
        assert len(run_list_backups("fleet", context)) == 1
        assert ids(run_list_backups("fleet", context, host="host-a")) == [a_first.id, a_second.id]

        pruned_a = run_prune(PruneRequest("fleet", Policy(last=1), host="host-a"), context)
        assert [backup.id for backup in pruned_a.backups if backup.removed] == [a_first.id]
        assert ids(run_list_backups("fleet", context, host="host-a")) == [a_second.id]
        assert len(run_list_backups("fleet", context)) == 1


def test_the_targets_url_given_as_it_is_means_that_prefix_exactly(
    config, as_host, s3_bucket, s3_client, docker_client: docker.DockerClient, resources,
    unique_name,
) -> None:  # fmt: skip
    """A bare url names the place itself: one host's prefix, or the fleet's root, where a prune
    finds no backups of its own and leaves every host's alone."""
    source = resources.volume(f"{unique_name}-app")
    trees.populate_files(docker_client, source, {"a.txt": "a\n"})
    as_host("host-a")
    (record,) = back_up(config, source)
    root_url = f"s3://{s3_bucket}/fleet"

    with RunContext(config) as context:
        direct = run_list_backups(f"{root_url}/host-a", context)
        root = run_list_backups(root_url, context, all_hosts=True)
        pruned = run_prune(PruneRequest(root_url, Policy(last=1)), context)
    assert ids(direct) == [record.id]
    assert list(root) == [] and pruned.backups == [] and pruned.orphans == []
    assert f"fleet/host-a/{record.archive}" in keys(s3_client, s3_bucket)


def test_a_host_without_backups_lists_nothing_and_restores_not_found(
    config, as_host, unique_name
) -> None:
    as_host("host-b")
    source = f"{unique_name}-never-backed-up"
    with RunContext(config) as context:
        assert list(run_list_backups("fleet", context, host="host-z")) == []
        with pytest.raises(errors.NotFound, match="host-z"):
            run_restore(RestoreRequest(source, "fleet", host="host-z"), context)


def test_the_command_line_lists_the_fleet_and_restores_from_another_host(
    docker_client, resources, tmp_path
):
    """`--all-hosts` and `--host` as a user types them, on a local target with host prefixes
    (the other host's part is this host's, copied under another name: what a second machine
    writing to the shared target leaves)."""
    import shutil

    from tests.integration.opskit_cli import run_json, run_opskit

    shared = tmp_path / "shared"
    config = tmp_path / "opskit.yaml"
    config.write_text(f"targets:\n  fleet:\n    url: {shared}\n    host_prefix: true\n")
    environment = {"OPSKIT_CONFIG": str(config)}
    source = resources.volume()
    docker_client.containers.run(
        "busybox:stable", ["sh", "-c", "echo from-a > /data/file"], remove=True,
        volumes={source: {"bind": "/data"}},
    )  # fmt: skip
    backed_up = run_opskit("volume", "backup", source, "--to", "fleet", "--json", env=environment)
    assert backed_up.returncode == 0, backed_up.stderr
    (this_host,) = [entry.name for entry in shared.iterdir()]
    shutil.copytree(shared / this_host, shared / "host-a")

    everything = run_json("volume", "list", "--from", "fleet", "--all-hosts", env=environment)
    from_a = run_json("volume", "list", "--from", "fleet", "--host", "host-a", env=environment)
    target = resources.track_volume(f"{source}-from-a")
    restored = run_opskit(
        "volume", "restore", source, "--from", "fleet", "--host", "host-a", "--into", target,
        env=environment,
    )  # fmt: skip

    assert len(everything) == 2 and len(from_a) == 1, (everything, from_a)
    assert {record["location"].split("/")[-2] for record in everything} == {this_host, "host-a"}
    assert restored.returncode == 0, restored.stderr
    output = docker_client.containers.run(
        "busybox:stable", ["cat", "/data/file"], remove=True, volumes={target: {"bind": "/data"}}
    )
    assert output == b"from-a\n"
