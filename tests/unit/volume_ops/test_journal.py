"""The restore journal's text: what parse_journal accepts and refuses, and what a journal names."""

from __future__ import annotations

import json

import pytest

from opskit.volume_ops.journal import (
    COMMITTED_PHASES,
    JOURNAL_FORMAT,
    MAX_JOURNAL_BYTES,
    OLD_PREFIX,
    PHASES,
    STAGING_PREFIX,
    Journal,
    parse_journal,
)

RESTORE_ID = "0123456789abcdef"
BACKUP_ID = "pgdata-20261122T101500Z-3f2a"


def journal_text(without: str = "", **changes: object) -> str:
    """A valid journal's JSON text, with `changes` applied and the key `without` left out."""
    document: dict[str, object] = {
        "restore_id": RESTORE_ID,
        "backup_id": BACKUP_ID,
        "phase": "unpacking",
        "format": JOURNAL_FORMAT,
    }
    document.update(changes)
    document.pop(without, None)
    return json.dumps(document)


@pytest.mark.parametrize("phase", PHASES)
def test_parse_journal_accepts_what_to_text_writes_in_each_phase(phase):
    written = Journal(RESTORE_ID, BACKUP_ID, phase)

    assert parse_journal(written.to_text()) == written


def test_parse_journal_accepts_a_journal_without_the_names_written_for_people():
    assert parse_journal(journal_text()) == Journal(RESTORE_ID, BACKUP_ID, "unpacking")


@pytest.mark.parametrize("restore_id", ["0123abc", "0" * 33, "0123456789ABCDEF", "0123-4567"])
def test_parse_journal_refuses_a_restore_id_of_the_wrong_form(restore_id):
    with pytest.raises(ValueError, match="restore_id"):
        parse_journal(journal_text(restore_id=restore_id))


@pytest.mark.parametrize(
    "restore_id", ["../../etc", "0123456789abcdef/../x", "../0123456789abcdef", "/0123456789ab"]
)
def test_parse_journal_refuses_a_restore_id_that_leaves_the_target(restore_id):
    with pytest.raises(ValueError, match="restore_id"):
        parse_journal(journal_text(restore_id=restore_id))


@pytest.mark.parametrize("restore_id", ["0123456789abcdef\n", " 0123456789abcdef", ""])
def test_parse_journal_refuses_a_restore_id_with_anything_around_it(restore_id):
    with pytest.raises(ValueError, match="restore_id"):
        parse_journal(journal_text(restore_id=restore_id))


@pytest.mark.parametrize("restore_id", [12345678, None, ["0123456789abcdef"]])
def test_parse_journal_refuses_a_restore_id_that_is_not_a_string(restore_id):
    with pytest.raises(ValueError, match="restore_id"):
        parse_journal(journal_text(restore_id=restore_id))


def test_parse_journal_refuses_a_journal_without_a_restore_id():
    with pytest.raises(ValueError, match="restore_id"):
        parse_journal(journal_text(without="restore_id"))


@pytest.mark.parametrize("phase", ["../..", "done", "UNPACKING", "swap_out", "", 1])
def test_parse_journal_refuses_an_unknown_phase(phase):
    with pytest.raises(ValueError, match="phase"):
        parse_journal(journal_text(phase=phase))


def test_parse_journal_refuses_a_journal_without_a_phase():
    with pytest.raises(ValueError, match="phase"):
        parse_journal(journal_text(without="phase"))


@pytest.mark.parametrize("journal_format", [0, 2, "1", None])
def test_parse_journal_refuses_another_format(journal_format):
    with pytest.raises(ValueError, match="format"):
        parse_journal(journal_text(format=journal_format))


def test_parse_journal_refuses_a_journal_without_a_format():
    with pytest.raises(ValueError, match="format"):
        parse_journal(journal_text(without="format"))


@pytest.mark.parametrize("text", ["[]", '"unpacking"', "1", "null", "true"])
def test_parse_journal_refuses_json_that_is_not_an_object(text):
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_journal(text)


@pytest.mark.parametrize("text", ["", "{", "phase: unpacking", "\x00\x01", journal_text()[:-1]])
def test_parse_journal_refuses_text_that_is_not_json(text):
    with pytest.raises(ValueError):
        parse_journal(text)


def test_parse_journal_refuses_deeply_nested_json_with_a_value_error():
    # The journal is read up to MAX_JOURNAL_BYTES; nesting that deep must be "invalid journal",
    # not a RecursionError (which read_journal does not catch: an internal error).
    with pytest.raises(ValueError):
        parse_journal("[" * MAX_JOURNAL_BYTES)


@pytest.mark.parametrize(
    "backup_id", ["id\x1b[2Jcleared", "two\nlines", "tab\there", "bell\x07", "nul\x00", "x" * 201]
)
def test_parse_journal_refuses_a_backup_id_that_is_not_printable_or_too_long(backup_id):
    with pytest.raises(ValueError, match="backup_id"):
        parse_journal(journal_text(backup_id=backup_id))


@pytest.mark.parametrize("backup_id", [42, ["id"], {"id": "x"}])
def test_parse_journal_refuses_a_backup_id_that_is_not_a_string(backup_id):
    with pytest.raises(ValueError, match="backup_id"):
        parse_journal(journal_text(backup_id=backup_id))


def test_parse_journal_derives_the_directories_from_the_id_not_from_the_text():
    text = journal_text(staging="../../etc", old="db.dat")

    parsed = parse_journal(text)

    assert (parsed.staging, parsed.old) == (STAGING_PREFIX + RESTORE_ID, OLD_PREFIX + RESTORE_ID)


def test_journal_staging_is_named_after_the_restore_id():
    assert Journal(RESTORE_ID, BACKUP_ID, "unpacking").staging == ".opskit-restore-" + RESTORE_ID


def test_journal_old_is_named_after_the_restore_id():
    assert Journal(RESTORE_ID, BACKUP_ID, "unpacking").old == ".opskit-old-" + RESTORE_ID


def test_journal_to_text_names_the_directories_for_people_reading_it():
    document = json.loads(Journal(RESTORE_ID, BACKUP_ID, "swap-in").to_text())

    assert document == {
        "restore_id": RESTORE_ID,
        "backup_id": BACKUP_ID,
        "phase": "swap-in",
        "format": JOURNAL_FORMAT,
        "staging": STAGING_PREFIX + RESTORE_ID,
        "old": OLD_PREFIX + RESTORE_ID,
    }


def test_journal_committed_is_false_while_unpacking():
    assert not Journal(RESTORE_ID, BACKUP_ID, "unpacking").committed


@pytest.mark.parametrize("phase", ["swap-out", "swap-in", "delete-old"])
def test_journal_committed_is_true_once_the_swap_began(phase):
    assert Journal(RESTORE_ID, BACKUP_ID, phase).committed


def test_journal_committed_phases_are_all_phases_but_the_first():
    assert COMMITTED_PHASES == PHASES[1:]


def test_journal_at_changes_only_the_phase():
    planned = Journal(RESTORE_ID, BACKUP_ID, "unpacking")

    assert planned.at("delete-old") == Journal(RESTORE_ID, BACKUP_ID, "delete-old")
