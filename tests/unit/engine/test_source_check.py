"""Finding, before a backup, what the writing tar would lose: a walk of real files on this machine
(run as root, like opskit: chown to large owners and trusted.* need it)."""

import os
import time
from pathlib import Path

import pytest

from opskit.engine import source_check, tar_flavour

# user::rw- user:1234:rwx group::r-- mask::rwx other::--- (what `setfacl -m u:1234:rwx` writes)
ACCESS_ACL = bytes.fromhex(
    "0200000001000600ffffffff02000700d204000004000400ffffffff10000700ffffffff20000000ffffffff"
)
NOTHING = ()
EVERYTHING = tar_flavour.GNU_KEEPS


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "plain").write_text("x")
    os.symlink("/nonexistent", root / "a" / "dangling")
    return root


def test_first_loss_finds_nothing_in_plain_data(tree):
    assert source_check.first_loss(str(tree), NOTHING) is None


def test_first_loss_finds_a_large_owner_unless_kept(tree):
    os.chown(tree / "a" / "b" / "plain", 1_786_400_001, 5)
    finding = source_check.first_loss(str(tree), NOTHING)
    assert finding == source_check.Finding("large-owners", "./a/b/plain", "uid 1786400001")
    assert finding.describe() == "owners above 16777215 (e.g. uid 1786400001 on ./a/b/plain)"
    assert source_check.first_loss(str(tree), ("large-owners",)) is None


def test_first_loss_finds_a_large_group_of_a_symlink_without_following_it(tree):
    os.lchown(tree / "a" / "dangling", 0, 16_777_216)
    finding = source_check.first_loss(str(tree), NOTHING)
    assert finding == source_check.Finding("large-owners", "./a/dangling", "gid 16777216")


def test_the_largest_ustar_owner_is_fine(tree):
    os.chown(tree / "a" / "b" / "plain", 16_777_215, 16_777_215)
    assert source_check.first_loss(str(tree), NOTHING) is None


def test_first_loss_finds_acls_xattrs_and_capabilities_unless_kept(tree):
    plain = tree / "a" / "b" / "plain"
    os.setxattr(plain, "system.posix_acl_access", ACCESS_ACL)
    assert source_check.first_loss(str(tree), NOTHING) == source_check.Finding(
        "acls", "./a/b/plain", ""
    )
    os.removexattr(plain, "system.posix_acl_access")
    os.setxattr(plain, "user.comment", b"hello")
    finding = source_check.first_loss(str(tree), NOTHING)
    assert finding == source_check.Finding("xattrs", "./a/b/plain", "user.comment")
    assert source_check.first_loss(str(tree), ("xattrs",)) is None
    assert source_check.first_loss(str(tree), EVERYTHING) is None


def test_first_loss_finds_the_root_itself(tree):
    os.setxattr(tree, "user.on-the-root", b"1")
    finding = source_check.first_loss(str(tree), NOTHING)
    assert finding == source_check.Finding("xattrs", ".", "user.on-the-root")


def test_trusted_attributes_are_lost_by_every_writer(tree):
    os.setxattr(tree / "a", "trusted.opskit", b"t")
    finding = source_check.first_loss(str(tree), EVERYTHING)
    assert finding == source_check.Finding("trusted", "./a", "trusted.opskit")


def test_unprintable_names_are_escaped(tree):
    odd = tree / "evil\x1b[2Jname"
    odd.write_text("x")
    os.chown(odd, 20_000_000, 0)
    assert "\x1b" not in source_check.first_loss(str(tree), NOTHING).describe()


def test_first_loss_raises_if_the_directory_cannot_be_read(tmp_path):
    with pytest.raises(OSError):
        source_check.first_loss(str(tmp_path / "missing"), NOTHING)


def test_attribute_kind_names_what_each_attribute_needs():
    assert source_check.attribute_kind("system.posix_acl_default") == "acls"
    assert source_check.attribute_kind("security.capability") == "capabilities"
    assert source_check.attribute_kind("security.selinux") is None
    assert source_check.attribute_kind("security.ima") == "xattrs"
    assert source_check.attribute_kind("trusted.overlay.opaque") == "trusted"


def test_a_walk_of_20000_entries_is_cheap(tmp_path):
    root = tmp_path / "many"
    for directory in range(100):
        (root / f"d{directory}").mkdir(parents=True)
        for file in range(199):
            (root / f"d{directory}" / f"f{file}").write_bytes(b"")
    started = time.perf_counter()
    assert source_check.first_loss(str(root), NOTHING) is None
    # Measured 0.1 s here; the bound leaves room for a slow CI machine.
    assert time.perf_counter() - started < 2.0
