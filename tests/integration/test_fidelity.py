"""Fidelity beyond busybox, on the real engine, with both helper images, run as a user does.

- The GNU tar helper (opskit-helper:gnu-tar, the default) keeps large owners, ACLs, xattrs,
  file capabilities, sub-second and pre-1970 mtimes, directory mtimes and sparse holes.
- The busybox helper, and the engine's archive endpoint, refuse with one line a backup that
  they would silently change (never an owner cut to 24 bits).
- tar's first real error line is shown, not its closing summary.

The data is written on the host through each volume's mountpoint (tests run as root), with
os.setxattr for ACLs and capabilities, so no host tool is needed.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import docker
import pytest

from opskit import errors
from opskit.engine import client, helper, transfer, volumes
from tests.integration.opskit_cli import (
    assert_failed_with_one_line,
    backup,
    describe,
    files_in,
    helpers_using,
    restore,
    run_opskit,
    volume_mountpoint,
)

pytestmark = pytest.mark.integration

GNU_IMAGE = "opskit-helper:gnu-tar"
BUSYBOX_IMAGE = "busybox:stable"
LARGE_UID = 1_786_400_001  # an SSSD/AD uid: above 16,777,215
LARGE_GID = 1_786_400_002
# user::rw- user:1234:rwx group::r-- mask::rwx other::--- (as `setfacl -m u:1234:rwx,m::rwx`)
ACCESS_ACL = bytes.fromhex(
    "0200000001000600ffffffff02000700d204000004000400ffffffff10000700ffffffff20000000ffffffff"
)
# default ACL user::rwx user:1234:r-x group::r-x mask::r-x other::r-x
DEFAULT_ACL = bytes.fromhex(
    "0200000001000700ffffffff02000500d204000004000500ffffffff10000500ffffffff20000500ffffffff"
)
# cap_net_bind_service+ep (as `setcap cap_net_bind_service+ep`)
CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")
SUBSECOND_NS = 981_173_106_123_456_789  # 2001-02-03 04:05:06.123456789
PRE_1970_NS = -315_521_755_000_000_000  # 1960-01-02 03:04:05
OLD_DIR_NS = 915_148_800_000_000_000  # 1999-01-01
SPARSE_SIZE = 64 << 20


@pytest.fixture(scope="module", autouse=True)
def both_images(docker_client: docker.DockerClient) -> None:
    for image in (GNU_IMAGE, BUSYBOX_IMAGE):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"helper image {image} is missing: run scripts/setup-engine.sh")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def _populate_everything(root: Path) -> None:
    """Everything busybox tar loses, and the basics next to it."""
    (root / "large-owner").write_text("owned by an AD user\n")
    os.chown(root / "large-owner", LARGE_UID, LARGE_GID)
    (root / "acl-file").write_text("acl\n")
    os.chmod(root / "acl-file", 0o640)
    os.setxattr(root / "acl-file", "system.posix_acl_access", ACCESS_ACL)
    (root / "acl-dir").mkdir()
    os.setxattr(root / "acl-dir", "system.posix_acl_default", DEFAULT_ACL)
    (root / "xattr-file").write_text("x\n")
    os.setxattr(root / "xattr-file", "user.comment", b"kept by GNU tar")
    (root / "capability").write_bytes(b"\x7fELF not really\n")
    os.chmod(root / "capability", 0o755)
    os.setxattr(root / "capability", "security.capability", CAPABILITY)
    (root / "subsecond").write_text("s\n")
    os.utime(root / "subsecond", ns=(SUBSECOND_NS, SUBSECOND_NS))
    (root / "pre-1970").write_text("o\n")
    os.utime(root / "pre-1970", ns=(PRE_1970_NS, PRE_1970_NS))
    with open(root / "sparse", "wb") as sparse:
        sparse.write(b"head")
        sparse.seek(SPARSE_SIZE)
        sparse.write(b"tail")
    (root / "setuid").write_text("#!/bin/sh\n")
    os.chmod(root / "setuid", 0o4755)
    os.link(root / "setuid", root / "setuid-hardlink")
    os.symlink("setuid", root / "symlink")
    os.mkfifo(root / "fifo")
    (root / "old-dir").mkdir()
    (root / "old-dir" / "inside").write_text("i\n")
    os.utime(root / "old-dir", ns=(OLD_DIR_NS, OLD_DIR_NS))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(root / "socket"))
    listener.close()


def _snapshot(root: Path) -> dict[str, dict[str, Any]]:
    """Every entry below `root` (not the root's own mtime, which the restore's swap changes)."""
    entries: dict[str, dict[str, Any]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        status = os.lstat(path)
        name = "." if path == root else str(path.relative_to(root))
        entries[name] = {
            "mode": oct(status.st_mode),
            "owner": (status.st_uid, status.st_gid),
            "size": status.st_size if not stat.S_ISDIR(status.st_mode) else None,
            "blocks": status.st_blocks if stat.S_ISREG(status.st_mode) else None,
            "mtime_ns": status.st_mtime_ns if path != root else None,
            "links": status.st_nlink if not stat.S_ISDIR(status.st_mode) else None,
            "xattrs": {
                attribute: os.getxattr(path, attribute, follow_symlinks=False)
                for attribute in sorted(os.listxattr(path, follow_symlinks=False))
            },
            "target": os.readlink(path) if stat.S_ISLNK(status.st_mode) else None,
        }
    return entries


def _new_volume(resources, unique_name: str, suffix: str) -> str:
    return resources.track_volume(f"{unique_name}-{suffix}")


@pytest.mark.parametrize("transfer_mode", ["fifo", "remote"])
def test_gnu_tar_helper_keeps_owners_acls_xattrs_exact_times_and_holes(
    transfer_mode, docker_client, resources, unique_name, store
):
    source = resources.volume()
    source_root = volume_mountpoint(docker_client, source)
    _populate_everything(source_root)
    expected = _snapshot(source_root)
    target = _new_volume(resources, unique_name, "restored")

    options = ("--helper-image", GNU_IMAGE, "--transfer", transfer_mode)
    record = backup(source, store, *options)
    restore(source, store, "--into", target, *options)

    assert record["tar"].startswith("gnu tar 1."), record
    assert record["transfer"] == transfer_mode, record
    assert set(record["tar_keeps"]) >= {
        "large-owners",
        "xattrs",
        "capabilities",
        "acls",
        "sparse",
        "subsecond-mtimes",
        "pre-1970-mtimes",
        "dir-mtimes",
    }, record
    restored = _snapshot(volume_mountpoint(docker_client, target))
    # GNU tar says "socket ignored": a socket belongs to a running process, none is kept.
    del expected["socket"]
    assert restored == expected
    assert restored["large-owner"]["owner"] == (LARGE_UID, LARGE_GID)
    assert restored["sparse"]["blocks"] < 1024, "the sparse file came back full"
    assert restored["pre-1970"]["mtime_ns"] == PRE_1970_NS
    assert restored["subsecond"]["mtime_ns"] == SUBSECOND_NS
    assert restored["old-dir"]["mtime_ns"] == OLD_DIR_NS
    assert helpers_using(docker_client, target) == []


@pytest.mark.parametrize("transfer_mode", ["fifo", "remote", "archive-api"])
def test_gnu_tar_helper_keeps_large_owners_through_each_transfer(
    transfer_mode, docker_client, resources, unique_name, store
):
    source = resources.volume()
    root = volume_mountpoint(docker_client, source)
    (root / "data").write_text("d\n")
    os.chown(root / "data", LARGE_UID, LARGE_GID)
    os.chown(root, LARGE_UID, LARGE_GID)
    target = _new_volume(resources, unique_name, "restored")

    options = ("--helper-image", GNU_IMAGE, "--transfer", transfer_mode)
    record = backup(source, store, *options)
    restore(source, store, "--into", target, *options)

    expected_writer = "engine archive endpoint" if transfer_mode == "archive-api" else "gnu tar"
    assert record["tar"].startswith(expected_writer), record
    assert "large-owners" in record["tar_keeps"]
    restored = volume_mountpoint(docker_client, target)
    assert (os.lstat(restored / "data").st_uid, os.lstat(restored / "data").st_gid) == (
        LARGE_UID,
        LARGE_GID,
    )
    assert (os.lstat(restored).st_uid, os.lstat(restored).st_gid) == (LARGE_UID, LARGE_GID)


def _large_owner(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "file").write_text("f\n")
    os.chown(root / "sub" / "file", LARGE_UID, 100)


def _acl(root: Path) -> None:
    (root / "file").write_text("f\n")
    os.setxattr(root / "file", "system.posix_acl_access", ACCESS_ACL)


def _xattr(root: Path) -> None:
    (root / "file").write_text("f\n")
    os.setxattr(root / "file", "user.comment", b"c")


def _capability(root: Path) -> None:
    (root / "file").write_text("f\n")
    os.setxattr(root / "file", "security.capability", CAPABILITY)


REFUSED = {
    "large-owner": (_large_owner, ("owners above 16777215", "uid 1786400001", "./sub/file")),
    "acl": (_acl, ("POSIX ACLs", "./file")),
    "xattr": (_xattr, ("extended attributes", "user.comment", "./file")),
    "capability": (_capability, ("file capabilities", "security.capability", "./file")),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_busybox_helper_refuses_what_it_would_lose_with_one_line(
    kind, docker_client, resources, store
):
    populate, words = REFUSED[kind]
    source = resources.volume()
    populate(volume_mountpoint(docker_client, source))

    result = run_opskit(
        "volume",
        "backup",
        source,
        "--to",
        str(store),
        "--helper-image",
        BUSYBOX_IMAGE,
        "--transfer",
        "fifo",
    )

    assert_failed_with_one_line(
        result, *words, "busybox tar", f"--helper-image {GNU_IMAGE}", "setup-engine.sh"
    )
    assert [name for name in files_in(store) if ".tar" in name] == [], files_in(store)
    assert helpers_using(docker_client, source) == []


@pytest.mark.parametrize("image", [BUSYBOX_IMAGE, GNU_IMAGE])
@pytest.mark.parametrize("kind", ["acl", "xattr"])
def test_archive_endpoint_refuses_acls_and_xattrs_with_one_line(
    kind, image, docker_client, resources, store
):
    populate, words = REFUSED[kind]
    source = resources.volume()
    populate(volume_mountpoint(docker_client, source))

    result = run_opskit(
        "volume",
        "backup",
        source,
        "--to",
        str(store),
        "--helper-image",
        image,
        "--transfer",
        "archive-api",
    )

    assert_failed_with_one_line(result, *words, "archive endpoint", "--transfer fifo", GNU_IMAGE)
    assert [name for name in files_in(store) if ".tar" in name] == [], files_in(store)


def test_archive_endpoint_keeps_large_owners_and_capabilities_with_busybox(
    docker_client, resources, unique_name, store
):
    source = resources.volume()
    root = volume_mountpoint(docker_client, source)
    _large_owner(root)
    _capability(root)
    target = _new_volume(resources, unique_name, "restored")

    options = ("--helper-image", BUSYBOX_IMAGE, "--transfer", "archive-api")
    record = backup(source, store, *options)
    restore(source, store, "--into", target, *options)

    assert record["tar"] == "engine archive endpoint"
    restored = volume_mountpoint(docker_client, target)
    assert os.lstat(restored / "sub" / "file").st_uid == LARGE_UID
    assert os.getxattr(restored / "file", "security.capability") == CAPABILITY


def test_busybox_helper_backs_up_plain_data_and_says_what_it_keeps(docker_client, resources, store):
    source = resources.volume()
    root = volume_mountpoint(docker_client, source)
    (root / "file").write_text("f\n")
    os.chown(root / "file", 16_777_215, 16_777_215)  # the largest owner busybox keeps

    record = backup(source, store, "--helper-image", BUSYBOX_IMAGE, "--transfer", "fifo")

    assert record["tar"].startswith("busybox tar 1."), record
    assert record["tar_keeps"] == []


@pytest.mark.parametrize(("image", "refused"), [(BUSYBOX_IMAGE, True), (GNU_IMAGE, False)])
def test_large_owners_are_found_in_the_helper_when_this_machine_cannot_see_the_data(
    image, refused, docker_client, resources
):
    """Without a host directory (an engine elsewhere, or a user who cannot read the volume),
    the check runs in the helper."""
    source = resources.volume()
    _large_owner(volume_mountpoint(docker_client, source))
    engine = client.connect()
    fifo = transfer.FifoTransfer()
    try:
        with helper.helper_session(
            engine,
            image,
            volumes.DataSource.parse(source),
            "/source",
            read_only=True,
            extra_mounts=fifo.mounts(),
        ) as session:
            if refused:
                with pytest.raises(errors.FidelityLoss, match="uid 1786400001 on ./sub/file"):
                    fifo.check_source(session, "/source", None)
            else:
                fifo.check_source(session, "/source", None)
    finally:
        fifo.close()
        engine.close()


@pytest.mark.parametrize("image", [BUSYBOX_IMAGE, GNU_IMAGE])
def test_tar_first_real_error_line_is_shown(image, docker_client, resources, store):
    """A restore into a 1 MiB tmpfs volume: GNU tar ends with "Exiting with failure status due
    to previous errors"; the message must name the real error instead."""
    source = resources.volume()
    (volume_mountpoint(docker_client, source) / "big").write_bytes(os.urandom(4 << 20))
    target = resources.volume(
        driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    )
    backup(source, store, "--helper-image", image, "--transfer", "fifo")

    result = run_opskit(
        "volume",
        "restore",
        source,
        "--from",
        str(store),
        "--into",
        target,
        "--helper-image",
        image,
        "--transfer",
        "fifo",
    )

    line = assert_failed_with_one_line(result, "No space left on device")
    assert "previous errors" not in line, describe(result)


def _deep_tree(root: Path) -> None:
    """A file whose path exceeds PATH_MAX (4096): busybox tar cannot open it, says so, goes on,
    and ends with "error exit delayed from previous errors"."""
    directory = os.open(root, os.O_RDONLY)
    try:
        for level in range(36):
            name = f"{level:02d}" + "d" * 118
            os.mkdir(name, dir_fd=directory)
            deeper = os.open(name, os.O_RDONLY, dir_fd=directory)
            os.close(directory)
            directory = deeper
        os.close(os.open("deep-file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=directory))
    finally:
        os.close(directory)


def test_busybox_tar_first_real_error_line_is_shown(docker_client, resources, store):
    source = resources.volume()
    _deep_tree(volume_mountpoint(docker_client, source))

    result = run_opskit(
        "volume",
        "backup",
        source,
        "--to",
        str(store),
        "--helper-image",
        BUSYBOX_IMAGE,
        "--transfer",
        "fifo",
    )

    line = assert_failed_with_one_line(result, "tar: ./00d", "File name too long")
    assert "error exit delayed" not in line, describe(result)
