"""age encryption as a pipeline stage: keys and fingerprints, the stage's round trip, damaged
ciphertext, the header probe before a restore, the age CLI reading what opskit writes (and the
reverse), and the records of encrypted backups.

Keys are made by the real `age-keygen` and `ssh-keygen` (installed by `scripts/bootstrap.sh
test`); no engine is needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from opskit import errors
from opskit.archive import age, stage_list
from opskit.archive.pipeline import ArchiveWriter, HashingReader, archive_suffix, tar_chunks
from opskit.repository import catalog

MiB = 1 << 20
AGE_MAGIC = b"age-encryption.org/v1\n"
# age's STREAM: 64 KiB plaintext chunks, each sealed with a 16-byte tag.
PAYLOAD_CHUNK = 64 * 1024 + 16
NONCE_SIZE = 16
TOOLS = ("age", "age-keygen", "ssh-keygen")
ARCHIVE = "pgdata-20261126T095132Z-1a2b.tar.zst.age"


# --- keys made by the real tools ------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Key files in `directory`: two age identities, an ed25519 and an RSA SSH key pair."""

    directory: Path
    age_identity: Path
    age_public: str
    age_secret: str  # the AGE-SECRET-KEY-1… line
    other_identity: Path
    other_public: str
    ssh_ed25519: Path
    ssh_ed25519_public: str  # with its comment
    ssh_rsa: Path
    ssh_rsa_public: str


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run `bash scripts/bootstrap.sh test`",
            pytrace=False,
        )


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr}"
    return done.stdout


def _age_identity(path: Path) -> tuple[str, str]:
    """Make an age identity file at `path`; return (public key, secret line)."""
    _run("age-keygen", "-o", str(path))
    public = _run("age-keygen", "-y", str(path)).strip()
    secret = next(line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET"))
    return public, secret


def _ssh_key(path: Path, kind: str, comment: str, passphrase: str = "") -> str:
    """Make an SSH key pair at `path`; return the public key line (with its comment)."""
    extra = ["-b", "2048"] if kind == "rsa" else []
    _run("ssh-keygen", "-q", "-t", kind, *extra, "-N", passphrase, "-C", comment, "-f", str(path))
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    _require_tools()
    directory = tmp_path_factory.mktemp("age-keys")
    age_public, age_secret = _age_identity(directory / "key.txt")
    other_public, _ = _age_identity(directory / "other.txt")
    ed25519_public = _ssh_key(directory / "id_ed25519", "ed25519", "ops@backup-host")
    rsa_public = _ssh_key(directory / "id_rsa", "rsa", "rsa@backup-host")
    return Keys(
        directory=directory,
        age_identity=directory / "key.txt",
        age_public=age_public,
        age_secret=age_secret,
        other_identity=directory / "other.txt",
        other_public=other_public,
        ssh_ed25519=directory / "id_ed25519",
        ssh_ed25519_public=ed25519_public,
        ssh_rsa=directory / "id_rsa",
        ssh_rsa_public=rsa_public,
    )


def _one_line(error: errors.OpskitError) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text, f"not one line: {text!r}"
    return text


# --- recipients and fingerprints ------------------------------------------------------------


def test_parse_recipient_accepts_an_age_public_key(keys):
    recipient = age.parse_recipient(f"  {keys.age_public}\n")

    assert recipient.text == keys.age_public
    assert recipient.fingerprint == age.fingerprint(keys.age_public)


def test_parse_recipient_drops_the_comment_of_an_ssh_ed25519_key(keys):
    kind, body, comment = keys.ssh_ed25519_public.split(" ", 2)

    recipient = age.parse_recipient(keys.ssh_ed25519_public)
    other_comment = age.parse_recipient(f"{kind} {body} someone-else@laptop")
    no_comment = age.parse_recipient(f"{kind} {body}")

    assert comment == "ops@backup-host"
    assert recipient.text == f"{kind} {body}"
    assert recipient.fingerprint == other_comment.fingerprint == no_comment.fingerprint


def test_parse_recipient_accepts_an_ssh_rsa_key(keys):
    recipient = age.parse_recipient(keys.ssh_rsa_public)

    assert recipient.text == " ".join(keys.ssh_rsa_public.split()[:2])
    assert recipient.text.startswith("ssh-rsa AAAA")


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "",
        "age1notakey",
        "age1" + "q" * 58,
        "ssh-ed25519 AAAAnot-base64 comment",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
        "age1abc\x1b[31mred",
    ],
)
def test_parse_recipient_refuses_what_is_not_a_public_key_in_one_line(text):
    with pytest.raises(errors.UsageError) as caught:
        age.parse_recipient(text)

    message = _one_line(caught.value)
    assert "recipient" in message
    assert "\x1b" not in message
    assert caught.value.exit_code == errors.EXIT_USAGE


def test_parse_recipient_never_echoes_an_age_secret_key(keys):
    """Pasting the identity instead of its public key is an easy mistake; the message (shown
    on a terminal, in logs, in CI output) must not repeat the secret."""
    with pytest.raises(errors.UsageError) as caught:
        age.parse_recipient(keys.age_secret)

    message = _one_line(caught.value)
    body = keys.age_secret.removeprefix("AGE-SECRET-KEY-1")
    assert body[:12] not in message, f"the secret key is echoed: {message}"


def test_parse_recipient_never_echoes_an_ssh_private_key(keys):
    private = keys.ssh_ed25519.read_text()
    # The first base64 line is the format's header and the public key; the rest is secret.
    secret_lines = [line for line in private.splitlines() if not line.startswith("-----")][1:]

    with pytest.raises(errors.UsageError) as caught:
        age.parse_recipient(private)

    message = _one_line(caught.value)
    assert secret_lines
    for line in secret_lines:
        assert line[:16] not in message, f"the private key is echoed: {message}"


def test_fingerprint_is_sha256_prefixed_16_hex_digits_and_stable(keys):
    first = age.fingerprint(keys.age_public)
    again = age.parse_recipient(keys.age_public).fingerprint

    assert re.fullmatch(r"sha256:[0-9a-f]{16}", first)
    assert first == again
    assert first == "sha256:" + hashlib.sha256(keys.age_public.encode()).hexdigest()[:16]


def test_fingerprint_is_not_the_key_and_differs_between_keys(keys):
    fingerprints = {
        age.parse_recipient(text).fingerprint
        for text in (keys.age_public, keys.other_public, keys.ssh_ed25519_public,
                     keys.ssh_rsa_public)
    }  # fmt: skip

    assert len(fingerprints) == 4
    for fingerprint in fingerprints:
        hex_part = fingerprint.removeprefix("sha256:")
        assert hex_part not in keys.age_public.lower()
        assert "age1" not in fingerprint and "AAAA" not in fingerprint


def test_read_recipients_file_skips_comments_and_blank_lines(keys, tmp_path):
    path = tmp_path / "recipients.txt"
    path.write_text(
        "# the offsite key\n"
        f"{keys.age_public}\n"
        "\n"
        "   # an indented comment\n"
        f"  {keys.ssh_ed25519_public}  \n"
        "\t\n"
        f"{keys.ssh_rsa_public}"  # no final newline
    )

    recipients = age.read_recipients_file(path)

    assert [recipient.text for recipient in recipients] == [
        keys.age_public,
        " ".join(keys.ssh_ed25519_public.split()[:2]),
        " ".join(keys.ssh_rsa_public.split()[:2]),
    ]


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n   \n# another\n"])
def test_read_recipients_file_without_a_recipient_is_an_error_naming_the_file(
    content, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = Path("empty-recipients.txt")
    path.write_text(content)

    with pytest.raises(errors.UsageError) as caught:
        age.read_recipients_file(path)

    message = _one_line(caught.value)
    assert "empty-recipients.txt" in message
    assert "no recipient" in message


def test_read_recipients_file_that_is_missing_is_a_usage_error(tmp_path):
    with pytest.raises(errors.UsageError) as caught:
        age.read_recipients_file(tmp_path / "no-such-file.txt")

    assert "no-such-file.txt" in _one_line(caught.value)


def test_read_recipients_file_with_a_bad_line_refuses_the_file(keys, tmp_path):
    path = tmp_path / "recipients.txt"
    path.write_text(f"{keys.age_public}\nnot-a-key\n")

    with pytest.raises(errors.UsageError) as caught:
        age.read_recipients_file(path)

    assert "not-a-key" in _one_line(caught.value)


def test_read_recipients_file_given_an_identity_file_never_echoes_the_secret(keys):
    """`--encrypt-to-file key.txt` (the identity, not the recipients) must fail without
    printing the secret key line."""
    with pytest.raises(errors.UsageError) as caught:
        age.read_recipients_file(keys.age_identity)

    message = _one_line(caught.value)
    body = keys.age_secret.removeprefix("AGE-SECRET-KEY-1")
    assert body[:12] not in message, f"the secret key is echoed: {message}"


def test_unique_recipients_keeps_the_first_of_each_key(keys):
    kind, body, _ = keys.ssh_ed25519_public.split(" ", 2)
    given = [
        age.parse_recipient(keys.age_public),
        age.parse_recipient(keys.ssh_ed25519_public),
        age.parse_recipient(keys.age_public),
        age.parse_recipient(f"{kind} {body} another-comment"),
    ]

    unique = age.unique_recipients(given)

    assert [recipient.text for recipient in unique] == [keys.age_public, f"{kind} {body}"]


# --- identities -----------------------------------------------------------------------------


def test_read_identities_of_an_age_keygen_file(keys):
    identities = age.read_identities(keys.age_identity)

    assert len(identities) == 1
    assert [recipient.text for recipient in age.public_recipients(identities)] == [keys.age_public]


def test_read_identities_of_a_file_with_several_identities(keys, tmp_path):
    path = tmp_path / "both.txt"
    path.write_text(keys.age_identity.read_text() + "\n" + keys.other_identity.read_text())

    identities = age.read_identities(path)

    publics = [recipient.text for recipient in age.public_recipients(identities)]
    assert publics == [keys.age_public, keys.other_public]


@pytest.mark.parametrize("key", ["ssh_ed25519", "ssh_rsa"])
def test_read_identities_of_an_unencrypted_ssh_private_key(key, keys):
    identities = age.read_identities(getattr(keys, key))

    assert len(identities) == 1
    assert age.public_recipients(identities) == []  # pyrage gives no SSH public key


@pytest.mark.parametrize(
    "content",
    [
        "hunter2-not-a-key-at-all\n",
        "AGE-SECRET-KEY-1HUNTER2NOTVALID\n",
        "# a comment\nAGE-SECRET-KEY-1QQQQ hunter2\n",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2hunter2\n-----END OPENSSH PRIVATE KEY-----\n",
    ],
)
def test_read_identities_of_junk_names_the_file_but_not_its_contents(
    content, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = Path("junk-identity.txt")
    path.write_text(content)

    with pytest.raises(errors.UsageError) as caught:
        age.read_identities(path)

    message = _one_line(caught.value)
    assert "junk-identity.txt" in message
    assert "hunter2" not in message.lower() and "HUNTER2" not in message
    assert "QQQQ" not in message


def test_read_identities_of_a_junk_line_after_a_valid_one_does_not_echo_the_valid_one(
    keys, tmp_path
):
    path = tmp_path / "mixed.txt"
    path.write_text(keys.age_identity.read_text() + "hunter2\n")

    with pytest.raises(errors.UsageError) as caught:
        age.read_identities(path)

    message = _one_line(caught.value)
    assert keys.age_secret[16:28] not in message
    assert "hunter2" not in message


@pytest.mark.parametrize("content", ["", "\n", "# created: 2026-11-26\n# public key: age1…\n"])
def test_read_identities_without_an_identity_is_an_error(content, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Path("no-identity.txt")
    path.write_text(content)

    with pytest.raises(errors.UsageError) as caught:
        age.read_identities(path)

    message = _one_line(caught.value)
    assert "no-identity.txt" in message and "no identity" in message


def test_read_identities_of_a_passphrase_protected_ssh_key_says_so(keys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Path("id_protected")
    _ssh_key(path, "ed25519", "protected", passphrase="correct horse")

    with pytest.raises(errors.UsageError) as caught:
        age.read_identities(path)

    message = _one_line(caught.value)
    assert "id_protected" in message
    assert "encrypted SSH keys are not supported" in message


def test_read_identities_of_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(errors.UsageError) as caught:
        age.read_identities(tmp_path / "nowhere.txt")

    assert "nowhere.txt" in _one_line(caught.value)


@pytest.mark.parametrize("read", [age.read_recipients_file, age.read_identities])
def test_key_file_errors_keep_the_file_name_of_a_long_path(read, tmp_path):
    """/srv/backup-keys/…/offsite-recipients.txt: the file's own name is the part that tells
    which file is wrong; a shortened message must keep it."""
    directory = tmp_path / ("nested-directory-" * 6)
    directory.mkdir()
    path = directory / "offsite-keys.txt"
    path.write_text("# nothing here yet\n")

    with pytest.raises(errors.UsageError) as caught:
        read(path)

    assert "offsite-keys.txt" in _one_line(caught.value)


def test_identity_file_from_prefers_the_option_then_the_environment(monkeypatch, tmp_path):
    given = tmp_path / "given.txt"
    monkeypatch.setenv(age.IDENTITY_ENV, str(tmp_path / "from-env.txt"))

    assert age.identity_file_from(given) == given
    assert age.identity_file_from(None) == tmp_path / "from-env.txt"
    monkeypatch.setenv(age.IDENTITY_ENV, "")
    assert age.identity_file_from(None) is None
    monkeypatch.delenv(age.IDENTITY_ENV)
    assert age.identity_file_from(None) is None


# --- the stage: round trips -----------------------------------------------------------------


class CollectingSink:
    """A storage writer stand-in that keeps what it receives."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes | memoryview) -> int:
        return self.buffer.write(data)


def _recipients(*texts: str) -> list[age.Recipient]:
    return [age.parse_recipient(text) for text in texts]


def _write(data: bytes, compression: str, recipients: list[age.Recipient]) -> tuple[bytes, object]:
    """Run `data` through the writer stages; return the stored bytes and the digest."""
    sink = CollectingSink()
    writer = ArchiveWriter(sink, stage_list.writer_stages(compression, recipients))
    for start in range(0, len(data), 300_000):
        writer.write(data[start : start + 300_000])
    digest = writer.finish()
    return sink.buffer.getvalue(), digest


def _read(stored: bytes, names: list[str], identities: list[object]) -> tuple[bytes, HashingReader]:
    reader = HashingReader(io.BytesIO(stored))
    stages = stage_list.reader_stages(names, identities, ARCHIVE)
    return b"".join(tar_chunks(reader, stages, ARCHIVE)), reader


@pytest.mark.parametrize("size", [0, 1, 5 * MiB], ids=["empty", "one-byte", "5MiB"])
def test_zstd_and_age_round_trip(size, keys):
    data = os.urandom(size)
    identities = age.read_identities(keys.age_identity)

    stored, digest = _write(data, "zstd", _recipients(keys.age_public))
    restored, reader = _read(stored, ["zstd", "age"], identities)

    assert restored == data
    assert stored.startswith(AGE_MAGIC)
    assert digest.size == len(stored) == reader.size
    assert digest.sha256 == hashlib.sha256(stored).hexdigest() == reader.hash.hexdigest()
    assert digest.tar_size == size


@pytest.mark.parametrize(("compression", "names"), [("gzip", ["gzip", "age"]), ("none", ["age"])])
def test_other_compressions_round_trip_through_age(compression, names, keys):
    data = os.urandom(MiB + 4321) + b"compressible line\n" * 20000
    identities = age.read_identities(keys.age_identity)

    stored, digest = _write(data, compression, _recipients(keys.age_public))
    restored, _ = _read(stored, names, identities)

    assert restored == data
    assert stored.startswith(AGE_MAGIC)
    assert digest.tar_size == len(data)


def test_age_stage_encrypts_what_is_not_readable_without_it(keys):
    data = b"a secret line that must not be in the archive\n" * 1000

    stored, _ = _write(data, "none", _recipients(keys.age_public))

    assert b"a secret line" not in stored


def test_writer_stages_name_the_archive_suffix(keys):
    recipients = _recipients(keys.age_public)

    def names(compression: str, given: list[age.Recipient]) -> list[str]:
        return [stage.name for stage in stage_list.writer_stages(compression, given)]

    assert names("zstd", []) == ["zstd"]
    assert names("zstd", recipients) == ["zstd", "age"]
    assert names("gzip", recipients) == ["gzip", "age"]
    assert names("none", recipients) == ["age"]
    assert archive_suffix(names("zstd", recipients)) == ".tar.zst.age"
    assert archive_suffix(names("none", recipients)) == ".tar.age"
    assert catalog.archive_name("x", "zstd", encrypted=True) == "x" + archive_suffix(
        names("zstd", recipients)
    )


def test_each_of_several_recipients_decrypts_alone(keys):
    data = os.urandom(200_000)
    recipients = _recipients(keys.age_public, keys.ssh_ed25519_public, keys.ssh_rsa_public)

    stored, _ = _write(data, "zstd", recipients)

    for identity_file in (keys.age_identity, keys.ssh_ed25519, keys.ssh_rsa):
        restored, _ = _read(stored, ["zstd", "age"], age.read_identities(identity_file))
        assert restored == data, identity_file.name


def test_encrypting_writer_needs_a_recipient():
    with pytest.raises(errors.UsageError):
        age.EncryptingWriter(CollectingSink(), [])


def test_reader_stages_refuse_an_unknown_stage():
    with pytest.raises(errors.ArchiveCorrupt) as caught:
        stage_list.reader_stages(["zstd", "rot13"], [], ARCHIVE)

    assert "rot13" in _one_line(caught.value)


# --- the stage: wrong keys and damage -------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(keys) -> tuple[bytes, bytes]:
    """(plaintext, the age archive of it with compression none): 3 full chunks and a part."""
    data = os.urandom(3 * 64 * 1024 + 1000)
    stored, _ = _write(data, "none", _recipients(keys.age_public))
    return data, stored


def _payload_start(stored: bytes) -> int:
    """Where the STREAM payload begins: after the header's `---` MAC line and the nonce."""
    mac_line = stored.index(b"\n--- ")
    return stored.index(b"\n", mac_line + 1) + 1 + NONCE_SIZE


def test_wrong_identity_is_wrong_key(keys, sealed):
    _, stored = sealed

    with pytest.raises(errors.WrongKey) as caught:
        _read(stored, ["age"], age.read_identities(keys.other_identity))

    message = _one_line(caught.value)
    assert ARCHIVE in message
    assert "--identity" in message


def test_an_ssh_key_that_is_not_a_recipient_is_wrong_key(keys, sealed):
    _, stored = sealed

    with pytest.raises(errors.WrongKey):
        _read(stored, ["age"], age.read_identities(keys.ssh_ed25519))


def test_no_identity_is_wrong_key_naming_the_options(sealed):
    _, stored = sealed

    with pytest.raises(errors.WrongKey) as caught:
        _read(stored, ["age"], [])

    message = _one_line(caught.value)
    assert "--identity" in message and age.IDENTITY_ENV in message


def _cuts(stored: bytes) -> dict[str, int]:
    start = _payload_start(stored)
    return {
        "empty": 0,
        "inside the header": 40,
        "after the header": start,
        "inside the first chunk": start + 1000,
        "at a chunk boundary": start + PAYLOAD_CHUNK,
        "at the last chunk boundary": start + 3 * PAYLOAD_CHUNK,
        "the last tag": len(stored) - 16,
        "the last byte": len(stored) - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "empty",
        "inside the header",
        "after the header",
        "inside the first chunk",
        "at a chunk boundary",
        "at the last chunk boundary",
        "the last tag",
        "the last byte",
    ],
)
def test_truncated_ciphertext_is_archive_corrupt(where, keys, sealed):
    """Cut at a chunk boundary too: each chunk decrypts, only the missing final one tells."""
    _, stored = sealed
    cut = _cuts(stored)[where]

    with pytest.raises(errors.ArchiveCorrupt) as caught:
        _read(stored[:cut], ["age"], age.read_identities(keys.age_identity))

    assert not isinstance(caught.value, errors.ChecksumMismatch)  # age itself noticed
    message = _one_line(caught.value)
    assert "truncated or tampered" in message


def _flipped(stored: bytes, index: int) -> bytes:
    damaged = bytearray(stored)
    damaged[index] ^= 0x01
    return bytes(damaged)


@pytest.mark.parametrize(
    "where",
    ["version line", "header MAC", "nonce", "first chunk", "third chunk", "last byte", "appended"],
)
def test_tampered_ciphertext_is_archive_corrupt(where, keys, sealed):
    """A flip in a recipient stanza is left out: the identity then cannot unwrap the file key,
    which age cannot tell apart from a wrong key (WrongKey)."""
    _, stored = sealed
    start = _payload_start(stored)
    mac_end = start - NONCE_SIZE - 1
    damaged = {
        "version line": lambda: _flipped(stored, 5),
        "header MAC": lambda: _flipped(stored, mac_end - 3),
        "nonce": lambda: _flipped(stored, start - 4),
        "first chunk": lambda: _flipped(stored, start + 100),
        "third chunk": lambda: _flipped(stored, start + 2 * PAYLOAD_CHUNK + 7),
        "last byte": lambda: _flipped(stored, len(stored) - 1),
        "appended": lambda: stored + b"\0",
    }[where]()

    with pytest.raises(errors.ArchiveCorrupt) as caught:
        _read(damaged, ["age"], age.read_identities(keys.age_identity))

    assert "truncated or tampered" in _one_line(caught.value)


def test_tampered_zstd_and_age_archive_is_archive_corrupt(keys):
    data = os.urandom(500_000)
    stored, _ = _write(data, "zstd", _recipients(keys.age_public))
    damaged = _flipped(stored, len(stored) // 2)

    with pytest.raises(errors.ArchiveCorrupt):
        _read(damaged, ["zstd", "age"], age.read_identities(keys.age_identity))


# --- the header probe a restore runs first --------------------------------------------------


def _head(stored: bytes) -> bytes:
    return stored[: stage_list.HEADER_PROBE_BYTES]


@pytest.mark.parametrize("size", [100, 2 * MiB], ids=["small", "over-64KiB"])
def test_check_can_decrypt_passes_with_the_right_key(size, keys):
    stored, _ = _write(os.urandom(size), "none", _recipients(keys.age_public))
    assert (len(stored) > stage_list.HEADER_PROBE_BYTES) == (size > MiB)

    stage_list.check_can_decrypt(_head(stored), age.read_identities(keys.age_identity), ARCHIVE)


@pytest.mark.parametrize("size", [65536 - 300, 65536, 65536 + 1])
def test_check_can_decrypt_passes_around_the_first_chunk_boundary(size, keys):
    stored, _ = _write(b"x" * size, "none", _recipients(keys.age_public))

    stage_list.check_can_decrypt(_head(stored), age.read_identities(keys.age_identity), ARCHIVE)


def test_check_can_decrypt_passes_with_any_one_of_the_recipients(keys):
    recipients = _recipients(keys.other_public, keys.ssh_ed25519_public)
    stored, _ = _write(os.urandom(300_000), "zstd", recipients)

    stage_list.check_can_decrypt(_head(stored), age.read_identities(keys.ssh_ed25519), ARCHIVE)
    stage_list.check_can_decrypt(_head(stored), age.read_identities(keys.other_identity), ARCHIVE)


@pytest.mark.parametrize("size", [100, 2 * MiB], ids=["small", "over-64KiB"])
def test_check_can_decrypt_refuses_a_wrong_key(size, keys):
    stored, _ = _write(os.urandom(size), "none", _recipients(keys.age_public))

    with pytest.raises(errors.WrongKey) as caught:
        stage_list.check_can_decrypt(
            _head(stored), age.read_identities(keys.other_identity), ARCHIVE
        )

    assert ARCHIVE in _one_line(caught.value)


def test_check_can_decrypt_without_identities_says_how_to_give_one(keys):
    stored, _ = _write(b"data", "none", _recipients(keys.age_public))

    with pytest.raises(errors.WrongKey) as caught:
        stage_list.check_can_decrypt(_head(stored), [], ARCHIVE)

    message = _one_line(caught.value)
    assert ARCHIVE in message and "--identity" in message and age.IDENTITY_ENV in message


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, not an age file\n",
        zstandard.ZstdCompressor().compress(b"a plain zstd archive" * 100),
        AGE_MAGIC + b"-> X25519 not-a-share\nnot-a-body\n--- bad\n",
        os.urandom(4096),
    ],
    ids=["empty", "text", "zstd", "broken-header", "random"],
)
def test_check_can_decrypt_of_bytes_that_are_not_age_is_archive_corrupt(head, keys):
    with pytest.raises(errors.ArchiveCorrupt) as caught:
        stage_list.check_can_decrypt(head, age.read_identities(keys.age_identity), ARCHIVE)

    assert ARCHIVE in _one_line(caught.value)


# --- interoperability with the age CLI ------------------------------------------------------


def _age_cli(*arguments: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run(["age", *arguments], input=stdin, capture_output=True, check=False)
    assert done.returncode == 0, f"age {' '.join(arguments)}: {done.stderr.decode()}"
    return done.stdout


@pytest.mark.parametrize("identity", ["age_identity", "ssh_ed25519", "ssh_rsa"])
def test_what_opskit_writes_decrypts_with_the_age_cli(identity, keys, tmp_path):
    data = os.urandom(300_000) + b"text\n" * 10000
    recipients = _recipients(keys.age_public, keys.ssh_ed25519_public, keys.ssh_rsa_public)
    stored, _ = _write(data, "zstd", recipients)
    archive = tmp_path / "backup.tar.zst.age"
    archive.write_bytes(stored)

    compressed = _age_cli("-d", "-i", str(getattr(keys, identity)), str(archive))

    decompressed = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed)).read()
    assert decompressed == data


def test_age_cli_refuses_what_opskit_encrypted_to_another_key(keys, tmp_path):
    stored, _ = _write(b"data", "none", _recipients(keys.other_public))
    archive = tmp_path / "backup.tar.age"
    archive.write_bytes(stored)

    done = subprocess.run(
        ["age", "-d", "-i", str(keys.age_identity), str(archive)], capture_output=True, check=False
    )

    assert done.returncode != 0


@pytest.mark.parametrize(
    ("recipient_option", "identity"),
    [("-r", "age_identity"), ("-R", "ssh_ed25519"), ("-R", "ssh_rsa")],
)
def test_what_the_age_cli_encrypts_opskit_reads(recipient_option, identity, keys, tmp_path):
    data = os.urandom(200_000) + b"x" * 100_000
    compressed = zstandard.ZstdCompressor().compress(data)
    if recipient_option == "-r":
        recipient = keys.age_public
    else:  # -R: a recipients file, here an SSH public key file
        recipient = f"{getattr(keys, identity)}.pub"

    stored = _age_cli("-e", recipient_option, recipient, stdin=compressed)
    restored, _ = _read(stored, ["zstd", "age"], age.read_identities(getattr(keys, identity)))

    assert restored == data


def test_an_empty_archive_from_the_age_cli_reads_as_empty(keys):
    stored = _age_cli("-e", "-r", keys.age_public, stdin=b"")

    restored, _ = _read(stored, ["age"], age.read_identities(keys.age_identity))

    assert restored == b""


# --- records of encrypted backups -----------------------------------------------------------

BACKUP_ID = "pgdata-20261126T095132Z-1a2b"
FINGERPRINT = "sha256:0123456789abcdef"


def _document(compression: str = "zstd", **changes: object) -> dict[str, object]:
    """A valid metadata document of an encrypted backup, changed by `changes`."""
    document: dict[str, object] = {
        "id": BACKUP_ID,
        "source": "pgdata",
        "kind": "volume",
        "created": "2026-11-26T09:51:32.123Z",
        "size": 1234,
        "sha256": "a" * 64,
        "compression": compression,
        "archive": catalog.archive_name(BACKUP_ID, compression, encrypted=True),
        "stages": catalog.stage_names(compression, encrypted=True),
        "encryption": {"format": "age", "recipients": [FINGERPRINT]},
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("compression", "archive", "stages"),
    [
        ("zstd", f"{BACKUP_ID}.tar.zst.age", ["zstd", "age"]),
        ("gzip", f"{BACKUP_ID}.tar.gz.age", ["gzip", "age"]),
        ("none", f"{BACKUP_ID}.tar.age", ["age"]),
    ],
)
def test_parse_record_accepts_a_consistent_encrypted_record(compression, archive, stages):
    record = catalog.parse_record(_document(compression))

    assert record.archive == archive
    assert record.stages == stages
    assert record.stage_names() == stages
    assert record.encrypted is True
    assert record.encryption == {"format": "age", "recipients": [FINGERPRINT]}


def test_parse_record_accepts_plain_records_with_and_without_stages():
    plain = {"archive": f"{BACKUP_ID}.tar.zst", "encryption": None}
    with_stages = catalog.parse_record(_document(**plain, stages=["zstd"]))
    older = _document(**plain)
    del older["stages"], older["encryption"]
    without_stages = catalog.parse_record(older)

    assert with_stages.encrypted is False and with_stages.stage_names() == ["zstd"]
    assert without_stages.stages is None
    assert without_stages.encrypted is False and without_stages.stage_names() == ["zstd"]


def test_parse_record_accepts_an_empty_stage_list_for_a_plain_tar():
    record = catalog.parse_record(
        _document("none", archive=f"{BACKUP_ID}.tar", stages=[], encryption=None)
    )

    assert record.stage_names() == [] and record.encrypted is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"stages": None}, "encryption without stages"),
        ({"stages": ["zstd"]}, "do not match"),  # encrypted, but no age stage
        ({"stages": ["gzip", "age"]}, "do not match"),  # not the compression
        ({"stages": ["age", "zstd"]}, "do not match"),  # the wrong order
        ({"stages": ["zstd", "age", "age"]}, "do not match"),
        ({"stages": ["zstd", "xz", "age"]}, "do not match"),
        ({"archive": f"{BACKUP_ID}.tar.zst"}, "archive is"),  # encrypted, name without .age
        ({"archive": f"{BACKUP_ID}.tar.gz.age"}, "archive is"),
        ({"encryption": None}, "do not match"),  # stages say age, no encryption
        ({"encryption": None, "stages": ["zstd"]}, "archive is"),  # .age name, plain record
        ({"encryption": None, "stages": None}, "archive is"),
        ({"encryption": {"format": "gpg", "recipients": []}}, "encryption is"),
        ({"encryption": {"format": "age"}}, "encryption is"),
        ({"encryption": {"format": "age", "recipients": "sha256:x"}}, "encryption is"),
        ({"encryption": "age"}, "encryption is"),
        ({"stages": "zstd,age"}, "stages is"),
    ],
)
def test_parse_record_refuses_an_inconsistent_encrypted_record(changes, reason):
    with pytest.raises(ValueError, match=reason):
        catalog.parse_record(_document(**changes))


def test_record_round_trips_through_its_dict():
    record = catalog.parse_record(_document())

    again = catalog.parse_record(record.to_dict())

    assert again == record
