"""age encryption (age-encryption.org/v1) as a pipeline stage, with pyrage.

pyrage copies from a reader to a writer (`encrypt_io`, `decrypt_io`) and holds the GIL only
around those calls; a pump thread adapts it to the pipeline's push-style writers, as
`threads.py` does for zstandard. Memory stays at a few chunks; no plaintext reaches a file.

Keys: recipients are age X25519 public keys (`age1…`) or SSH public keys (`ssh-ed25519`,
`ssh-rsa`); identities are age identity files (`AGE-SECRET-KEY-1…` lines) or SSH private keys,
as the age CLI reads them. Secrets never leave this module's objects: messages name files and
fingerprints, never key material.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyrage

from opskit import errors, untrusted
from opskit.archive.pipeline import ChunkReader, Stage
from opskit.archive.threads import CHUNK_SIZE, DEPTH, ProducedChunks, Readable, Sink

IDENTITY_ENV = "OPSKIT_AGE_IDENTITY_FILE"
MAX_KEY_FILE_BYTES = untrusted.MIB
SSH_PREFIXES = ("ssh-ed25519 ", "ssh-rsa ")
_END = object()


@dataclass(frozen=True)
class Recipient:
    """A public key to encrypt to, and its fingerprint (what the metadata records)."""

    text: str  # `age1…` or `ssh-ed25519 AAAA…` (without the comment)
    key: object  # the pyrage recipient

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.text)


def fingerprint(recipient_text: str) -> str:
    """`sha256:` and the first 16 hex digits of the public key's sha256 (comments dropped)."""
    return "sha256:" + hashlib.sha256(recipient_text.encode()).hexdigest()[:16]


def parse_recipient(text: str) -> Recipient:
    """Given `age1…` or an SSH public key line, return the recipient. Raise `UsageError`."""
    line = text.strip()
    if "SECRET-KEY" in line.upper() or "PRIVATE KEY" in line.upper():
        # Never repeat it: this is a secret given where a public key belongs.
        raise errors.UsageError(
            "an age identity (a secret key) was given where a recipient (public key) belongs",
            "give its public key: age-keygen -y IDENTITY_FILE (and keep the secret off the "
            "command line and out of the config)",
        )
    try:
        if line.startswith("age1"):
            return Recipient(line, pyrage.x25519.Recipient.from_str(line))
        if line.startswith(SSH_PREFIXES):
            key = " ".join(line.split()[:2])  # the comment is not part of the key
            return Recipient(key, pyrage.ssh.Recipient.from_str(key))
    except pyrage.RecipientError as exc:
        raise errors.UsageError(
            f"not a valid age recipient: {_shown(line)} ({exc})",
            "give an age1… public key (age-keygen -y KEY) or an ssh-ed25519/ssh-rsa public key",
        ) from exc
    raise errors.UsageError(
        f"not an age recipient: {_shown(line)}",
        "give an age1… public key (age-keygen -y KEY) or an ssh-ed25519/ssh-rsa public key",
    )


def read_recipients_file(path: Path) -> list[Recipient]:
    """The recipients in `path`, one per line (`#` comments and blank lines skipped), as
    `age -R` reads them. Raise `UsageError` if it cannot be read or holds none."""
    text = _read_key_file(path, "recipients file")
    recipients = [
        parse_recipient(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not recipients:
        raise errors.UsageError(f"recipients file {_path(path)} holds no recipient")
    return recipients


def public_recipients(identities: list[object]) -> list[Recipient]:
    """The recipients of the age X25519 identities among `identities` (SSH private keys do
    not give their public key through pyrage)."""
    recipients = []
    for identity in identities:
        if isinstance(identity, pyrage.x25519.Identity):
            recipients.append(parse_recipient(str(identity.to_public())))
    return recipients


def unique_recipients(recipients: Iterable[Recipient]) -> list[Recipient]:
    return list({recipient.text: recipient for recipient in recipients}.values())


def read_identities(path: Path) -> list[object]:
    """The identities in `path`: an age identity file or an SSH private key. Raise
    `UsageError` naming the file (never its contents) if it holds none."""
    text = _read_key_file(path, "identity file")
    shown = _path(path)
    if "PRIVATE KEY-----" in text:
        try:
            return [pyrage.ssh.Identity.from_buffer(text.encode())]
        except pyrage.IdentityError as exc:
            raise errors.UsageError(
                f"identity file {shown} is not a usable SSH private key (encrypted SSH keys "
                "are not supported)",
                "give an age identity file or an unencrypted ssh-ed25519/ssh-rsa key",
            ) from exc
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError as exc:
            raise errors.UsageError(
                f"identity file {shown} has a line that is not an age identity",
                "give a file made by age-keygen (AGE-SECRET-KEY-1… lines) or an SSH private key",
            ) from exc
    if not identities:
        raise errors.UsageError(f"identity file {shown} holds no identity")
    return identities


def identity_file_from(given: Path | None) -> Path | None:
    """`--identity`, else `$OPSKIT_AGE_IDENTITY_FILE`, else None."""
    if given is not None:
        return given
    from_env = os.environ.get(IDENTITY_ENV)
    return Path(from_env) if from_env else None


def _read_key_file(path: Path, what: str) -> str:
    try:
        return untrusted.read_text_file(path, MAX_KEY_FILE_BYTES, what)
    except errors.ConfigError as exc:
        raise errors.UsageError(exc.message, exc.hint) from exc


def _shown(text: str) -> str:
    """A recipient as given, for a message: printable, and short."""
    shown = untrusted.printable(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _path(path: Path) -> str:
    """A file's path for a message: printable and whole (its name is the useful part)."""
    return untrusted.printable(str(path))


class EncryptingWriter:
    """Accepts plaintext; a thread encrypts it to `recipients` into `sink`. Call `close()`."""

    def __init__(self, sink: Sink, recipients: list[Recipient]) -> None:
        if not recipients:
            raise errors.UsageError("encryption needs at least one recipient")
        self._fed = _FedReader()
        self._error: BaseException | None = None
        keys = [recipient.key for recipient in recipients]
        self._thread = threading.Thread(
            target=self._run, args=(sink, keys), name="opskit-age", daemon=True
        )
        self._thread.start()

    def _run(self, sink: Sink, keys: list[object]) -> None:
        try:
            out = _Coalescing(sink)
            pyrage.encrypt_io(self._fed, out, keys)
            out.flush()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the writer's thread
            self._error = exc
            self._fed.stop()

    def write(self, data: bytes | memoryview) -> int:
        if not self._fed.put(bytes(data)):
            self._raise()
        return len(data)

    def flush(self) -> None:
        """Compressors flush their output; ordering is kept by the queue."""

    def close(self) -> None:
        self._fed.put(_END)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        self._fed.stop()
        self._thread.join(timeout=30)

    def _raise(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, pyrage.EncryptError):
            raise errors.OpskitError(f"age encryption failed: {error}") from error
        raise error


class _FedReader:
    """The reader side of a bounded queue that the caller's writes fill (for `encrypt_io`)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
        self._buffer = memoryview(b"")
        self._stopped = threading.Event()
        self._done = False

    def put(self, item: object) -> bool:
        """Queue `item`; False if the reading side stopped (it failed)."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        self._stopped.set()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = CHUNK_SIZE
        while not self._buffer:
            if self._done:
                return b""
            item = self._get()
            if item is _END:
                self._done = True
                return b""
            self._buffer = memoryview(item)  # type: ignore[arg-type]
        piece = bytes(self._buffer[:size])
        self._buffer = self._buffer[len(piece) :]
        return piece

    def readinto(self, target: bytearray | memoryview) -> int:
        # pyrage reads 8 KiB at a time: copy straight from the queued chunk, no bytes object.
        while not self._buffer:
            if self._done:
                return 0
            item = self._get()
            if item is _END:
                self._done = True
                return 0
            self._buffer = memoryview(item)  # type: ignore[arg-type]
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def _get(self) -> object:
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopped.is_set():
                    return _END


class _Coalescing:
    """Gathers pyrage's 64 KiB writes into 1 MiB ones: fewer queue hand-overs downstream."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:
        self._pending += data
        if len(self._pending) >= CHUNK_SIZE:
            self.sink.write(bytes(self._pending))
            self._pending.clear()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self.sink.write(bytes(self._pending))
            self._pending.clear()


def decrypted(stored: Readable, identities: list[object], name: str) -> ChunkReader:
    """Given the stored bytes of an age archive, return a readable of its plaintext, decrypted
    in a thread. Raise (when read) `WrongKey` if no identity opens it, `ArchiveCorrupt` if it
    is truncated or tampered with."""
    if not identities:
        raise no_identity(name)

    def produce(sink: Sink) -> None:
        try:
            out = _Coalescing(sink)
            pyrage.decrypt_io(_Reading(stored), out, identities)
            out.flush()
        except pyrage.DecryptError as exc:
            raise classified(exc, name) from exc
        except OSError as exc:
            if exc.errno:
                raise  # reading the store failed: the caller classifies it
            raise classified(exc, name) from exc

    return ChunkReader(ProducedChunks(produce))


def age_stage(recipients: list[Recipient] = (), identities: list[object] = ()) -> Stage:  # type: ignore[assignment]
    """The age stage: it encrypts to `recipients` (backup) or decrypts with `identities`."""
    return Stage(
        "age",
        ".age",
        lambda sink: EncryptingWriter(sink, list(recipients)),
        lambda readable, name: decrypted(readable, list(identities), name),
    )


def no_identity(name: str) -> errors.WrongKey:
    """The error for an encrypted archive and no identity to open it."""
    return errors.WrongKey(
        f"{name} is encrypted with age",
        f"give the identity with --identity FILE or ${IDENTITY_ENV}",
    )


def classified(exc: Exception, name: str) -> errors.OpskitError:
    text = str(exc)
    if "no matching keys" in text.lower() or "no identity" in text.lower():
        return errors.WrongKey(
            f"none of the given identities can decrypt {name}",
            "give the identity whose recipient the backup was encrypted to (--identity FILE)",
        )
    return errors.ArchiveCorrupt(
        f"{name} is not a valid age archive: truncated or tampered with "
        f"({untrusted.printable(text)})",
        "restore another backup (opskit volume list)",
    )


class _Reading:
    """A file-like view of a `Readable` for pyrage (which calls readinto and readable)."""

    def __init__(self, stored: Readable) -> None:
        self.stored = stored

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.stored.read(size if size > 0 else CHUNK_SIZE)

    def readinto(self, target: bytearray | memoryview) -> int:
        piece = self.stored.read(len(target))
        target[: len(piece)] = piece
        return len(piece)
