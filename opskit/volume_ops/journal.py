"""The restore journal: one small file in the target that says which restore is in which phase.

A restore writes it (atomically: temp file, syncfs, rename) before each step that changes the
target, and removes it when the last step is done. Recovery acts only on what a valid journal
names: the staging and old directories are derived from the journal's restore id, never found
by their names. An `.opskit-*` entry that no journal names is user data.

Phases, and what the next run does with each (under the target's lock, so no live run owns it):
- `unpacking`: the backup is being unpacked into the staging directory; the target's contents
  are untouched. Recovery removes the staging directory: the target is as it was.
- `swap-out`: the archive was verified and the restore is committed; the current entries are
  being moved into the old directory. Recovery finishes the swap.
- `swap-in`: the staged entries are being moved up. Recovery finishes the swap.
- `delete-old`: the target holds the restored contents; the old directory is being deleted.
  Recovery finishes the deletion.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from opskit import errors
from opskit.engine import helper
from opskit.log import get_logger

log = get_logger(__name__)

JOURNAL_NAME = ".opskit-journal"
JOURNAL_TEMP_NAME = JOURNAL_NAME + ".tmp"
RESERVED_NAMES = (JOURNAL_NAME, JOURNAL_TEMP_NAME)
STAGING_PREFIX = ".opskit-restore-"
OLD_PREFIX = ".opskit-old-"
PHASES = ("unpacking", "swap-out", "swap-in", "delete-old")
COMMITTED_PHASES = ("swap-out", "swap-in", "delete-old")
JOURNAL_FORMAT = 1
MAX_JOURNAL_BYTES = 64 << 10
_RESTORE_ID = re.compile(r"[0-9a-f]{8,32}")

# Prints "absent", or "present" and the journal's first bytes; a journal that is not a regular
# file (a symlink, a directory) is reported as such and never read through.
# A temp file without its rename is a write cut short: it is dropped (the name is opskit's).
_READ_SCRIPT = f"""
cd "$1" || exit 20
rm -f {JOURNAL_TEMP_NAME} 2>/dev/null
if [ -L {JOURNAL_NAME} ] || {{ [ -e {JOURNAL_NAME} ] && [ ! -f {JOURNAL_NAME} ]; }}; then
  echo notafile; exit 0
fi
if [ -e {JOURNAL_NAME} ]; then echo present; head -c {MAX_JOURNAL_BYTES} {JOURNAL_NAME}
else echo absent; fi
"""

# Atomic and durable: the new journal reaches the disk (with everything written before it,
# e.g. the unpacked files) before it replaces the old one.
_WRITE_SCRIPT = f"""
cd "$1" || exit 20
umask 077
printf '%s' "$2" > {JOURNAL_TEMP_NAME}
sync -f {JOURNAL_TEMP_NAME}
mv -f {JOURNAL_TEMP_NAME} {JOURNAL_NAME}
sync -f .
"""

_REMOVE_SCRIPT = f"""
cd "$1" || exit 20
rm -f {JOURNAL_NAME} {JOURNAL_TEMP_NAME}
sync -f .
"""


@dataclass(frozen=True)
class Journal:
    """One restore's record in its target."""

    restore_id: str
    backup_id: str
    phase: str
    format: int = JOURNAL_FORMAT

    @property
    def staging(self) -> str:
        return STAGING_PREFIX + self.restore_id

    @property
    def old(self) -> str:
        return OLD_PREFIX + self.restore_id

    @property
    def committed(self) -> bool:
        """Whether the archive was verified and the swap began: from here on, only forward."""
        return self.phase in COMMITTED_PHASES

    def at(self, phase: str) -> Journal:
        return Journal(self.restore_id, self.backup_id, phase, self.format)

    def to_text(self) -> str:
        document = asdict(self)
        document.update(staging=self.staging, old=self.old)  # for people reading it by hand
        return json.dumps(document, sort_keys=True)


def parse_journal(text: str) -> Journal:
    """Return the journal in `text`. Raise ValueError if it is not a valid one."""
    try:
        document = json.loads(text)
    except RecursionError:  # nesting deeper than Python's stack: hostile, not a journal
        raise ValueError("nested too deeply") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    restore_id, backup_id, phase = (document.get(k) for k in ("restore_id", "backup_id", "phase"))
    if not isinstance(restore_id, str) or not _RESTORE_ID.fullmatch(restore_id):
        raise ValueError("bad restore_id")
    if not isinstance(backup_id, str) or not backup_id.isprintable() or len(backup_id) > 200:
        raise ValueError("bad backup_id")
    if phase not in PHASES:
        raise ValueError("bad phase")
    if document.get("format") != JOURNAL_FORMAT:
        raise ValueError("unknown format")
    return Journal(restore_id, backup_id, phase)


def read_journal(session: helper.HelperSession, root: str, what: str) -> Journal | None:
    """Return the journal in the mounted target `root`, or None if there is none.

    Raise `UnfinishedRestore` if a file of the journal's name is there but is not a valid
    journal: it is then left alone, and nothing is recovered.
    """
    result = session.run_checked(["sh", "-c", _READ_SCRIPT, "read", root], f"inspecting {what}")
    status, _, text = result.output.partition("\n")
    if status.strip() == "absent":
        return None
    try:
        if status.strip() != "present":
            raise ValueError("not a regular file")
        return parse_journal(text)
    except ValueError as exc:
        raise errors.UnfinishedRestore(
            f"{what} holds {JOURNAL_NAME}, which is not a valid opskit restore journal ({exc})",
            "opskit leaves it and everything else in the target alone; if it is yours, move it "
            "away and run again",
        ) from exc


def journal_present(session: helper.HelperSession, root: str, what: str) -> bool:
    """Return whether the mounted `root` holds a journal (or its temp file): something a
    backup must not archive, and that only a recovery with write access can clear."""
    names = f"{JOURNAL_NAME} {JOURNAL_TEMP_NAME}"
    script = (
        f'cd "$1" || exit 20; for n in {names}; do [ -e $n ] || [ -L $n ] && echo yes; done; true'
    )
    result = session.run_checked(["sh", "-c", script, "check", root], f"inspecting {what}")
    return "yes" in result.output


def write_journal(session: helper.HelperSession, root: str, journal: Journal) -> None:
    """Replace the target's journal with `journal`, atomically and durably."""
    session.run_checked(
        ["sh", "-c", _WRITE_SCRIPT, "journal", root, journal.to_text()],
        f"recording the restore's phase {journal.phase}",
    )
    log.debug("journal.written", phase=journal.phase, restore=journal.restore_id)


def remove_journal(session: helper.HelperSession, root: str) -> None:
    session.run_checked(["sh", "-c", _REMOVE_SCRIPT, "journal", root], "removing the journal")
