"""The ways to move tar bytes in and out of a helper container, and the one place that chooses.

- `fifo`: the helper's tar reads/writes a FIFO in a host directory bind-mounted at /io.
  The host end sets the pipe to 1 MiB, which makes this path as fast as tar on the host. Needs an
  engine on this machine (it must see our directory). The helper's tar is detected once per
  session: GNU tar writes POSIX (pax) archives with xattrs, ACLs, SELinux labels, sparse files,
  large owners and exact mtimes; busybox tar writes what it can (tar_flavour.py has the flags).
- `remote` (remote_transfer.py): the helper's tar on an exec's stdin/stdout, read and written
  on the exec's own API connection with large reads. Any engine, no shared filesystem, no
  container lock held, and the helper's tar's fidelity. `auto` takes it for an engine that is
  not on this machine.
- `archive-api`: the engine's archive endpoints (GET/PUT /containers/{id}/archive). Kept for
  engines where exec streams are not allowed. It holds the helper's container lock for the
  whole transfer (inspect, exec and kill of the helper wait), and is ~10x slower. The engine's
  own tar (Go archive/tar) keeps large owners, file capabilities, pre-1970 mtimes (in the
  archive) and directory mtimes; it loses ACLs, other xattrs, sparse holes and sub-second
  mtimes. Restoring through it also sets pre-1970 mtimes to 0 and drops setuid/setgid from
  files that have hardlinks (the engine chowns the link after the file's chmod).

Fidelity is described by `TarFidelity(writer, keeps)`: `keeps` uses the vocabulary of
tar_flavour.py (`large-owners`, `xattrs`, `capabilities`, `acls`, `selinux`, `sparse`,
`subsecond-mtimes`, `pre-1970-mtimes`, `dir-mtimes`). Before a backup, `check_source` refuses
data that the writer would silently change (source_check.py).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import fcntl
import os
import re
import secrets
import select
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.types

from opskit import errors
from opskit.engine import source_check, tar_flavour
from opskit.engine.client import Engine, translated_errors
from opskit.engine.helper import GNU_TAR_IMAGE, ExecResult, HelperSession, RunningExec
from opskit.log import get_logger
from opskit.process_owner import owner_in_name, owner_is_alive, owner_token
from opskit.untrusted import printable

log = get_logger(__name__)

TRANSFER_MODES = ("auto", "fifo", "remote", "archive-api")
CHUNK_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
IO_MOUNT_POINT = "/io"
# /run is shared with dockerd even when opskit runs under systemd with PrivateTmp=yes.
IO_PARENT_CANDIDATES = (Path("/run/opskit"),)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
ARCHIVE_ENDPOINT_WRITER = "engine archive endpoint"
# Measured on Docker 20.10 (tests/integration/test_fidelity.py): Go's archive/tar as the engine
# uses it writes PAX owners and times, truncated to the second, and only this one xattr.
ARCHIVE_ENDPOINT_KEEPS = ("large-owners", "capabilities", "pre-1970-mtimes", "dir-mtimes")

ChunkSink = Callable[[bytes], object]
_SHORT_WRITE = re.compile(r"Wrote only \d+ of \d+ bytes")


@dataclass(frozen=True)
class TarFidelity:
    """The tar that writes an archive (`gnu tar 1.34`, `busybox tar 1.35.0`, `engine archive
    endpoint`), and what it keeps beyond owners, modes, links and file mtimes (tokens of
    tar_flavour.KEEPS_VOCABULARY, e.g. `xattrs`, `acls`, `sparse`, `large-owners`)."""

    writer: str
    keeps: tuple[str, ...]


class Transfer(abc.ABC):
    """Moves a tar stream out of, or into, a directory inside a helper session."""

    name: str

    def mounts(self) -> list[docker.types.Mount]:
        """Extra mounts the helper needs for this transfer."""
        return []

    @abc.abstractmethod
    def export_tar(self, session: HelperSession, directory: str, sink: ChunkSink) -> None:
        """Stream a tar of `directory`'s contents (entries `./...`) into `sink`, chunk by chunk."""

    @abc.abstractmethod
    def import_tar(self, session: HelperSession, directory: str, chunks: Iterable[bytes]) -> None:
        """Extract the tar stream `chunks` into the existing `directory`, with numeric owners."""

    def close(self) -> None:
        """Remove what the transfer created on the host."""

    def fidelity(self, session: HelperSession) -> TarFidelity:
        """Which tar writes archives on this path, and what it keeps beyond the basics."""
        flavour = session.tar_flavour()
        return TarFidelity(writer=flavour.writer, keeps=flavour.keeps)

    def check_source(
        self, session: HelperSession, directory: str, host_directory: str | None
    ) -> None:
        """Raise `FidelityLoss` if this path's tar would silently change something in
        `directory` (large owners, ACLs, xattrs). `host_directory` is the same data on this
        machine, if the engine shares our filesystem: only there are ACLs and xattrs seen.
        Without it, large owners are looked for in the helper."""
        fidelity = self.fidelity(session)
        finding = None
        searched_host = False
        if host_directory is not None:
            try:
                finding = source_check.first_loss(host_directory, fidelity.keeps)
                searched_host = True
            except OSError as exc:
                log.debug("source_check.host_unreadable", path=host_directory, error=str(exc))
        if not searched_host and "large-owners" not in fidelity.keeps:
            finding = source_check.first_large_owner_in_helper(session, directory)
        if finding is not None:
            raise errors.FidelityLoss(
                f"the source holds {finding.describe()}, which {_writer_phrase(fidelity.writer)} "
                f"{_how_lost(finding.kind)}",
                self._fix(finding.kind),
            )

    def _fix(self, kind: str) -> str:
        if kind == "trusted":
            return (
                "no helper can read them (they need CAP_SYS_ADMIN): back this data up on its "
                "host (GNU tar --xattrs as root), or remove those attributes"
            )
        return (
            f"use a helper image with GNU tar (--helper-image {GNU_TAR_IMAGE}, built by "
            "scripts/setup-engine.sh)"
        )


def _writer_phrase(writer: str) -> str:
    return "the engine's archive endpoint" if writer == ARCHIVE_ENDPOINT_WRITER else writer


def _how_lost(kind: str) -> str:
    if kind == "large-owners":
        return "cuts to 24 bits"
    if kind == "acls":
        return "loses (and the group bits would then show the ACL mask)"
    if kind == "trusted":
        return "cannot read"
    return "loses"


def choose_transfer(engine: Engine, mode: str = "auto") -> Transfer:
    """Return the transfer for `mode`; `auto` picks the FIFO path when the engine runs on this
    machine (it said so: client.runs_on_this_host), else the remote path."""
    if mode not in TRANSFER_MODES:
        raise errors.UsageError(
            f"unknown transfer {mode!r}", f"use one of {', '.join(TRANSFER_MODES)}"
        )
    if mode == "fifo" or (mode == "auto" and engine.shares_filesystem):
        if not engine.shares_filesystem and mode == "fifo":
            log.warning("forcing the fifo transfer on an engine that may not see this machine")
        return FifoTransfer()
    if mode == "archive-api":
        return ArchiveApiTransfer(engine)
    from opskit.engine.remote_transfer import RemoteTransfer  # it builds on this module

    return RemoteTransfer(engine)


@contextlib.contextmanager
def open_transfer(engine: Engine, mode: str = "auto") -> Iterator[Transfer]:
    transfer = choose_transfer(engine, mode)
    try:
        yield transfer
    finally:
        transfer.close()


def _make_io_directory() -> Path:
    """A private directory for this run's FIFOs, named after its owner so that a later run can
    remove it if this one is killed."""
    prefix = f"io-{owner_token()}+"
    for parent in IO_PARENT_CANDIDATES:
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _remove_orphaned_io_directories(parent)
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="opskit-" + prefix))


def _remove_orphaned_io_directories(parent: Path) -> None:
    for directory in parent.glob("io-*+*+*+*"):
        owner = owner_in_name(directory.name[len("io-") :])
        if owner and not owner_is_alive(owner):
            shutil.rmtree(directory, ignore_errors=True)


class FifoTransfer(Transfer):
    name = "fifo"

    def __init__(self) -> None:
        self.io_directory = _make_io_directory()

    def mounts(self) -> list[docker.types.Mount]:
        return [
            docker.types.Mount(target=IO_MOUNT_POINT, source=str(self.io_directory), type="bind")
        ]

    def close(self) -> None:
        shutil.rmtree(self.io_directory, ignore_errors=True)

    def _new_fifo(self, stem: str) -> tuple[Path, str]:
        name = f"{stem}-{secrets.token_hex(4)}.tar"
        host_path = self.io_directory / name
        os.mkfifo(host_path, 0o600)
        return host_path, f"{IO_MOUNT_POINT}/{name}"

    def export_tar(self, session: HelperSession, directory: str, sink: ChunkSink) -> None:
        host_path, helper_path = self._new_fifo("export")
        descriptor = os.open(host_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            _grow_pipe(descriptor)
            tar = session.start(session.tar_flavour().create_command(helper_path, directory))
            _wait_for_writer(descriptor, tar)
            os.set_blocking(descriptor, True)
            while chunk := os.read(descriptor, CHUNK_SIZE):
                sink(chunk)
        finally:
            os.close(descriptor)
            host_path.unlink(missing_ok=True)
        finish_export(session, tar.wait(), directory)

    def import_tar(self, session: HelperSession, directory: str, chunks: Iterable[bytes]) -> None:
        host_path, helper_path = self._new_fifo("import")
        tar = session.start(session.tar_flavour().extract_command(helper_path, directory))
        descriptor = -1
        try:
            descriptor = _open_writer(host_path, tar)
            _grow_pipe(descriptor)
            os.set_blocking(descriptor, True)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
        except BrokenPipeError:
            pass  # tar stopped reading; its exit code below says why
        finally:
            if descriptor >= 0:
                os.close(descriptor)
            host_path.unlink(missing_ok=True)
        finish_import(tar.wait(), directory)


def finish_export(session: HelperSession, result: ExecResult, directory: str) -> None:
    """Raise `HelperFailed` if the helper's tar that wrote an archive of `directory` failed."""
    if result.exit_code == 1 and session.tar_flavour().kind == tar_flavour.GNU:
        # GNU tar's "some files differ": a file changed, shrank or went while it was read.
        # The archive is whole; a live source (no --stop-containers) was already warned of.
        log.warning("the source changed while it was read", detail=tar_error(result))
        return
    if result.exit_code != 0:
        raise errors.HelperFailed(
            f"reading {directory} in the helper container failed: {tar_error(result)}"
        )


def _grow_pipe(descriptor: int) -> None:
    """1 MiB instead of 64 KiB: measured 6.5x faster through the helper (measurements.md)."""
    try:
        fcntl.fcntl(descriptor, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as exc:
        log.debug("pipe size stays default", error=str(exc))


def _wait_for_writer(descriptor: int, tar: RunningExec) -> None:
    """Wait until the helper's tar opened the FIFO (data or hang-up shows), or it ended early.

    Linux reports no POLLHUP on a FIFO that never had a writer, so an early exit of tar would
    otherwise block us forever.
    """
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLHUP)
    while not poller.poll(100):
        if tar.done:
            if poller.poll(0):
                return
            result = tar.wait()
            raise errors.HelperFailed(f"the helper's tar did not start: {tar_error(result)}")


def _open_writer(host_path: Path, tar: RunningExec) -> int:
    """Open the FIFO for writing once the helper's tar opened it for reading."""
    while True:
        try:
            return os.open(host_path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        if tar.done:
            result = tar.wait()
            raise errors.HelperFailed(f"the helper's tar did not start: {tar_error(result)}")
        time.sleep(0.02)


def finish_import(result: ExecResult, directory: str) -> None:
    """Raise `HelperFailed` if the helper's tar that extracted into `directory` failed."""
    if result.exit_code != 0:
        raise errors.HelperFailed(
            f"writing into {directory} in the helper container failed: {tar_error(result)}"
        )


def tar_error(result: ExecResult) -> str:
    """tar's first real error line (not "error exit delayed from previous errors"), printable;
    the whole bounded output goes to the debug log."""
    log.debug("tar.failed", exit_code=result.exit_code, output=result.output)
    line = result.first_error_line()
    if _SHORT_WRITE.search(line):
        # GNU tar reports a disk that filled up only as a short write, with no errno.
        line += " (a short write: No space left on device, or over quota)"
    return printable(line)


class ArchiveApiTransfer(Transfer):
    """GET/PUT /containers/{id}/archive: no shared filesystem, no tar binary needed."""

    name = "archive-api"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fidelity(self, session: HelperSession) -> TarFidelity:
        """The engine writes the archive; the helper's tar plays no part."""
        return TarFidelity(writer=ARCHIVE_ENDPOINT_WRITER, keeps=ARCHIVE_ENDPOINT_KEEPS)

    def _fix(self, kind: str) -> str:
        if kind == "trusted":
            return super()._fix(kind)
        return (
            f"use the fifo transfer (--transfer fifo, with the engine on this machine) and a "
            f"helper image with GNU tar (--helper-image {GNU_TAR_IMAGE}, built by "
            "scripts/setup-engine.sh)"
        )

    def export_tar(self, session: HelperSession, directory: str, sink: ChunkSink) -> None:
        api = self.engine.client.api
        with translated_errors(f"reading {directory} through the engine's archive endpoint"):
            # docker-py's get_archive() never closes its response; if we stop reading midway
            # (disk full, Ctrl-C), the engine blocks on the stream and then on removing the
            # helper. So the request is made here, and the response closed in any case.
            # A path ending in "/." gives entries "./..." like `tar -C directory .` does.
            response = api._get(
                api._url("/containers/{0}/archive", session.container_id),
                params={"path": directory.rstrip("/") + "/."},
                stream=True,
            )
            try:
                api._raise_for_status(response)
                for chunk in response.iter_content(CHUNK_SIZE, decode_unicode=False):
                    sink(chunk)
            finally:
                response.close()

    def import_tar(self, session: HelperSession, directory: str, chunks: Iterable[bytes]) -> None:
        with translated_errors(f"writing into {directory} through the engine's archive endpoint"):
            # docker-py streams a generator body with chunked encoding: bounded memory.
            accepted = self.engine.client.api.put_archive(
                session.container_id, directory, data=iter(chunks)
            )
        if not accepted:
            raise errors.HelperFailed(f"the engine refused the archive for {directory}")
