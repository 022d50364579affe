"""Tricky trees for the volume tests: fill a volume or host directory, snapshot it, diff two.

Everything runs in a throwaway `busybox:stable` container, never through opskit, so the
reference a restore is compared against does not depend on the code under test.

A snapshot holds, for every entry below the root (the root `.` included): type, permission bits
(setuid/setgid/sticky included), numeric owner, size and sha256 of regular files, symlink target,
file mtime, and the hardlink groups (sets of paths sharing an inode: groups are compared, never raw
inode numbers, which differ between volumes).
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import docker

HELPER_IMAGE = "busybox:stable"
POPULATE_MOUNT = "/data"
SNAPSHOT_MOUNT = "/tree"
OUTPUT_MOUNT = "/snapshot-output"

# A name of exactly 200 characters, and a path 30 directories deep (about 300 characters, so
# both need tar's long-name extensions).
LONG_NAME = "L" * 196 + ".txt"
DEEP_DIRECTORY = "deep/" + "/".join(f"level-{level:02d}" for level in range(1, 31))
QUOTED_DIRECTORY = "dir \"double\" and 'single'"
ROOT_MODE = 0o750
ROOT_OWNER = (999, 999)

# Fixed mtimes (seconds since the epoch) set with `touch -d @...`.
MTIME_2001 = 981173106
MTIME_2009 = 1234567890
MTIME_2020 = 1600000000
MTIME_2023 = 1700000000


def _q(text: str) -> str:
    return shlex.quote(text)


def _write(path: str, content: str) -> str:
    return f"printf '%s' {_q(content)} > {_q(path)}"


def tricky_tree_script() -> str:
    """Return the busybox sh script that builds the tricky tree in the current directory.

    Order matters: chown clears setuid/setgid, so every chmod comes after its chown, and every
    `touch -d` comes after the last write to its file.
    """
    lines = [
        "set -e",
        # File contents: text, random bytes, an empty file.
        _write("plain.txt", "hello opskit\n"),
        "head -c 262144 /dev/urandom > random.bin",
        ": > empty-file",
        # Directories, empty ones included.
        "mkdir empty-dir",
        f"mkdir -p {_q('dir with spaces/empty dir')}",
        _write("dir with spaces/file with spaces.txt", "spaces\n"),
        # Names with quotes, unicode and leading dashes.
        _write('it\'s "quoted".txt', "quotes\n"),
        "mkdir " + _q(QUOTED_DIRECTORY),
        _write(f"{QUOTED_DIRECTORY}/inner 'file'", "inner\n"),
        _write("ünïcødé 名前 🙂.txt", "unicode\n"),
        f"mkdir {_q('данные')}",
        _write("данные/файл", "cyrillic\n"),
        _write("./-leading-dash", "dash\n"),
        "mkdir ./--double-dash-dir",
        _write("./--double-dash-dir/-x", "x\n"),
        # A 200-character name and a 30-level-deep path.
        _write(LONG_NAME, "long name\n"),
        f"mkdir -p {_q(DEEP_DIRECTORY)}",
        _write(f"{DEEP_DIRECTORY}/bottom.txt", "bottom\n"),
        # Symlinks: relative, upward, to a directory, absolute, dangling (both kinds), owned.
        "ln -s plain.txt link-relative",
        f"ln -s ../plain.txt {_q('dir with spaces/link-up')}",
        f"ln -s {_q('dir with spaces')} link-to-dir",
        "ln -s /etc/hostname link-absolute",
        "ln -s /nonexistent/opskit/target link-dangling",
        "ln -s no-such-file link-dangling-relative",
        f"ln -s {_q('ünïcødé 名前 🙂.txt')} {_q('link ünïcødé')}",
        # Hardlinks: two groups, across directories, one with a space in a name.
        _write("hard-a", "hardlinked content\n"),
        "ln hard-a hard-b",
        "mkdir hardlinks",
        "ln hard-a hardlinks/hard-c",
        _write("hard-x", "second group\n"),
        f"ln hard-x {_q('hardlinks/hard y')}",
        "chown 1000:1000 hard-x",
        "chmod 0640 hard-x",
        # FIFOs.
        "mkfifo fifo",
        f"mkfifo {_q('dir with spaces/named pipe')}",
        f"chown 33:33 {_q('dir with spaces/named pipe')}",
        f"chmod 0620 {_q('dir with spaces/named pipe')}",
        # A PostgreSQL-like data directory: 999:999, directories 0700, files 0600.
        "mkdir -p pgdata/base/1 pgdata/global",
        _write("pgdata/PG_VERSION", "16\n"),
        _write("pgdata/postgresql.auto.conf", "# do not edit\n"),
        "head -c 16384 /dev/urandom > pgdata/base/1/1259",
        "head -c 8192 /dev/urandom > pgdata/global/pg_control",
        "chown -R 999:999 pgdata",
        "find pgdata -type d -exec chmod 0700 {} +",
        "find pgdata -type f -exec chmod 0600 {} +",
        # Numeric owners that exist in no passwd file.
        _write("owned-1234", "owner\n"),
        "chown 1234:5678 owned-1234",
        _write("owned-nobody", "nobody\n"),
        "chown 65534:65534 owned-nobody",
        _write("owned-100000", "big id\n"),
        "chown 100000:100001 owned-100000",
        # Every permission bit: setuid, setgid, sticky, all, none.
        _write("setuid", "#!/bin/sh\n"),
        "chmod 4755 setuid",
        _write("setuid-owned", "#!/bin/sh\n"),
        "chown 999:999 setuid-owned",
        "chmod 4750 setuid-owned",
        _write("setgid", "#!/bin/sh\n"),
        "chmod 2755 setgid",
        _write("all-bits", "all\n"),
        "chmod 7777 all-bits",
        _write("no-bits", "none\n"),
        "chmod 0000 no-bits",
        _write("read-only", "ro\n"),
        "chmod 0444 read-only",
        _write("exec-only", "x\n"),
        "chmod 0111 exec-only",
        "mkdir sticky-dir",
        "chmod 1777 sticky-dir",
        "mkdir setgid-dir",
        _write("setgid-dir/inherits", "g\n"),
        "chown 0:50 setgid-dir",
        "chmod 2775 setgid-dir",
        "mkdir locked-dir",
        _write("locked-dir/inside", "locked\n"),
        "chmod 0500 locked-dir",
        "mkdir all-bits-dir",
        "chmod 7777 all-bits-dir",
        # File mtimes (hardlinks share theirs).
        f"touch -d @{MTIME_2001} plain.txt",
        f"touch -d @{MTIME_2009} random.bin hard-a {_q(f'{DEEP_DIRECTORY}/bottom.txt')}",
        f"touch -d @{MTIME_2020} {_q('ünïcødé 名前 🙂.txt')} {_q(LONG_NAME)} setuid no-bits",
        "find pgdata -type f -exec touch -d @" + str(MTIME_2023) + " {} +",
        # The root's own owner and mode.
        f"chown {ROOT_OWNER[0]}:{ROOT_OWNER[1]} .",
        f"chmod {ROOT_MODE:04o} .",
    ]
    return "\n".join(lines) + "\n"


def _mount(target: str, mount_point: str, read_only: bool) -> dict:
    """A docker-py `volumes=` entry: `target` is a volume name or an absolute host path."""
    return {target: {"bind": mount_point, "mode": "ro" if read_only else "rw"}}


def run_in_tree(
    client: docker.DockerClient, target: str, script: str, read_only: bool = False
) -> bytes:
    """Run a busybox sh `script` in `target` (volume name or host path) mounted at /data."""
    return client.containers.run(
        HELPER_IMAGE,
        ["sh", "-c", f"cd {POPULATE_MOUNT}\n{script}"],
        stderr=True,
        volumes=_mount(target, POPULATE_MOUNT, read_only),
        network_mode="none",
        remove=True,
    )


def populate_tricky_tree(client: docker.DockerClient, target: str) -> None:
    """Fill the (empty) volume or host directory `target` with the tricky tree."""
    run_in_tree(client, target, tricky_tree_script())


def populate_files(client: docker.DockerClient, target: str, files: dict[str, str]) -> None:
    """Write small text files (relative path -> content) into `target`, creating directories."""
    lines = ["set -e"]
    for path, content in files.items():
        directory = path.rsplit("/", 1)[0] if "/" in path else "."
        lines.append(f"mkdir -p {_q(directory)}")
        lines.append(_write(path, content))
    run_in_tree(client, target, "\n".join(lines))


def populate_random(
    client: docker.DockerClient, target: str, megabytes: int, files: int = 1
) -> None:
    """Fill `target` with `files` files of random data, `megabytes` MiB in total."""
    per_file = max(1, megabytes // files) * 1024 * 1024  # busybox head takes no M suffix
    run_in_tree(
        client,
        target,
        f"set -e\nfor i in $(seq 1 {files}); do head -c {per_file} /dev/urandom > random-$i.bin;"
        " done",
    )


# Prints four NUL-terminated fields per entry: stat line, path, symlink target, sha256.
SNAPSHOT_SCRIPT = f"""
cd {SNAPSHOT_MOUNT} || exit 3
find . -exec sh -c '
for p do
  m=$(stat -c "%f %u %g %s %i %h %Y" "$p") || exit 4
  t=""; h=""
  if [ -L "$p" ]; then t=$(readlink "$p") || exit 5
  elif [ -f "$p" ]; then h=$(sha256sum < "$p") || exit 6; h=${{h%% *}}
  fi
  printf "%s\\0%s\\0%s\\0%s\\0" "$m" "$p" "$t" "$h"
done' sh {{}} +
"""

_TYPES = {0o040000: "dir", 0o100000: "file", 0o120000: "symlink", 0o010000: "fifo"}


@dataclass(frozen=True)
class Entry:
    """One entry of a tree. `size`, `sha256` and `mtime` are for regular files only."""

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    size: int | None = None
    sha256: str | None = None
    target: str | None = None
    mtime: int | None = None

    def describe(self) -> str:
        parts = [self.type, f"mode {self.mode:04o}", f"owner {self.uid}:{self.gid}"]
        if self.type == "file":
            parts += [f"size {self.size}", f"sha256 {self.sha256[:12]}", f"mtime {self.mtime}"]
        if self.type == "symlink":
            parts.append(f"-> {self.target!r}")
        return ", ".join(parts)


@dataclass
class Snapshot:
    """A whole tree: entries by path (`.` is the root), and hardlink groups."""

    entries: dict[str, Entry]
    hardlink_groups: set[frozenset[str]] = field(default_factory=set)

    @property
    def root(self) -> Entry:
        return self.entries["."]

    def of_type(self, kind: str) -> list[Entry]:
        return [entry for entry in self.entries.values() if entry.type == kind]


def parse_snapshot(output: bytes) -> Snapshot:
    """Parse SNAPSHOT_SCRIPT's output."""
    fields = output.split(b"\0")
    if fields[-1] != b"" or (len(fields) - 1) % 4 != 0:
        raise ValueError(f"snapshot output is not whole records: {output[-200:]!r}")
    entries: dict[str, Entry] = {}
    inodes: dict[int, set[str]] = {}
    for index in range(0, len(fields) - 1, 4):
        stat_line, raw_path, raw_target, raw_hash = fields[index : index + 4]
        raw_mode, uid, gid, size, inode, links, mtime = stat_line.decode().split()
        mode = int(raw_mode, 16)
        kind = _TYPES.get(mode & 0o170000, f"other({mode & 0o170000:o})")
        path = raw_path.decode("utf-8", "surrogateescape")
        path = "." if path == "." else path.removeprefix("./")
        is_file = kind == "file"
        entries[path] = Entry(
            path=path,
            type=kind,
            mode=mode & 0o7777,
            uid=int(uid),
            gid=int(gid),
            size=int(size) if is_file else None,
            sha256=raw_hash.decode() if is_file else None,
            target=raw_target.decode("utf-8", "surrogateescape") if kind == "symlink" else None,
            mtime=int(mtime) if is_file else None,
        )
        if kind != "dir" and int(links) > 1:
            inodes.setdefault(int(inode), set()).add(path)
    groups = {frozenset(paths) for paths in inodes.values() if len(paths) > 1}
    return Snapshot(entries=entries, hardlink_groups=groups)


def snapshot(client: docker.DockerClient, target: str) -> Snapshot:
    """Snapshot the volume or host directory `target`, mounted read-only in a busybox container.

    The listing goes to a file in a bind-mounted host directory, not to the container's logs:
    docker-py's `run()` sometimes returns empty logs for a container that exits at once.
    """
    with tempfile.TemporaryDirectory(prefix="opskit-snapshot-") as output_directory:
        client.containers.run(
            HELPER_IMAGE,
            ["sh", "-c", f"{{ {SNAPSHOT_SCRIPT} }} > {OUTPUT_MOUNT}/snapshot"],
            volumes={
                **_mount(target, SNAPSHOT_MOUNT, read_only=True),
                **_mount(output_directory, OUTPUT_MOUNT, read_only=False),
            },
            network_mode="none",
            remove=True,
        )
        output = (Path(output_directory) / "snapshot").read_bytes()
    return parse_snapshot(output)


def diff(expected: Snapshot, actual: Snapshot) -> list[str]:
    """Return readable differences between two snapshots (empty when they are the same)."""
    lines = []
    for path in sorted(expected.entries.keys() - actual.entries.keys()):
        lines.append(f"missing: {path!r} ({expected.entries[path].describe()})")
    for path in sorted(actual.entries.keys() - expected.entries.keys()):
        lines.append(f"unexpected: {path!r} ({actual.entries[path].describe()})")
    for path in sorted(expected.entries.keys() & actual.entries.keys()):
        want, got = expected.entries[path], actual.entries[path]
        if want != got:
            changes = [
                f"{name} {_show(name, getattr(want, name))} != {_show(name, getattr(got, name))}"
                for name in ("type", "mode", "uid", "gid", "size", "sha256", "target", "mtime")
                if getattr(want, name) != getattr(got, name)
            ]
            lines.append(f"differs: {path!r}: expected vs actual: {'; '.join(changes)}")
    for group in sorted(expected.hardlink_groups - actual.hardlink_groups, key=sorted):
        lines.append(f"hardlink group lost: {sorted(group)}")
    for group in sorted(actual.hardlink_groups - expected.hardlink_groups, key=sorted):
        lines.append(f"hardlink group unexpected: {sorted(group)}")
    return lines


def _show(name: str, value: object) -> str:
    if name == "mode" and isinstance(value, int):
        return f"{value:04o}"
    return repr(value)


def assert_same_tree(expected: Snapshot, actual: Snapshot, what: str = "trees") -> None:
    """Fail with a readable, entry-by-entry diff unless the snapshots are the same."""
    __tracebackhide__ = True
    differences = diff(expected, actual)
    if differences:
        shown = "\n  ".join(differences[:60])
        more = f"\n  ... and {len(differences) - 60} more" if len(differences) > 60 else ""
        raise AssertionError(f"{what} differ in {len(differences)} ways:\n  {shown}{more}")


def assert_is_tricky(tree: Snapshot) -> None:
    """Fail unless `tree` really holds every fidelity item (guards against a vacuous round trip).

    Symlink owners are left out here: test_roundtrip_keeps_symlink_owners covers them on their own.
    """
    __tracebackhide__ = True
    entries = tree.entries
    problems = []

    def need(condition: bool, what: str) -> None:
        if not condition:
            problems.append(what)

    need(tree.root.mode == ROOT_MODE, f"root mode {tree.root.mode:04o}")
    need((tree.root.uid, tree.root.gid) == ROOT_OWNER, "root owner")
    need(entries.get("empty-dir", None) is not None, "empty directory")
    need(any(e.target == "/etc/hostname" for e in tree.of_type("symlink")), "absolute symlink")
    need(any(e.target and e.target.startswith("/nonexistent") for e in entries.values()), "dangl.")
    need(len(tree.hardlink_groups) >= 2, "two hardlink groups")
    need(len(tree.of_type("fifo")) >= 2, "FIFOs")
    pg = entries.get("pgdata")
    need(pg is not None and (pg.mode, pg.uid, pg.gid) == (0o700, 999, 999), "pgdata 0700 999")
    version = entries.get("pgdata/PG_VERSION")
    need(version is not None and version.mode == 0o600 and version.uid == 999, "pg file 0600")
    need(entries.get("setuid") is not None and entries["setuid"].mode == 0o4755, "setuid")
    need(entries.get("setgid") is not None and entries["setgid"].mode == 0o2755, "setgid")
    need(entries.get("sticky-dir") is not None and entries["sticky-dir"].mode == 0o1777, "sticky")
    need(entries.get("setuid-owned") is not None and entries["setuid-owned"].mode == 0o4750, "suid")
    need(entries.get("plain.txt") is not None and entries["plain.txt"].mtime == MTIME_2001, "mtime")
    need(LONG_NAME in entries, "200-character name")
    need(f"{DEEP_DIRECTORY}/bottom.txt" in entries, "30-level-deep path")
    need("ünïcødé 名前 🙂.txt" in entries, "unicode name")
    need('it\'s "quoted".txt' in entries, "quoted name")
    need("-leading-dash" in entries, "leading dash")
    need("dir with spaces/empty dir" in entries, "spaces")
    if problems:
        raise AssertionError(f"the tricky tree is incomplete: {', '.join(problems)}")
