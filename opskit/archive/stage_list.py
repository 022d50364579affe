"""Which stages a backup writes, and which readers undo a stored archive's recorded stages."""

from __future__ import annotations

import io

import pyrage

from opskit import errors, untrusted
from opskit.archive import age
from opskit.archive.pipeline import Stage, compression_stages

HEADER_PROBE_BYTES = 64 << 10  # an age header is well under this, however many recipients


def writer_stages(compression: str, recipients: list[age.Recipient]) -> list[Stage]:
    """tar -> compression -> age (if there are recipients)."""
    stages = compression_stages(compression)
    if recipients:
        stages.append(age.age_stage(recipients=recipients))
    return stages


def reader_stages(names: list[str], identities: list[object], archive: str) -> list[Stage]:
    """The stages `names` (as a record lists them, in writing order), set up to read back.
    Raise `ArchiveCorrupt` for a stage this opskit does not know."""
    stages: list[Stage] = []
    for name in names:
        if name == "age":
            stages.append(age.age_stage(identities=identities))
        elif name in ("zstd", "gzip"):
            stages += compression_stages(name)
        else:
            raise errors.ArchiveCorrupt(
                f"{archive}: unknown pipeline stage {untrusted.printable(name)!r}",
                "it was written by another tool or a newer opskit",
            )
    return stages


def check_can_decrypt(head: bytes, identities: list[object], archive: str) -> None:
    """Given the first bytes of an age archive, raise `WrongKey` unless one of `identities`
    opens its header (before a restore touches anything), `ArchiveCorrupt` if it is no age
    header at all."""
    if not identities:
        raise age.no_identity(archive)
    try:
        pyrage.decrypt_io(io.BytesIO(head), _Discard(), identities)
    except pyrage.DecryptError as exc:
        raise age.classified(exc, archive) from exc
    except OSError:
        pass  # the payload goes on past the probe: the header opened


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass
