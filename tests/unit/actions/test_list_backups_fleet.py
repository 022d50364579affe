"""`run_list_backups` on a local target with host prefixes: one host's part, or every host's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from opskit import errors
from opskit.actions.context import RunContext
from opskit.actions.list_backups import run_list_backups
from opskit.config.load import parse_config
from opskit.process_owner import owner_token
from opskit.storage import hosts
from opskit.storage.local import PARTIAL_PREFIX
from tests.unit.actions.test_prune_action import write_backup


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared target's root: backups of host-a (two) and host-b (one); this is host-b."""
    root = tmp_path / "fleet"
    write_backup(root / "host-a", "app", 5)
    write_backup(root / "host-a", "db", 3)
    write_backup(root / "host-b", "app", 4)
    monkeypatch.setattr(hosts, "this_host", lambda: "host-b")
    return root


@pytest.fixture
def context(fleet: Path) -> RunContext:
    config = parse_config(
        f"targets:\n  shared:\n    url: {fleet}\n    host_prefix: true\n"
        f"  plain:\n    url: {fleet / 'host-a'}\n"
    )
    return RunContext(config)


def dead_partial(directory: Path) -> Path:
    """A partial file of a killed writer of this machine, in `directory`."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    partial = directory / f"{PARTIAL_PREFIX}{owner_token().split('+')[0]}+{finished.pid}+1+x"
    partial.write_bytes(b"partial")
    return partial


def test_run_list_backups_lists_this_hosts_part(context, fleet):
    listing = run_list_backups("shared", context)

    assert [record.source for record in listing] == ["app"]
    assert listing[0].location.startswith(str(fleet / "host-b") + "/")


def test_run_list_backups_of_a_host_lists_that_hosts_part(context, fleet):
    listing = run_list_backups("shared", context, host="host-a", volume="db")

    assert [record.source for record in listing] == ["db"]
    assert listing[0].location.startswith(str(fleet / "host-a") + "/")


def test_run_list_backups_of_all_hosts_is_one_listing_oldest_first(context, fleet):
    listing = run_list_backups("shared", context, all_hosts=True)

    assert [(record.source, Path(record.location).parent.name) for record in listing] == [
        ("app", "host-a"),
        ("app", "host-b"),
        ("db", "host-a"),
    ]
    of_app = run_list_backups("shared", context, volume="app", all_hosts=True)
    assert [Path(record.location).parent.name for record in of_app] == ["host-a", "host-b"]


def test_run_list_backups_of_all_hosts_names_each_problem_with_its_host(context, fleet):
    (fleet / "host-a" / "app-20261120T120000Z-ffff.json").write_text("{not json")

    listing = run_list_backups("shared", context, all_hosts=True)

    assert [problem.name for problem in listing.problems] == [
        "host-a/app-20261120T120000Z-ffff.json"
    ]
    assert len(listing) == 3


def test_run_list_backups_of_all_hosts_without_host_prefixes_lists_the_location(context):
    listing = run_list_backups("plain", context, all_hosts=True)

    assert [record.source for record in listing] == ["app", "db"]


def test_run_list_backups_removes_leftovers_of_this_hosts_part_only(context, fleet):
    own = dead_partial(fleet / "host-b")
    other = dead_partial(fleet / "host-a")

    run_list_backups("shared", context, host="host-a")
    assert own.exists() and other.exists()

    run_list_backups("shared", context, all_hosts=True)
    assert not own.exists()
    assert other.exists()


def test_run_list_backups_of_a_host_and_all_hosts_is_a_usage_error(context):
    with pytest.raises(errors.UsageError, match="cannot both"):
        run_list_backups("shared", context, host="host-a", all_hosts=True)


def test_run_list_backups_of_a_host_without_host_prefixes_is_a_usage_error(context, fleet):
    with pytest.raises(errors.UsageError, match="has no host prefixes"):
        run_list_backups(str(fleet), context, host="host-a")
