"""S3 faults, injected by a loopback proxy in front of moto_server, against the real CLI.

`opskit volume backup|restore|list` run as a user runs them, with AWS_ENDPOINT_URL pointing at
the fault proxy (tests/faults/s3_proxy.py); every check of what was left behind asks moto_server
directly. The promises of issue 12: transient faults of every kind on every kind of request end
in success, with the data restored exactly; persistent ones end in a clean abort (exit 1, one
`error:` line, no listed backup, no open multipart upload, no staging object, nothing stored);
a restore that cannot read its archive leaves the target as it was; slow answers are waited
for, not abandoned and resent.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.faults.s3_proxy import Fault, FaultProxy, start_proxy
from tests.integration import trees
from tests.integration.opskit_cli import (
    assert_failed_with_one_line,
    describe,
    helpers_using,
    list_backups,
    run_opskit,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PIECE_SIZE = 5 * MiB  # opskit's default part size (README: "Streaming, part size and memory")
PREFIX = "faults"
INDEX = f"{PREFIX}/index/records.json"
STAGING = f"{PREFIX}/.opskit-staging/"
# Persistent faults: 3 attempts per request (AWS_MAX_ATTEMPTS, which opskit honours), so that a
# clean abort takes seconds rather than botocore's backoff over opskit's 10 attempts.
FEW_ATTEMPTS = {"AWS_MAX_ATTEMPTS": "3"}
# No run may wait on a long default timeout (botocore's 60 s read timeout, opskit's 30 s wait for
# uploads still on the wire): each is killed, and the test failed, past this.
RUN_TIMEOUT = 60.0
ABORT_SECONDS = 30.0  # a persistent fault is reported within this
SLOW_DELAY = 0.4  # seconds each slow answer takes beyond the real one
METADATA = r"/[^/]+-\d{8}T\d{6}Z-[^/]*\.json$"  # a backup's ID.json, not index/records.json
ARCHIVE = r"\.tar\.zst$"
# Lines another opskit may print on any run: the clean-up of a killed run (other tests kill
# opskit on purpose, on the same engine). They are not this run's error.
FOREIGN_CLEANUP = re.compile(r"^\S+ \[warning\s*\] .*a killed opskit")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_volumes(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Names of volumes made for the whole module; removed at its end."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            docker_client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass


def _module_volume(docker_client: docker.DockerClient, names: list[str], kind: str) -> str:
    name = f"opskit-test-faults-{kind}-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(name)
    names.append(name)
    trees.populate_tricky_tree(docker_client, name)
    return name


@pytest.fixture(scope="module")
def large_volume(docker_client, module_volumes) -> tuple[str, trees.Snapshot]:
    """The tricky tree, 8 MiB of random data and 1.3 MiB of text logs: an archive of two parts
    of 5 MiB. Returns (name, snapshot)."""
    name = _module_volume(docker_client, module_volumes, "large")
    trees.run_in_tree(
        docker_client,
        name,
        "set -e\nmkdir -p bulk logs\n"
        f"head -c {5 * MiB} /dev/urandom > bulk/random-1.bin\n"
        f"head -c {3 * MiB} /dev/urandom > bulk/random-2.bin\n"
        "i=0; while [ $i -lt 30000 ]; do"
        ' echo "2026-12-02T07:00:00Z app[$i]: request served in $((i % 97)) ms"; i=$((i+1));'
        " done > logs/app.log\n",
    )
    snapshot = trees.snapshot(docker_client, name)
    trees.assert_is_tricky(snapshot)
    assert snapshot.entries["logs/app.log"].size > MiB
    return name, snapshot


@pytest.fixture(scope="module")
def small_volume(docker_client, module_volumes) -> str:
    """The tricky tree alone: its archive is smaller than one piece, a single PutObject."""
    return _module_volume(docker_client, module_volumes, "small")


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto_server, with no faults yet."""
    with start_proxy(s3_endpoint) as running:
        yield running


class Store:
    """A bucket and prefix, reached through the proxy by opskit and directly by the checks."""

    def __init__(self, bucket: str, client, proxy: FaultProxy) -> None:
        self.bucket = bucket
        self.client = client
        self.proxy = proxy
        self.url = f"s3://{bucket}/{PREFIX}"

    def through_proxy(self, *extra: dict[str, str]) -> dict[str, str]:
        environment = {"AWS_ENDPOINT_URL": self.proxy.endpoint}
        for variables in extra:
            environment.update(variables)
        return environment

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))

    def uploads(self) -> list[str]:
        response = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [f"{upload['Key']} ({upload['UploadId']})" for upload in response.get("Uploads", [])]

    def assert_nothing_left(self, result: subprocess.CompletedProcess[str]) -> None:
        """On the real server: no open multipart upload, no object (so no staging object),
        and `opskit volume list --json` lists no backup."""
        __tracebackhide__ = True
        assert self.uploads() == [], f"open multipart uploads left\n{describe(result)}"
        assert self.keys() == [], f"objects left\n{describe(result)}"
        assert list_backups(self.url) == [], f"a backup is listed\n{describe(result)}"

    def assert_holds_exactly(self, record: dict, parts: int) -> None:
        """The store holds the backup's archive (in `parts` parts), its metadata and the record
        index, and nothing else: no open upload, no staging object, no stray object."""
        __tracebackhide__ = True
        archive = f"{PREFIX}/{record['archive']}"
        assert self.uploads() == [], f"open multipart uploads left; {self.proxy.summary()}"
        keys = self.keys()
        assert keys == sorted([archive, f"{PREFIX}/{record['id']}.json", INDEX]), keys
        assert not any(key.startswith(STAGING) for key in keys)
        etag = self.client.head_object(Bucket=self.bucket, Key=archive)["ETag"].strip('"')
        assert etag.endswith(f"-{parts}"), f"archive ETag {etag}: not {parts} parts"

    def archive_sha256(self, record: dict) -> str:
        key = f"{PREFIX}/{record['archive']}"
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return hashlib.sha256(body).hexdigest()


@pytest.fixture
def store(s3_env, s3_bucket: str, s3_client, proxy: FaultProxy) -> Store:
    """A fresh bucket, its proxy, and the environment (s3_env) that points opskit at moto."""
    return Store(s3_bucket, s3_client, proxy)


# -- running opskit ----------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI (failing the test past RUN_TIMEOUT); `.elapsed` is its wall time."""
    started = time.monotonic()
    result = run_opskit(*args, env=env, timeout=RUN_TIMEOUT)
    result.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return result


def _backup(store: Store, volume: str, *extra_env: dict[str, str]):
    arguments = ("volume", "backup", volume, "--to", store.url, "--json")
    return _run(*arguments, env=store.through_proxy(*extra_env))


def _restore(
    store: Store, source: str, into: str, *options: str, env: dict[str, str] | None = None
):
    arguments = ("volume", "restore", source, "--from", store.url, "--into", into, *options)
    return _run(*arguments, env=store.through_proxy(env or {}))


def _list(store: Store):
    return _run("volume", "list", "--from", store.url, "--json", env=store.through_proxy())


def _json(result: subprocess.CompletedProcess[str]):
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    return json.loads(result.stdout)


def _without_foreign_cleanup(result: subprocess.CompletedProcess[str]):
    lines = [line for line in result.stderr.splitlines() if not FOREIGN_CLEANUP.match(line)]
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout, "\n".join(lines) + "\n"
    )


def _assert_clean_error(result: subprocess.CompletedProcess[str], *words: str, **options) -> str:
    """Exit 1, no traceback, one `error:` line on stderr with `words`, within ABORT_SECONDS."""
    __tracebackhide__ = True
    line = assert_failed_with_one_line(_without_foreign_cleanup(result), *words, **options)
    assert result.elapsed < ABORT_SECONDS, f"took {result.elapsed:.1f} s\n{describe(result)}"
    return line


def _parts_of(record: dict) -> int:
    return -(-record["size"] // PIECE_SIZE)


# -- transient faults: success, exact data ------------------------------------------------------


@pytest.mark.parametrize("fault_kind", ["error500", "reset", "reset-mid-body"])
def test_transient_faults_on_every_request_kind_end_in_success(
    fault_kind, store: Store, large_volume, docker_client, resources, unique_name
) -> None:
    """The first CreateMultipartUpload, the first two UploadParts, the first Complete and the
    first metadata PutObject fail with `fault_kind`; then the first GET of the metadata and of
    the archive in the restore, and of the metadata in the list. Every fault is injected (the
    proxy counts them); backup, restore and list succeed; the restored tree is exact; the store
    holds the backup's three objects and no open multipart upload (the upload a lost create
    answer started is aborted)."""
    source, expected = large_volume
    proxy = store.proxy
    proxy.add(
        Fault(fault_kind, "create"),
        Fault(fault_kind, "part", times=2),
        Fault(fault_kind, "complete"),
        Fault(fault_kind, "put", key_pattern=METADATA),
    )
    record = _json(_backup(store, source))
    parts = _parts_of(record)
    assert parts == 2, record
    for kind, times in (("create", 1), ("part", 2), ("complete", 1), ("put", 1)):
        assert proxy.injected[(kind, fault_kind)] == times, proxy.summary()
    assert len(proxy.requests("part")) >= parts + 2, proxy.summary()  # the faulted ones resent
    # A reset after the server acted leaves the upload of the lost first create: aborted.
    lost_uploads = 0 if fault_kind == "error500" else 1
    assert len(proxy.requests("abort")) == lost_uploads, proxy.summary()
    store.assert_holds_exactly(record, parts)

    # Without the record index, restore and list read the metadata object itself.
    store.client.delete_object(Bucket=store.bucket, Key=INDEX)
    proxy.clear()
    proxy.add(
        Fault(fault_kind, "get", key_pattern=METADATA),
        Fault(fault_kind, "get", key_pattern=ARCHIVE),
    )
    into = resources.track_volume(f"{unique_name}-restored")
    restored = _json(_restore(store, source, into, "--json"))
    assert restored["backup"]["id"] == record["id"]
    assert proxy.injected[("get", fault_kind)] == 2, proxy.summary()
    trees.assert_same_tree(expected, trees.snapshot(docker_client, into), "restored volume")
    assert helpers_using(docker_client, into) == []

    proxy.clear()
    proxy.add(Fault(fault_kind, "get", key_pattern=METADATA))
    listed = _json(_list(store))
    assert [entry["id"] for entry in listed] == [record["id"]]
    assert listed[0]["sha256"] == record["sha256"]
    assert proxy.injected[("get", fault_kind)] == 1, proxy.summary()


def test_transient_reset_of_a_small_archive_put_ends_in_success(store: Store, small_volume) -> None:
    """An archive smaller than one piece goes up in a single PutObject; the server stores the
    first attempt but its answer is lost to a reset. The retry succeeds, no multipart upload is
    made, and the stored archive has the sha256 the metadata records."""
    store.proxy.add(Fault("reset", "put", key_pattern=ARCHIVE))
    record = _json(_backup(store, small_volume))
    assert record["size"] < PIECE_SIZE
    assert store.proxy.injected[("put", "reset")] == 1, store.proxy.summary()
    assert len(store.proxy.requests("put", ARCHIVE)) == 2, store.proxy.summary()
    assert store.proxy.seen["create"] == 0
    assert store.uploads() == []
    assert store.archive_sha256(record) == record["sha256"]
    assert store.keys() == sorted(
        [f"{PREFIX}/{record['archive']}", f"{PREFIX}/{record['id']}.json", INDEX]
    )


# -- slow answers: waited for, never resent ----------------------------------------------------


def test_slow_answers_to_every_request_kind_are_waited_for(
    store: Store, large_volume, docker_client, resources, unique_name
) -> None:
    """Every create, part, complete, PutObject and GET answer comes SLOW_DELAY late (half before
    the status line, half trickled over the body): backup, restore and list succeed, and no
    request was sent twice (botocore waited rather than timing out and retrying)."""
    source, expected = large_volume
    proxy = store.proxy
    for kind in ("create", "part", "complete", "put", "get"):
        proxy.add(Fault("slow", kind, times=None, delay=SLOW_DELAY))
    record = _json(_backup(store, source))
    parts = _parts_of(record)
    seen = proxy.seen
    assert (seen["create"], seen["part"], seen["complete"]) == (1, parts, 1), proxy.summary()
    assert proxy.injected[("part", "slow")] == parts
    assert len(proxy.requests("put")) == proxy.injected[("put", "slow")] >= 2  # metadata, index
    store.assert_holds_exactly(record, parts)

    proxy.forget()
    into = resources.track_volume(f"{unique_name}-restored")
    _json(_restore(store, source, into, "--json"))
    assert len(proxy.requests("get", ARCHIVE)) == 1, proxy.summary()
    assert proxy.injected[("get", "slow")] >= 2, proxy.summary()  # the index and the archive
    trees.assert_same_tree(expected, trees.snapshot(docker_client, into), "restored volume")
    assert [entry["id"] for entry in _json(_list(store))] == [record["id"]]


# -- persistent faults: a clean abort -----------------------------------------------------------

# Every request kind of a backup and every failing fault kind at least once, not the cross
# product (each case is a backup run of its own; see the README's table). `slow` never fails:
# the test above.
PERSISTENT_BACKUP_FAULTS = [
    # The server creates an upload at every attempt; none of the answers arrives.
    ("create", "reset", None),
    # Every part's answer loses its headers (no ETag).
    ("part", "reset-mid-body", None),
    # The server completes the archive at the first attempt; no answer arrives.
    ("complete", "reset", None),
    ("complete", "reset-mid-body", None),
    # The archive is complete; its metadata cannot be written.
    ("put", "error500", METADATA),
    # A small archive's single PutObject.
    ("put", "reset", ARCHIVE),
]


@pytest.mark.parametrize(
    ("request_kind", "fault_kind", "key_pattern"),
    PERSISTENT_BACKUP_FAULTS,
    ids=[
        f"{kind}{'-small' if pattern == ARCHIVE else ''}-{fault}"
        for kind, fault, pattern in PERSISTENT_BACKUP_FAULTS
    ],
)
def test_persistent_fault_aborts_the_backup_cleanly(
    request_kind, fault_kind, key_pattern, store: Store, large_volume, small_volume, docker_client
) -> None:
    """Every attempt of one request kind fails: exit 1 within seconds, one `error:` line naming
    the bucket, no traceback, every attempt faulted; on the real server nothing is listed and
    nothing is left (no object, no open multipart upload, no staging object); no helper
    container is left."""
    source = small_volume if key_pattern == ARCHIVE else large_volume[0]
    fault = Fault(fault_kind, request_kind, times=None, key_pattern=key_pattern)
    store.proxy.add(fault)
    result = _backup(store, source, FEW_ATTEMPTS)
    _assert_clean_error(result, store.bucket)
    assert fault.matched >= 3, store.proxy.summary()
    store.assert_nothing_left(result)
    assert helpers_using(docker_client, source) == []


def test_persistent_get_fault_fails_the_restore_and_leaves_the_target_untouched(
    store: Store, large_volume, docker_client, resources, unique_name
) -> None:
    """Every GET of the archive is reset (after the server answered): the restore, with
    --force onto a non-empty volume, exits 1 with one `error:` line naming the archive, after
    the notice of its safety backup; the target's tree is exactly as before (no staging
    directory or journal left in it) and no helper container is left. The safety backup it
    named is listed, as a backup of the target."""
    source, _ = large_volume
    record = _json(_run("volume", "backup", source, "--to", store.url, "--json", env={}))
    target = resources.volume(f"{unique_name}-target")
    trees.populate_files(docker_client, target, {"keep/me.txt": "old contents\n", "x": "y\n"})
    before = trees.snapshot(docker_client, target)
    fault = Fault("reset", "get", times=None, key_pattern=re.escape(record["archive"]))
    store.proxy.add(fault)

    result = _restore(store, source, target, "--force", "--backup", record["id"], env=FEW_ATTEMPTS)

    _assert_clean_error(result, record["archive"], notices=("saved the current",))
    assert fault.matched >= 3, store.proxy.summary()
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "restore target")
    assert helpers_using(docker_client, target) == []
    safety_id = re.search(r"as backup (\S+)", result.stderr).group(1)
    safety = [entry for entry in list_backups(store.url) if entry["id"] == safety_id]
    assert [entry["source"] for entry in safety] == [target], result.stderr
