"""The errors opskit raises: each carries a one-line message for people and an exit code.

The CLI catches only `OpskitError`, prints `error: <message>` on stderr and exits with
`exit_code`. Lower layers translate library exceptions (docker, botocore, OSError) into these
with `raise ... from`, so the original stays in the debug log but never reaches the user as a
traceback.
"""

from __future__ import annotations

import signal

EXIT_FAILURE = 1
EXIT_USAGE = 2


class OpskitError(Exception):
    """Base class. `str(error)` is the user-facing one-line message."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}: {self.hint}"
        return self.message


class UsageError(OpskitError):
    """The command line asks for something impossible or contradictory."""

    exit_code = EXIT_USAGE


class ConfigError(OpskitError):
    """The config file (or a compose file given as input) cannot be read or is invalid."""

    exit_code = EXIT_USAGE


class EngineUnreachable(OpskitError):
    """No Docker engine answers at the configured address."""


class EngineError(OpskitError):
    """The engine answered with an error we could not classify more precisely."""


class NotFound(OpskitError):
    """A volume, path, backup or object that the user named does not exist."""


class HelperImageMissing(OpskitError):
    """The helper image is neither present nor pullable."""


class HelperFailed(OpskitError):
    """The helper container exited with an error (tar failed, target not writable, ...)."""


class TargetNotEmpty(OpskitError):
    """A restore target has data and --force was not given."""


class TargetInUse(OpskitError):
    """Running containers use the target and --stop-containers was not given."""


class TargetLocked(OpskitError):
    """Another opskit run holds the lock of this volume or path (and --wait ran out)."""


class UnfinishedRestore(OpskitError):
    """A target holds an interrupted restore that could not be finished or rolled back now."""


class FidelityLoss(OpskitError):
    """The helper's tar would silently change something the source holds (owners, ACLs, ...)."""


class SwapFailed(OpskitError):
    """A restore's final swap of old and new contents failed midway (both are kept)."""


class StorageError(OpskitError):
    """The backup store failed (permissions, network, bucket, ...)."""


class StorageUnreachable(StorageError):
    """The backup store cannot be reached at all (endpoint down, DNS, TLS)."""


class DiskFull(StorageError):
    """No space left where bytes were being written."""


class ArchiveCorrupt(OpskitError):
    """The archive cannot be decompressed or unpacked: corrupt or truncated."""


class MetadataCorrupt(OpskitError):
    """A backup's metadata file cannot be read or is not a valid record."""


class WrongKey(OpskitError):
    """An encrypted archive and no identity (or not the right one) to open it."""


class ArchiveUnsafe(OpskitError):
    """The archive holds an entry a restore must not create (path escape, device node, ...)."""


class ChecksumMismatch(ArchiveCorrupt):
    """The archive's bytes do not match the sha256 recorded at backup time."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised by the CLI's signal handlers.

    A BaseException like KeyboardInterrupt, so no `except Exception` swallows it, and cleanup in
    `finally` blocks still runs on the way out.
    """

    def __init__(self, signal_name: str = "SIGINT") -> None:
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")

    @property
    def exit_code(self) -> int:
        """What a shell shows for a process ended by the signal: 130 for SIGINT, 143 for
        SIGTERM, 129 for SIGHUP."""
        try:
            return 128 + int(signal.Signals[self.signal_name])
        except KeyError:
            return 130
