"""Telling the helper's tar apart from `tar --version`, and the commands each one gets."""

import pytest

from opskit.engine import tar_flavour
from opskit.engine.tar_flavour import TarFlavour, parse_version

GNU_VERSION = """tar (GNU tar) 1.34
Copyright (C) 2021 Free Software Foundation, Inc.
License GPLv3+: GNU GPL version 3 or later <https://gnu.org/licenses/gpl.html>.
"""


def test_parse_version_reads_gnu_tar():
    flavour = parse_version(GNU_VERSION, 0)
    assert flavour == TarFlavour("gnu", "1.34")
    assert flavour.writer == "gnu tar 1.34"
    assert flavour.keeps == tar_flavour.KEEPS_VOCABULARY


@pytest.mark.parametrize(
    ("output", "exit_code"),
    [
        ("tar (busybox) 1.35.0\n", 0),  # Debian's busybox-static
        ("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n\nUsage: tar", 1),
        ("tar: unrecognized option '--version'\nBusyBox v1.35.0 (2022-11-19) multi-call", 1),
    ],
)
def test_parse_version_reads_busybox_tar(output, exit_code):
    flavour = parse_version(output, exit_code)
    assert flavour == TarFlavour("busybox", "1.35.0")
    assert flavour.writer == "busybox tar 1.35.0"
    assert flavour.keeps == ()


@pytest.mark.parametrize(
    ("output", "exit_code"),
    [
        ("", 127),
        ('OCI runtime exec failed: exec: "tar": executable file not found in $PATH', 126),
        ("bsdtar 3.6.2 - libarchive 3.6.2 zlib/1.2.13\n", 0),
        ("tar (GNU tar) 1.34\n", 2),  # a GNU tar that fails is not trusted with GNU options
    ],
)
def test_parse_version_calls_anything_else_other(output, exit_code):
    flavour = parse_version(output, exit_code)
    assert flavour.kind == "other"
    assert flavour.writer == "unknown tar"
    assert flavour.keeps == ()


def test_gnu_commands_keep_everything_and_read_a_fifo_with_full_records():
    gnu = TarFlavour("gnu", "1.34")
    create = gnu.create_command("/io/a.tar", "/source")
    extract = gnu.extract_command("/io/b.tar", "/target/.staging")
    assert create[:3] == ["tar", "-c", "-f"] and create[-3:] == ["-C", "/source", "."]
    for option in ("--format=posix", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"):
        assert option in create
    for option in ("-B", "--numeric-owner", "--same-owner", "--xattrs-include=*", "--acls"):
        assert option in extract
    assert extract[-2:] == ["-C", "/target/.staging"]


def test_busybox_and_other_tars_get_the_plain_commands():
    for flavour in (TarFlavour("busybox", "1.35.0"), TarFlavour("other")):
        assert flavour.create_command("/io/a", "/s") == ["tar", "-cf", "/io/a", "-C", "/s", "."]
        assert flavour.extract_command("/io/a", "/t") == [
            "tar",
            "-xf",
            "/io/a",
            "--numeric-owner",
            "-C",
            "/t",
        ]


def test_the_ustar_owner_limit_is_24_bits():
    assert tar_flavour.LARGEST_USTAR_OWNER == 16_777_215
