"""Hostile archives (issue 8, "Hostile archives and hostile input"): someone who can write to the
store plants an archive, with a metadata file whose size and sha256 match it, and a restore must
create nothing outside the target, nothing through a symlink or hardlink the archive created,
and no device node unless asked. For both transfers, into a volume and into a host path: one
`error:` line naming the entry, exit 1, the target's live contents byte for byte as they were,
no staging directory and no helper left.

The archives are crafted with Python's tarfile (the stored archive is zstd, as opskit writes).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.integration import trees
from tests.integration.opskit_cli import (
    assert_failed_with_one_line,
    describe,
    helpers_using,
    remove_helpers_using,
    run_json,
    run_opskit,
)

pytestmark = pytest.mark.integration

SOURCE = "hostile-src"  # the source named in the planted record
SAVED_NOTICE = ("saved the current contents",)
KEEP_ME = "precious: must not change\n"
TRANSFERS = ["fifo", "archive-api"]
TARGET_KINDS = ["volume", "path"]


# --- crafting a store -------------------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, len(data) if kind == tarfile.REGTYPE else 0, 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _tar(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


ROOT = _member("./", tarfile.DIRTYPE, mode=0o755)
SYMLINK_TO_TARGET = _member("./t", tarfile.SYMTYPE, linkname="/target")
EVIL = b"pwned by the archive\n"

# name -> (members, words the error line must hold)
HOSTILE = {
    "symlink-then-write-through": (
        [ROOT, SYMLINK_TO_TARGET, _member("./t/KEEP-ME.txt", data=EVIL)],
        ("unsafe", "'./t/KEEP-ME.txt'", "symlink './t'"),
    ),
    "dot-dot-escape": (
        [ROOT, _member("../escape", data=EVIL), _member("../KEEP-ME.txt", data=EVIL)],
        ("unsafe", "'../escape'"),
    ),
    "absolute-name": (
        [ROOT, _member("/etc/x", data=EVIL)],
        ("unsafe", "'/etc/x'", "absolute"),
    ),
    "hardlink-out-of-the-target": (
        [ROOT, _member("./h", tarfile.LNKTYPE, linkname="../../x")],
        ("unsafe", "'./h'", "../../x"),
    ),
    "hardlink-through-an-archive-symlink": (
        [
            ROOT,
            SYMLINK_TO_TARGET,
            _member("./h", tarfile.LNKTYPE, linkname="./t/KEEP-ME.txt"),
            _member("./h", data=EVIL),
        ],
        ("unsafe", "'./h'", "symlink './t'"),
    ),
    "char-device": (
        [ROOT, _member("./mem", tarfile.CHRTYPE, devmajor=1, devminor=1, mode=0o666)],
        ("unsafe", "'./mem'", "device", "--allow-devices"),
    ),
}


def plant_backup(store: Path, tar: bytes) -> dict:
    """Write `tar` (zstd-compressed) and a matching metadata file into the local store `store`,
    as an attacker with write access could. Return the record."""
    store.mkdir(parents=True, exist_ok=True)
    compressed = zstandard.ZstdCompressor().compress(tar)
    backup_id = f"{SOURCE}-20260101T000000Z-beef"
    record = {
        "id": backup_id,
        "source": SOURCE,
        "kind": "volume",
        "created": "2026-01-01T00:00:00Z",
        "size": len(compressed),
        "sha256": hashlib.sha256(compressed).hexdigest(),
        "compression": "zstd",
        "archive": f"{backup_id}.tar.zst",
        "tags": [],
        "tar_size": len(tar),
        "format": 1,
    }
    (store / record["archive"]).write_bytes(compressed)
    (store / f"{backup_id}.json").write_text(json.dumps(record, indent=2))
    return record


@pytest.fixture
def make_target(docker_client, resources, unique_name, tmp_path):
    """Make a restore target of a kind ("volume" or "path") holding KEEP-ME.txt and a
    subdirectory; return its name for `--into`."""

    def make(kind: str, empty: bool = False) -> str:
        if kind == "volume":
            target = resources.volume(f"{unique_name}-target")
        else:
            directory = tmp_path / "host" / "target"
            directory.mkdir(parents=True)
            target = str(directory)
        if not empty:
            trees.populate_files(
                docker_client, target, {"KEEP-ME.txt": KEEP_ME, "sub/other.txt": "other\n"}
            )
        return target

    return make


@pytest.fixture(autouse=True)
def _remove_leaked_helpers(docker_client, resources, tmp_path):
    yield
    remove_helpers_using(docker_client, resources.volumes, [str(tmp_path)])


def _restore(store: Path, target: str, transfer: str, *options: str):
    return run_opskit(
        "volume", "restore", SOURCE, "--from", str(store), "--into", target,
        "--transfer", transfer, *options,
    )  # fmt: skip


def _read_in(docker_client, target: str, script: str) -> str:
    return trees.run_in_tree(docker_client, target, script, read_only=True).decode()


# --- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("target_kind", TARGET_KINDS)
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_a_hostile_archive_is_refused_and_the_target_keeps_its_contents(
    case, target_kind, transfer, docker_client, make_target, tmp_path
):
    members, words = HOSTILE[case]
    store = tmp_path / "store"
    record = plant_backup(store, _tar(*members))
    target = make_target(target_kind)
    before = trees.snapshot(docker_client, target)

    result = _restore(store, target, transfer, "--force")

    assert_failed_with_one_line(result, record["archive"], *words, notices=SAVED_NOTICE)
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "target")
    assert _read_in(docker_client, target, "cat KEEP-ME.txt") == KEEP_ME
    leftovers = _read_in(docker_client, target, "ls -A")
    assert ".opskit-" not in leftovers, f"a staging directory was left: {leftovers}"
    assert helpers_using(docker_client, target) == []
    if target_kind == "path":
        outside = sorted(path.name for path in Path(target).parent.iterdir())
        assert outside == ["target"], f"written beside the target: {outside}"


def test_a_hostile_archive_never_reaches_a_new_volume(
    docker_client, resources, unique_name, tmp_path
):
    """Into a volume that does not exist yet: the refused restore leaves no half-restored
    volume with the archive's symlink in it."""
    members, words = HOSTILE["symlink-then-write-through"]
    store = tmp_path / "store"
    plant_backup(store, _tar(*members))
    target = resources.track_volume(f"{unique_name}-new")

    result = _restore(store, target, "fifo")

    assert_failed_with_one_line(result, *words)
    if target in [volume.name for volume in docker_client.volumes.list()]:
        assert _read_in(docker_client, target, "ls -A") == ""


# --- allowed, and reported --------------------------------------------------------------------


@pytest.mark.parametrize("target_kind", TARGET_KINDS)
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_device_nodes_are_restored_with_allow_devices(
    target_kind, transfer, docker_client, make_target, tmp_path
):
    members = [
        ROOT,
        _member("./null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        _member("./file", data=b"data\n"),
    ]
    store = tmp_path / "store"
    plant_backup(store, _tar(*members))
    target = make_target(target_kind, empty=True)

    result = _restore(store, target, transfer, "--allow-devices")

    assert result.returncode == 0, describe(result)
    found = _read_in(docker_client, target, "stat -c '%F %t:%T' null; cat file")
    assert found == "character special file 1:3\ndata\n"


@pytest.mark.parametrize("target_kind", TARGET_KINDS)
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_setid_files_are_restored_and_named_in_json(
    target_kind, transfer, docker_client, make_target, tmp_path
):
    members = [
        ROOT,
        _member("./bin", tarfile.DIRTYPE, mode=0o755),
        _member("./bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        _member("./bin/group-tool", data=b"#!/bin/sh\n", mode=0o2755),
        _member("./bin/plain", data=b"#!/bin/sh\n", mode=0o755),
    ]
    store = tmp_path / "store"
    plant_backup(store, _tar(*members))
    target = make_target(target_kind, empty=True)

    document = run_json(
        "volume", "restore", SOURCE, "--from", str(store), "--into", target,
        "--transfer", transfer,
    )  # fmt: skip

    assert document.get("setid_count") == 2, document
    named = sorted(name.removeprefix("./") for name in document.get("setid_files", []))
    assert named == ["bin/group-tool", "bin/tool"], document
    modes = _read_in(docker_client, target, "stat -c '%a %n' bin/tool bin/group-tool bin/plain")
    assert modes == "4755 bin/tool\n2755 bin/group-tool\n755 bin/plain\n"


def test_symlinks_that_point_anywhere_are_restored(docker_client, make_target, tmp_path):
    """Real data has absolute and dangling symlinks: they are restored, never followed."""
    members = [
        ROOT,
        _member("./abs", tarfile.SYMTYPE, linkname="/etc/passwd"),
        _member("./up", tarfile.SYMTYPE, linkname="../../.."),
        _member("./dangling", tarfile.SYMTYPE, linkname="missing"),
        _member("./file", data=b"x\n"),
    ]
    store = tmp_path / "store"
    plant_backup(store, _tar(*members))
    target = make_target("volume", empty=True)

    result = _restore(store, target, "fifo")

    assert result.returncode == 0, describe(result)
    links = _read_in(docker_client, target, "for link in abs up dangling; do readlink $link; done")
    assert links == "/etc/passwd\n../../..\nmissing\n"


def test_files_with_capabilities_are_restored_and_named_in_json(
    docker_client, make_target, tmp_path
):
    """A planted file capability (cap_setuid) is as strong as setuid-root: it is restored, since
    that is fidelity, but counted and named."""
    capability = struct.pack("<IIIII", 0x02000001, (1 << 7) | (1 << 2), 0, 0, 0)
    info, data = _member("./tool", data=b"#!/bin/sh\n", mode=0o755)
    info.pax_headers = {
        "SCHILY.xattr.security.capability": capability.decode("utf-8", "surrogateescape")
    }
    store = tmp_path / "store"
    plant_backup(store, _tar(ROOT, (info, data)))
    target = make_target("volume", empty=True)

    document = run_json("volume", "restore", SOURCE, "--from", str(store), "--into", target)

    assert document.get("capability_count") == 1, document
    assert [name.removeprefix("./") for name in document["capability_files"]] == ["tool"]
