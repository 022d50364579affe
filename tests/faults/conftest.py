"""Fixtures of the fault suite: a source worth striking mid-way, its backup, a target."""

from __future__ import annotations

import uuid

import pytest

from tests.integration import trees
from tests.integration.opskit_cli import backup

# Top-level entries make the swap's moves take long enough to be struck mid-way.
MANY_ENTRIES = "seq 1 1000 | sed 's/^/entry-/' | xargs touch"


@pytest.fixture(scope="module")
def source(docker_client):
    """24 MiB of random data in 2 files, 1000 top-level entries and a small file."""
    name = f"opskit-test-faults-{uuid.uuid4().hex[:10]}"
    docker_client.volumes.create(name)
    try:
        trees.populate_random(docker_client, name, megabytes=24, files=2)
        trees.run_in_tree(docker_client, name, f"set -e; {MANY_ENTRIES}; echo v2 > README")
        yield name
    finally:
        for container in docker_client.containers.list(all=True, filters={"volume": name}):
            container.remove(force=True)
        docker_client.volumes.get(name).remove(force=True)


@pytest.fixture(scope="module")
def stored(source, tmp_path_factory, docker_client):
    """The source backed up once (gzip, so that unpacking takes a while); returns (store,
    record, the source's tree)."""
    store = tmp_path_factory.mktemp("faults") / "store"
    record = backup(source, store, "--compress", "gzip")
    return store, record, trees.snapshot(docker_client, source)


@pytest.fixture
def old_target(docker_client, resources, unique_name):
    """A target with contents of its own (a file and 200 more in a directory); returns it and
    its tree."""
    target = resources.volume(f"{unique_name}-target")
    trees.run_in_tree(
        docker_client, target, "set -e; echo old > old-only.txt; mkdir many; cd many; "
        "seq 1 200 | xargs touch"
    )  # fmt: skip
    return target, trees.snapshot(docker_client, target)
