"""Client-side age encryption through the real CLI on the real engine: encrypted backups that
the age CLI opens, archives made by hand with age that opskit restores, round trips with age and
SSH keys, missing and wrong keys refused before anything is touched, tampering by someone who
can write to the store, encryption from the config, and encrypted safety backups.

Keys are made by the real `age-keygen` and `ssh-keygen` (installed by `scripts/bootstrap.sh
test`). Volumes are tiny: the point is what happens around the bytes, not throughput.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
import zstandard

from tests.integration import trees
from tests.integration.opskit_cli import (
    assert_failed_with_one_line,
    backup,
    describe,
    files_in,
    list_backups,
    restore,
    run_json,
    run_opskit,
)

pytestmark = pytest.mark.integration

TOOLS = ("age", "age-keygen", "ssh-keygen")
IDENTITY_ENV = "OPSKIT_AGE_IDENTITY_FILE"
NO_IDENTITY = {IDENTITY_ENV: ""}  # whatever the developer's shell exports
SAVED_NOTICE = ("saved the current contents",)
PAYLOAD_CHUNK = 64 * 1024 + 16  # age's STREAM chunk: 64 KiB and a 16-byte tag
NONCE_SIZE = 16


# --- keys made by the real tools ------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    age_identity: Path
    age_public: str
    age_secret: str  # the AGE-SECRET-KEY-1… line
    other_identity: Path  # an identity the backups are not encrypted to
    ssh_identity: Path  # an unencrypted ed25519 private key
    ssh_public: str  # its public key line, with the comment

    def secrets(self) -> list[str]:
        """Substrings that must never show up outside the key files."""
        ssh_body = [
            line
            for line in self.ssh_identity.read_text().splitlines()
            if not line.startswith("-----")
        ]
        return [self.age_secret, self.age_secret[16:40], *(line[:24] for line in ssh_body[1:])]


def _run(*command: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(command, input=stdin, capture_output=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr.decode()}"
    return done.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run `bash scripts/bootstrap.sh test`",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp("keys")
    identity, other = directory / "key.txt", directory / "other.txt"
    _run("age-keygen", "-o", str(identity))
    _run("age-keygen", "-o", str(other))
    ssh_identity = directory / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@vault", "-f", str(ssh_identity))
    secret = next(
        line for line in identity.read_text().splitlines() if line.startswith("AGE-SECRET")
    )
    return Keys(
        age_identity=identity,
        age_public=_run("age-keygen", "-y", str(identity)).decode().strip(),
        age_secret=secret,
        other_identity=other,
        ssh_identity=ssh_identity,
        ssh_public=Path(f"{ssh_identity}.pub").read_text().strip(),
    )


def fingerprint(public_key: str) -> str:
    """The fingerprint a record holds, computed here independently of opskit."""
    key = " ".join(public_key.split()[:2])  # an SSH key's comment is not part of it
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


# --- helpers --------------------------------------------------------------------------------


def _metadata_path(store: Path, backup_id: str) -> Path:
    return store / f"{backup_id}.json"


def _metadata(store: Path, backup_id: str) -> dict:
    return json.loads(_metadata_path(store, backup_id).read_text())


def _decrypt_with_age_cli(archive: Path, identity: Path) -> bytes:
    return _run("age", "-d", "-i", str(identity), str(archive))


def _zstd_decompress(data: bytes) -> bytes:
    if shutil.which("zstd"):
        return _run("zstd", "-d", "-q", "-c", stdin=data)
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def _tar_names(tar_bytes: bytes) -> set[str]:
    listed = _run("tar", "-t", stdin=tar_bytes).decode()
    return {line.removeprefix("./").rstrip("/") for line in listed.splitlines()} - {"", "."}


def _volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def _new_volume(resources, unique_name: str, suffix: str) -> str:
    """A volume opskit will create: registered first, so teardown removes it whatever happens."""
    return resources.track_volume(f"{unique_name}-{suffix}")


def _copy_store(store: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(store, copy)
    return copy


def _payload_start(stored: bytes) -> int:
    """Where age's STREAM payload begins: after the header's `---` MAC line and the nonce."""
    mac_line = stored.index(b"\n--- ")
    return stored.index(b"\n", mac_line + 1) + 1 + NONCE_SIZE


def _rewrite_metadata_to_match(store: Path, backup_id: str, archive: Path) -> None:
    """What someone with write access to the store does to hide a change from the checksum."""
    document = _metadata(store, backup_id)
    content = archive.read_bytes()
    document["size"] = len(content)
    document["sha256"] = hashlib.sha256(content).hexdigest()
    _metadata_path(store, backup_id).write_text(json.dumps(document, indent=2))


def _assert_no_secrets(keys: Keys, *texts: str) -> None:
    for text in texts:
        for secret in keys.secrets():
            assert secret not in text, f"key material {secret[:8]}… shows up in:\n{text}"


def _files_volume(client, resources, unique_name: str, suffix: str) -> str:
    """A small volume: text files, owners and modes, and 300 KB of random bytes (several age
    chunks, so that tampering in the middle of the payload is possible)."""
    volume = resources.volume(f"{unique_name}-{suffix}")
    trees.run_in_tree(
        client,
        volume,
        "set -e\n"
        "mkdir -p etc data\n"
        "printf 'listen 8080\\n' > etc/app.conf && chown 1000:1000 etc/app.conf\n"
        "chmod 0640 etc/app.conf\n"
        "head -c 300000 /dev/urandom > data/blob.bin && chown -R 999:999 data\n"
        "chmod 0700 data\n"
        "ln -s etc/app.conf link\n",
    )
    return volume


@pytest.fixture(scope="module")
def sealed(keys, docker_client, tmp_path_factory):
    """An encrypted backup of a small volume in a store of its own (tests copy the store
    before they change it): (volume, store, record, snapshot of the volume)."""
    name = f"opskit-test-sealed-{datetime.now(UTC).strftime('%H%M%S%f')}"
    docker_client.volumes.create(name)
    try:
        trees.run_in_tree(
            docker_client,
            name,
            "set -e\nprintf 'sealed\\n' > note.txt\nchown 1234:5678 note.txt\n"
            "head -c 300000 /dev/urandom > blob.bin\nchmod 0600 blob.bin\n",
        )
        store = tmp_path_factory.mktemp("sealed-store")
        record = backup(name, store, "--encrypt-to", keys.age_public)
        yield name, store, record, trees.snapshot(docker_client, name)
    finally:
        docker_client.volumes.get(name).remove(force=True)


@pytest.fixture
def old_target(docker_client, resources, unique_name):
    """An existing volume with data a failed restore must leave as it was."""
    volume = resources.volume(f"{unique_name}-old")
    trees.populate_files(docker_client, volume, {"KEEP-ME.txt": "old data\n", "sub/x": "x\n"})
    return volume, trees.snapshot(docker_client, volume)


# --- 1. an encrypted backup, opened with the age CLI ----------------------------------------


def test_encrypted_backup_is_an_age_file_of_a_zstd_tar_without_key_material(
    keys, docker_client, resources, unique_name, tmp_path
):
    volume = _files_volume(docker_client, resources, unique_name, "plain")
    store = tmp_path / "store"

    result = run_opskit(
        "volume", "backup", volume, "--to", str(store), "--encrypt-to", keys.age_public, "--json"
    )

    assert result.returncode == 0, describe(result)
    record = json.loads(result.stdout)
    archive = Path(record["location"])
    assert record["archive"] == f"{record['id']}.tar.zst.age"
    assert archive.name == record["archive"] and archive.is_file()
    assert record["stages"] == ["zstd", "age"]
    assert record["encryption"] == {"format": "age", "recipients": [fingerprint(keys.age_public)]}
    metadata_text = _metadata_path(store, record["id"]).read_text()
    assert json.loads(metadata_text)["stages"] == ["zstd", "age"]
    assert json.loads(metadata_text)["encryption"] == record["encryption"]
    # Fingerprints only: not the secret, not even the public key.
    _assert_no_secrets(keys, metadata_text, result.stdout, result.stderr)
    assert keys.age_public not in metadata_text + result.stdout + result.stderr
    assert archive.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert record["size"] == archive.stat().st_size
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()

    tar_bytes = _zstd_decompress(_decrypt_with_age_cli(archive, keys.age_identity))

    assert len(tar_bytes) == record["tar_size"]
    assert {"etc", "etc/app.conf", "data", "data/blob.bin", "link"} <= _tar_names(tar_bytes)


def test_encrypted_backup_to_several_recipients_opens_with_each(
    keys, docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-several")
    trees.populate_files(docker_client, volume, {"a.txt": "a\n"})
    recipients_file = tmp_path / "recipients.txt"
    recipients_file.write_text(f"# the vault's SSH key\n{keys.ssh_public}\n\n")

    record = backup(
        volume, tmp_path / "store", "--encrypt-to", keys.age_public,
        "--encrypt-to-file", str(recipients_file), "--compress", "gzip",
    )  # fmt: skip

    assert record["archive"].endswith(".tar.gz.age")
    assert record["stages"] == ["gzip", "age"]
    assert record["encryption"]["recipients"] == [
        fingerprint(keys.age_public),
        fingerprint(keys.ssh_public),
    ]
    for identity in (keys.age_identity, keys.ssh_identity):
        compressed = _decrypt_with_age_cli(Path(record["location"]), identity)
        assert "a.txt" in _tar_names(_run("gzip", "-d", "-c", stdin=compressed))


# --- 2. an archive made by hand with tar and age, restored by opskit ------------------------

HAND_MADE_ID = "handmade-20261126T095132Z-beef"
HAND_MTIME = 1_600_000_000
# path -> (type, mode, uid, gid, content or link target)
HAND_MADE_ENTRIES = {
    ".": ("dir", 0o750, 999, 999, None),
    "etc": ("dir", 0o755, 0, 0, None),
    "etc/app.conf": ("file", 0o640, 1000, 1000, b"listen 8080\n"),
    "bin": ("dir", 0o755, 0, 0, None),
    "bin/run.sh": ("file", 0o755, 0, 0, b"#!/bin/sh\nexec app\n"),
    "data": ("dir", 0o700, 33, 33, None),
    "data/rows.bin": ("file", 0o600, 33, 33, bytes(range(256)) * 512),
    "current": ("symlink", 0o777, 33, 33, "data/rows.bin"),
}


def _hand_made_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, (kind, mode, uid, gid, content) in HAND_MADE_ENTRIES.items():
            info = tarfile.TarInfo("./" if path == "." else f"./{path}")
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, HAND_MTIME
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _expected_hand_made_tree() -> trees.Snapshot:
    entries = {}
    for path, (kind, mode, uid, gid, content) in HAND_MADE_ENTRIES.items():
        is_file = kind == "file"
        entries[path] = trees.Entry(
            path=path,
            type=kind,
            mode=mode,
            uid=uid,
            gid=gid,
            size=len(content) if is_file else None,
            sha256=hashlib.sha256(content).hexdigest() if is_file else None,
            target=content if kind == "symlink" else None,
            mtime=HAND_MTIME if is_file else None,
        )
    return trees.Snapshot(entries=entries)


def test_archive_made_with_tar_zstd_and_age_by_hand_restores(
    keys, docker_client, resources, unique_name, tmp_path
):
    store = tmp_path / "store"
    store.mkdir()
    compressed = zstandard.ZstdCompressor().compress(_hand_made_tar())
    encrypted = _run("age", "-e", "-r", keys.age_public, stdin=compressed)
    archive = store / f"{HAND_MADE_ID}.tar.zst.age"
    archive.write_bytes(encrypted)
    document = {
        "id": HAND_MADE_ID,
        "source": "handmade",
        "kind": "volume",
        "created": "2026-11-26T09:51:32.000Z",
        "size": len(encrypted),
        "sha256": hashlib.sha256(encrypted).hexdigest(),
        "compression": "zstd",
        "archive": archive.name,
        "stages": ["zstd", "age"],
        "encryption": {"format": "age", "recipients": [fingerprint(keys.age_public)]},
    }
    _metadata_path(store, HAND_MADE_ID).write_text(json.dumps(document))
    target = _new_volume(resources, unique_name, "handmade")

    result = restore("handmade", store, "--into", target, "--identity", str(keys.age_identity))

    assert result["backup"]["id"] == HAND_MADE_ID
    assert result["created_target"] is True
    trees.assert_same_tree(
        _expected_hand_made_tree(), trees.snapshot(docker_client, target), "hand-made archive"
    )


# --- 3. round trips of the tricky tree ------------------------------------------------------


def test_tricky_tree_round_trips_with_identity_option_and_environment_and_verifies(
    keys, docker_client, resources, unique_name, tmp_path
):
    source = resources.volume(f"{unique_name}-tricky")
    trees.populate_tricky_tree(docker_client, source)
    expected = trees.snapshot(docker_client, source)
    trees.assert_is_tricky(expected)
    store = tmp_path / "store"
    by_option = _new_volume(resources, unique_name, "by-option")
    by_environment = _new_volume(resources, unique_name, "by-env")

    record = backup(source, store, "--encrypt-to", keys.age_public)
    restore(source, store, "--into", by_option, "--identity", str(keys.age_identity))
    environment = {IDENTITY_ENV: str(keys.age_identity)}
    run_json("volume", "restore", source, "--from", str(store), "--into", by_environment,
             env=environment)  # fmt: skip
    verified = run_opskit(
        "volume", "verify", "--from", str(store), "--volume", source,
        "--identity", str(keys.age_identity),
    )  # fmt: skip

    assert record["archive"].endswith(".tar.zst.age")
    trees.assert_same_tree(expected, trees.snapshot(docker_client, by_option), "--identity")
    trees.assert_same_tree(expected, trees.snapshot(docker_client, by_environment), IDENTITY_ENV)
    assert verified.returncode == 0, describe(verified)
    metadata = _metadata(store, record["id"])
    assert metadata["verified_ok"] is True and metadata["verified_at"] is not None
    assert metadata["stages"] == ["zstd", "age"]  # the drill's update keeps the record intact


# --- 4. SSH keys ----------------------------------------------------------------------------


def test_ssh_ed25519_recipient_and_identity_round_trip(
    keys, docker_client, resources, unique_name, tmp_path
):
    source = _files_volume(docker_client, resources, unique_name, "ssh")
    expected = trees.snapshot(docker_client, source)
    store = tmp_path / "store"
    target = _new_volume(resources, unique_name, "ssh-restored")

    result = run_opskit(
        "volume", "backup", source, "--to", str(store), "--encrypt-to", keys.ssh_public, "--json"
    )
    assert result.returncode == 0, describe(result)
    record = json.loads(result.stdout)
    restored = restore(source, store, "--into", target, "--identity", str(keys.ssh_identity))

    assert record["encryption"]["recipients"] == [fingerprint(keys.ssh_public)]
    metadata_text = _metadata_path(store, record["id"]).read_text()
    assert "ops@vault" not in metadata_text and "AAAA" not in metadata_text
    assert restored["created_target"] is True
    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), "ssh round trip")


def test_forced_restore_with_only_an_ssh_identity_refuses_an_unencrypted_safety_backup(
    keys, docker_client, resources, unique_name, tmp_path, old_target
):
    """The safety copy of an encrypted store's target must not be plaintext, and pyrage gives
    no public key for an SSH identity: without configured recipients, refuse up front."""
    source = resources.volume(f"{unique_name}-ssh-src")
    trees.populate_files(docker_client, source, {"new.txt": "new\n"})
    store = tmp_path / "store"
    backup(source, store, "--encrypt-to", keys.ssh_public)
    target, before = old_target
    stored_before = files_in(store)

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--identity", str(keys.ssh_identity),
    )  # fmt: skip

    assert_failed_with_one_line(result, "unencrypted", exit_code=2)
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "target")
    assert files_in(store) == stored_before


# --- 5. missing and wrong identities --------------------------------------------------------


@pytest.mark.parametrize("identity", ["missing", "wrong"])
def test_restore_without_the_right_identity_fails_in_one_line_and_creates_nothing(
    identity, keys, sealed, docker_client, resources, unique_name, tmp_path
):
    source, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    stored_before = files_in(store)
    target = _new_volume(resources, unique_name, f"{identity}-key")
    options = ["--identity", str(keys.other_identity)] if identity == "wrong" else []

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, *options,
        env=NO_IDENTITY,
    )  # fmt: skip

    words = ("--identity",) if identity == "missing" else ("none of the given identities",)
    assert_failed_with_one_line(result, record["archive"], *words)
    _assert_no_secrets(keys, result.stdout, result.stderr)
    assert not _volume_exists(docker_client, target), "the --into volume was created"
    assert files_in(store) == stored_before


@pytest.mark.parametrize("identity", ["missing", "wrong"])
def test_forced_restore_without_the_right_identity_leaves_target_and_store_as_they_were(
    identity, keys, sealed, docker_client, tmp_path, old_target
):
    source, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    stored_before = files_in(store)
    target, before = old_target
    options = ["--identity", str(keys.other_identity)] if identity == "wrong" else []

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force", *options,
        env=NO_IDENTITY,
    )  # fmt: skip

    assert_failed_with_one_line(result, record["archive"])
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "target")
    # No pre-restore safety backup: nothing was read from the target, nothing written.
    assert files_in(store) == stored_before
    assert [item["id"] for item in list_backups(store)] == [record["id"]]


@pytest.mark.parametrize("identity", ["missing", "wrong"])
def test_verify_without_the_right_identity_fails_and_records_nothing(
    identity, keys, sealed, tmp_path
):
    _, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    metadata_before = _metadata_path(store, record["id"]).read_bytes()
    options = ["--identity", str(keys.other_identity)] if identity == "wrong" else []

    result = run_opskit("volume", "verify", "--from", str(store), *options, env=NO_IDENTITY)

    assert_failed_with_one_line(result, record["archive"])
    metadata = _metadata(store, record["id"])
    assert metadata["verified_at"] is None and metadata["verified_ok"] is None
    assert _metadata_path(store, record["id"]).read_bytes() == metadata_before


def test_identity_file_that_is_not_a_key_fails_without_echoing_it(
    keys, sealed, docker_client, resources, unique_name, tmp_path
):
    source, store, _, _ = sealed
    junk = tmp_path / "junk.txt"
    junk.write_text("hunter2 is my password\n")
    target = _new_volume(resources, unique_name, "junk-key")

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target,
        "--identity", str(junk),
    )  # fmt: skip

    line = assert_failed_with_one_line(result, "junk.txt", exit_code=2)
    assert "hunter2" not in line
    assert not _volume_exists(docker_client, target)


# --- 6. tampering by someone who can write to the store -------------------------------------


def _flip_payload_byte(archive: Path) -> None:
    content = bytearray(archive.read_bytes())
    index = _payload_start(bytes(content)) + PAYLOAD_CHUNK + 1000  # inside the second chunk
    assert index < len(content) - PAYLOAD_CHUNK, "the archive is too small for this test"
    content[index] ^= 0x01
    archive.write_bytes(bytes(content))


def _truncate_at_a_chunk_boundary(archive: Path) -> None:
    """Whole chunks stay, each decrypts: only the missing last chunk tells."""
    content = archive.read_bytes()
    cut = _payload_start(content) + 2 * PAYLOAD_CHUNK
    assert cut < len(content), "the archive is too small for this test"
    archive.write_bytes(content[:cut])


def _tamper(case: str, store: Path, record: dict) -> None:
    archive = store / record["archive"]
    if case == "flipped":
        _flip_payload_byte(archive)
    elif case == "flipped-metadata-fixed":
        _flip_payload_byte(archive)
        _rewrite_metadata_to_match(store, record["id"], archive)
    else:
        _truncate_at_a_chunk_boundary(archive)
        _rewrite_metadata_to_match(store, record["id"], archive)


TAMPERING = {
    # case -> the words the error line must hold (any one of each tuple)
    "flipped": ("corrupt", "checksum", "tampered"),
    "flipped-metadata-fixed": ("tampered", "corrupt", "truncated"),
    "truncated-metadata-fixed": ("truncated", "tampered", "corrupt"),
}


def _assert_error_says_one_of(line: str, words: tuple[str, ...]) -> None:
    assert any(word in line.lower() for word in words), f"none of {words} in: {line}"


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_archive_is_refused_and_a_new_target_is_not_created(
    case, sealed, keys, docker_client, resources, unique_name, tmp_path
):
    source, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    _tamper(case, store, record)
    target = _new_volume(resources, unique_name, "tampered")

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target,
        "--identity", str(keys.age_identity),
    )  # fmt: skip

    line = assert_failed_with_one_line(result, record["archive"])
    _assert_error_says_one_of(line, TAMPERING[case])
    assert not _volume_exists(docker_client, target), "a failed restore left its new volume"


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_archive_forced_onto_existing_data_leaves_it_intact(
    case, sealed, keys, docker_client, tmp_path, old_target
):
    source, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    _tamper(case, store, record)
    target, before = old_target

    result = run_opskit(
        "volume", "restore", source, "--from", str(store), "--into", target, "--force",
        "--identity", str(keys.age_identity),
    )  # fmt: skip

    line = assert_failed_with_one_line(result, record["archive"], notices=SAVED_NOTICE)
    _assert_error_says_one_of(line, TAMPERING[case])
    assert "unchanged" in line
    trees.assert_same_tree(before, trees.snapshot(docker_client, target), "target")


@pytest.mark.parametrize("case", ["flipped-metadata-fixed", "truncated-metadata-fixed"])
def test_verify_reports_a_tampered_archive_with_matching_metadata(case, sealed, keys, tmp_path):
    _, store, record, _ = sealed
    store = _copy_store(store, tmp_path, "store")
    _tamper(case, store, record)

    result = run_opskit(
        "volume", "verify", "--from", str(store), "--identity", str(keys.age_identity)
    )

    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr
    metadata = _metadata(store, record["id"])
    assert metadata["verified_ok"] is False
    _assert_error_says_one_of(metadata["verified_reason"], TAMPERING[case])


# --- 7. encryption from the config ----------------------------------------------------------


def test_target_encryption_in_the_config_encrypts_without_flags(
    keys, docker_client, resources, unique_name, tmp_path
):
    volume = resources.volume(f"{unique_name}-configured")
    trees.populate_files(docker_client, volume, {"conf.txt": "from the config\n"})
    store = tmp_path / "vault-store"
    config = tmp_path / "opskit.yaml"
    config.write_text(
        "targets:\n"
        "  vault:\n"
        f"    url: {store}\n"
        "    encryption:\n"
        f"      recipients: [{keys.age_public}]\n"
        f"      identity_file: {keys.age_identity}\n"
    )
    target = _new_volume(resources, unique_name, "configured-restored")

    record = backup(volume, "vault", "--config", str(config))
    checked = run_json("config", "check", "--config", str(config))
    shown = run_opskit("config", "check", "--config", str(config))
    restored = run_json("volume", "restore", volume, "--from", "vault", "--into", target,
                        "--config", str(config), env=NO_IDENTITY)  # fmt: skip

    assert record["archive"].endswith(".tar.zst.age")
    assert Path(record["location"]).parent == store
    assert record["encryption"]["recipients"] == [fingerprint(keys.age_public)]
    tar_bytes = _zstd_decompress(_decrypt_with_age_cli(Path(record["location"]), keys.age_identity))
    assert "conf.txt" in _tar_names(tar_bytes)
    encryption = checked["config"]["targets"]["vault"]["encryption"]
    assert encryption["recipients"] == [keys.age_public]
    assert shown.returncode == 0, describe(shown)
    assert keys.age_public in shown.stdout and "encryption" in shown.stdout
    _assert_no_secrets(keys, shown.stdout, json.dumps(checked))
    # The target's identity_file opens its backups when no --identity is given.
    assert restored["created_target"] is True
    assert trees.snapshot(docker_client, target).entries["conf.txt"].size == len(
        "from the config\n"
    )


def test_config_with_a_recipient_that_is_not_a_public_key_is_refused(keys, tmp_path):
    config = tmp_path / "opskit.yaml"
    config.write_text(
        f"targets:\n  vault:\n    url: {tmp_path}\n    encryption:\n      recipients: [not-a-key]\n"
    )

    result = run_opskit("config", "check", "--config", str(config))

    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr
    assert "not-a-key" in result.stderr and "recipients" in result.stderr


# --- 8. the safety backup of a forced restore is encrypted ----------------------------------


def test_forced_restore_of_an_encrypted_backup_writes_an_encrypted_safety_backup(
    keys, sealed, docker_client, resources, unique_name, tmp_path, old_target
):
    source, store, _, expected = sealed
    store = _copy_store(store, tmp_path, "store")
    target, before = old_target
    back = _new_volume(resources, unique_name, "previous")

    result = restore(
        source, store, "--into", target, "--force", "--identity", str(keys.age_identity)
    )

    trees.assert_same_tree(expected, trees.snapshot(docker_client, target), "forced restore")
    safety = result["safety_backup"]
    assert safety is not None and result["replaced_contents"] is True
    assert safety["archive"].endswith(".tar.zst.age")
    assert safety["stages"] == ["zstd", "age"]
    assert safety["encryption"]["recipients"] == [fingerprint(keys.age_public)]
    assert "pre-restore" in safety["tags"]
    safety_archive = store / safety["archive"]
    assert safety_archive.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert b"old data" not in safety_archive.read_bytes()
    tar_bytes = _zstd_decompress(_decrypt_with_age_cli(safety_archive, keys.age_identity))
    assert {"KEEP-ME.txt", "sub/x"} <= _tar_names(tar_bytes)
    # And opskit brings the previous contents back from it, with the same key.
    restore(target, store, "--into", back, "--backup", safety["id"],
            "--identity", str(keys.age_identity))  # fmt: skip
    trees.assert_same_tree(before, trees.snapshot(docker_client, back), "safety backup")


# --- snapshots: every member encrypted, a wrong key refused for the whole set ----------------


@pytest.fixture
def project(docker_client, resources, unique_name):
    """Two volumes labelled as compose labels a project's volumes: {service: volume}."""
    volumes = {}
    for service in ("db", "web"):
        volume = resources.volume(
            f"{unique_name}_{service}",
            labels={"com.docker.compose.project": unique_name,
                    "com.docker.compose.volume": service},
        )  # fmt: skip
        trees.populate_files(docker_client, volume, {f"{service}.txt": f"{service} v1\n"})
        volumes[service] = volume
    return unique_name, volumes


def test_encrypted_snapshot_restores_as_a_set_only_with_the_right_identity(
    keys, docker_client, project, tmp_path
):
    name, volumes = project
    store = tmp_path / "store"
    expected = {
        service: trees.snapshot(docker_client, volume) for service, volume in volumes.items()
    }
    taken = run_json("volume", "snapshot", "--project", name, "--to", str(store),
                     "--encrypt-to", keys.age_public)  # fmt: skip
    for volume in volumes.values():  # the upgrade goes wrong
        trees.run_in_tree(docker_client, volume, "rm -f ./*.txt && echo broken > broken.txt")
    broken = {service: trees.snapshot(docker_client, volume) for service, volume in volumes.items()}
    stored_before = files_in(store)
    snapshot_id = taken["snapshot"]["id"]

    refused = run_opskit("volume", "restore", "--snapshot", snapshot_id, "--from", str(store),
                         "--force", "--identity", str(keys.other_identity))  # fmt: skip

    assert all(item["archive"].endswith(".tar.zst.age") for item in taken["backups"])
    assert_failed_with_one_line(refused, "nothing was changed", "none of the given identities")
    for service, volume in volumes.items():
        trees.assert_same_tree(broken[service], trees.snapshot(docker_client, volume), service)
    assert files_in(store) == stored_before  # not even a pre-restore backup

    restored = run_json("volume", "restore", "--snapshot", snapshot_id, "--from", str(store),
                        "--force", "--identity", str(keys.age_identity))  # fmt: skip

    for service, volume in volumes.items():
        trees.assert_same_tree(expected[service], trees.snapshot(docker_client, volume), service)
    for member in restored["restored"]:
        assert member["safety_backup"]["archive"].endswith(".tar.zst.age"), member["target"]


# --- key mix-ups on the command line --------------------------------------------------------


def test_encrypt_to_file_given_the_identity_fails_without_printing_the_secret(
    keys, docker_client, resources, unique_name, tmp_path
):
    """Giving key.txt (the identity) where the recipients file belongs is an easy slip; the
    error goes to terminals, CI logs and mail, so it must not carry the secret key."""
    volume = resources.volume(f"{unique_name}-slip")
    trees.populate_files(docker_client, volume, {"a.txt": "a\n"})
    store = tmp_path / "store"

    by_file = run_opskit("volume", "backup", volume, "--to", str(store),
                         "--encrypt-to-file", str(keys.age_identity))  # fmt: skip
    by_option = run_opskit("volume", "backup", volume, "--to", str(store),
                           "--encrypt-to", keys.age_secret)  # fmt: skip

    for result in (by_file, by_option):
        assert_failed_with_one_line(result, "recipient", exit_code=2)
        _assert_no_secrets(keys, result.stdout, result.stderr)
    assert files_in(store) == []
