"""Which tar a helper image has, the commands that give it its most fidelity, and what it keeps.

Every writer keeps the basics: numeric owners up to 16,777,215, permission bits (setuid, setgid
and sticky included), hardlinks, symlinks (dangling ones too), FIFOs, and file mtimes to the
second. No writer keeps sockets (GNU tar and busybox say "socket ignored"; the engine skips
them): they belong to a running process and are made again by it.

The `keeps` vocabulary, what a writer keeps beyond the basics (measured, see README):
- `large-owners`: uids and gids above 16,777,215 (busybox cuts them to 24 bits).
- `xattrs`: extended attributes in the `user.*` and `security.*` namespaces.
  (`trusted.*` needs CAP_SYS_ADMIN, which no helper has: no writer keeps those.)
- `capabilities`: file capabilities (the `security.capability` attribute).
- `acls`: POSIX ACLs, access and default.
- `selinux`: SELinux labels, where the kernel has SELinux.
- `sparse`: holes of sparse files (they come back sparse, not full).
- `subsecond-mtimes`: mtimes to the nanosecond.
- `pre-1970-mtimes`: mtimes before 1970 (busybox writes 0).
- `dir-mtimes`: directory mtimes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GNU = "gnu"
BUSYBOX = "busybox"
OTHER = "other"

KEEPS_VOCABULARY = (
    "large-owners",
    "xattrs",
    "capabilities",
    "acls",
    "selinux",
    "sparse",
    "subsecond-mtimes",
    "pre-1970-mtimes",
    "dir-mtimes",
)

# The largest owner 8 octal digits hold (ustar fields, which busybox fills without a NUL).
LARGEST_USTAR_OWNER = 0o77777777
# What each helper tar keeps beyond the basics (measured: tests/integration/test_fidelity.py).
GNU_KEEPS = KEEPS_VOCABULARY
BUSYBOX_KEEPS: tuple[str, ...] = ()

# Create: POSIX (pax) archives; every xattr the helper can read; atime and ctime left out (they
# would only leak access times into the archive and change on every run).
GNU_CREATE_OPTIONS = (
    "--format=posix",
    "--pax-option=delete=atime,delete=ctime",
    "--numeric-owner",
    "--sparse",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--selinux",
)
# Extract: -B because the archive comes through a FIFO (without it, 1 restore in 5 failed with
# "Unaligned block"); -b 2048, 1 MiB records, because tar writes a file's data in pieces of at
# most a record: 40 times fewer read and write calls than the default 10 KiB (issue 13; any
# archive reads so, whatever record size wrote it); every xattr (the default restores only
# user.*); owners and modes as stored; no warning for the pre-1970 mtimes that the archive holds
# on purpose.
GNU_EXTRACT_OPTIONS = (
    "-B",
    "-b",
    "2048",
    "--numeric-owner",
    "--same-owner",
    "--same-permissions",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--selinux",
    "--warning=no-timestamp",
)

_GNU_VERSION = re.compile(r"^tar \(GNU tar\) (\S+)")
_BUSYBOX_VERSION = re.compile(r"(?:^tar \(busybox\) |BusyBox v)(\d[\w.]*)", re.IGNORECASE)


@dataclass(frozen=True)
class TarFlavour:
    """The helper's tar: `kind` is `gnu`, `busybox` or `other`; `version` as it says."""

    kind: str
    version: str = ""

    @property
    def writer(self) -> str:
        """E.g. `gnu tar 1.34`, `busybox tar 1.35.0`, `unknown tar`."""
        if self.kind == OTHER:
            return "unknown tar"
        return f"{self.kind} tar {self.version}".rstrip()

    @property
    def keeps(self) -> tuple[str, ...]:
        return GNU_KEEPS if self.kind == GNU else BUSYBOX_KEEPS

    def create_command(self, archive: str, directory: str) -> list[str]:
        """The command that writes a tar of `directory`'s contents (`./...`) into `archive`."""
        if self.kind == GNU:
            return ["tar", "-c", "-f", archive, *GNU_CREATE_OPTIONS, "-C", directory, "."]
        return ["tar", "-cf", archive, "-C", directory, "."]

    def extract_command(self, archive: str, directory: str) -> list[str]:
        """The command that extracts `archive` into the existing `directory`."""
        if self.kind == GNU:
            return ["tar", "-x", "-f", archive, *GNU_EXTRACT_OPTIONS, "-C", directory]
        return ["tar", "-xf", archive, "--numeric-owner", "-C", directory]


def parse_version(output: str, exit_code: int) -> TarFlavour:
    """Given what `tar --version` printed and its exit code, return the tar's flavour.

    GNU prints "tar (GNU tar) 1.34"; Debian's busybox prints "tar (busybox) 1.35.0", older ones
    fail and print "BusyBox v1.35.0 ... multi-call binary". Anything else is `other`, which is
    given busybox's commands (plain POSIX options) and is taken to keep nothing beyond the basics.
    """
    first = output.strip().splitlines()[0].strip() if output.strip() else ""
    gnu = _GNU_VERSION.match(first)
    if gnu and exit_code == 0:
        return TarFlavour(GNU, gnu.group(1))
    busybox = _BUSYBOX_VERSION.search(output)
    if busybox:
        return TarFlavour(BUSYBOX, busybox.group(1))
    return TarFlavour(OTHER)
