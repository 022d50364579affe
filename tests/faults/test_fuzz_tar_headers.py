"""Bad input, fuzzed: the tar header checks (`opskit.archive.tar_root.TarWatcher`) raise only
`ArchiveCorrupt` or `ArchiveUnsafe`, whatever stream they watch, decide the same whatever the
chunking, and work in bounded memory and linear time.

Streams are built two ways: header by header (ustar, PAX and global PAX records well formed or
not, GNU long names and links, old GNU sparse maps with extension blocks, sizes octal, base-256,
huge or wrong), and by Python's `tarfile`; both are then mutated (bit flips with the header
checksum repaired or not, cuts, repeated and inserted blocks, garbage after the end).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterable, Iterator

from hypothesis import example, given
from hypothesis import strategies as st

from opskit import errors
from opskit.archive.tar_root import BLOCK, MAX_METADATA, MAX_NAMED, TarWatcher
from tests.faults.fuzzing import MIB, fuzz, peak_memory

RESERVED = (".opskit-reserved",)


# --- building streams header by header ---------------------------------------------------------


def octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def with_checksum(block: bytearray | bytes, signed: bool = False) -> bytes:
    """`block` with its checksum recomputed, as POSIX says (or as old Sun tars did)."""
    block = bytearray(block)
    block[148:156] = b" " * 8
    total = sum(block)
    if signed:
        total -= 256 * sum(1 for byte in block if byte >= 0x80)
    block[148:156] = b"%06o\0 " % (total % 8**6)
    return bytes(block)


def header(
    name: bytes = b"./f",
    kind: bytes = b"0",
    size: int | bytes = 0,
    mode: int | bytes = 0o644,
    uid: int | bytes = 0,
    gid: int | bytes = 0,
    link: bytes = b"",
    prefix: bytes = b"",
    gnu: bool = False,
) -> bytearray:
    """One header block, checksum not yet set. A field given as bytes is written raw."""
    block = bytearray(BLOCK)

    def put(offset: int, width: int, value: int | bytes) -> None:
        if isinstance(value, int):
            if value < 8 ** (width - 1):
                value = octal(value, width)
            else:  # GNU base-256
                value = b"\x80" + value.to_bytes(width - 1, "big", signed=False)
        block[offset : offset + width] = value[:width].ljust(width, b"\0")

    put(0, 100, name)
    put(100, 8, mode)
    put(108, 8, uid)
    put(116, 8, gid)
    put(124, 12, size if isinstance(size, bytes) else min(size, 256**11 - 1))
    put(136, 12, 0)
    block[156:157] = kind[:1] or b"\0"
    put(157, 100, link)
    block[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
    put(265, 32, b"root")
    put(297, 32, b"root")
    if not gnu:
        put(345, 155, prefix)
    return block


def pax_record(key: bytes, value: bytes) -> bytes:
    """One well-formed `<length> key=value\\n` record."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


PAX_KEYS = [
    b"path",
    b"linkpath",
    b"size",
    b"uid",
    b"gid",
    b"GNU.sparse.name",
    b"GNU.sparse.major",
    b"GNU.sparse.size",
    b"SCHILY.xattr.security.capability",
    b"SCHILY.xattr.user.a",
    b"mtime",
    b"comment",
    b"",
    b"pa=th",
]
names = st.one_of(
    st.sampled_from(
        [
            b"./",
            b".",
            b"./f",
            b"f",
            b"./d/",
            b"./d/f",
            b"../x",
            b"/etc/x",
            b"./a/../../b",
            b"./t",
            b"./t/x",
            b"./s/../t",
            b".opskit-reserved/x",
            b"",
            b"./\xff\xfe",
            b"a\0b",
            b"./" + b"a/" * 60 + b"f",
            b"./\x1b[31m",
        ]
    ),
    st.binary(max_size=12),
)
pax_values = st.one_of(
    names,
    st.sampled_from(
        [
            b"0",
            b"1",
            b"512",
            b"-1",
            b"+1",
            b"1e3",
            b"9" * 30,
            b"9" * 5000,
            b"",
            b"00000000000000000000000001",
            b"\xd9\xa3",
        ]
    ),
    st.integers(0, 2**64).map(lambda number: str(number).encode()),
)


@st.composite
def pax_payloads(draw) -> bytes:
    """PAX records, mostly well formed, some with a wrong length, no newline, no key, a
    length of twenty digits."""
    records = []
    for _ in range(draw(st.integers(0, 4))):
        record = pax_record(draw(st.sampled_from(PAX_KEYS)), draw(pax_values))
        flaw = draw(
            st.sampled_from(
                ["", "", "", "", "long", "short", "newline", "equals", "huge", "letters", "space"]
            )
        )
        length, rest = record.split(b" ", 1)
        if flaw == "long":
            record = str(int(length) + draw(st.integers(1, 600))).encode() + b" " + rest
        elif flaw == "short":
            record = str(max(0, int(length) - draw(st.integers(1, 5)))).encode() + b" " + rest
        elif flaw == "newline":
            record = record[:-1] + b"x"
        elif flaw == "equals":
            record = record.replace(b"=", b"", 1)
        elif flaw == "huge":
            record = b"99999999999999999999 " + rest
        elif flaw == "letters":
            record = b"1x " + rest
        elif flaw == "space":
            record = b" " + record
        records.append(record)
    return b"".join(records)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


sizes = st.one_of(
    st.integers(0, 1100),
    st.sampled_from([0, 1, 511, 512, 513, MAX_METADATA, MAX_METADATA + 1, 8**11, 2**64, 2**87]),
    st.sampled_from([b"+7", b"0o7", b"7_0", b"   17 ", b"\x80" + b"\xff" * 11, b"", b"8"]),
)
kinds = st.one_of(
    st.sampled_from([b"0", b"\0", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"5"]),
    st.sampled_from([b"V", b"M", b"N", b"D", b"A", b"x", b"g", b"L", b"K"]),
    st.binary(min_size=1, max_size=1),
)
owner_fields = st.one_of(st.sampled_from([0, 0, 1000, 8**7 - 1, 2**40]), st.binary(max_size=8))
mode_fields = st.one_of(
    st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o7777, 0]), st.binary(max_size=8)
)


@st.composite
def entries(draw) -> tuple[list[bytes], list[int]]:
    """The blocks of one entry (its metadata headers first) and which of them are headers."""
    blocks: list[bytes] = []
    headers: list[int] = []

    def add_header(block: bytearray) -> None:
        headers.append(len(blocks))
        blocks.append(with_checksum(block, signed=draw(st.integers(0, 9)) == 0))

    def add_metadata(kind: bytes, payload: bytes) -> None:
        declared = draw(st.sampled_from(["exact", "exact", "exact", "other"]))
        size = len(payload) if declared == "exact" else draw(sizes)
        add_header(header(name=b"././@PaxHeader", kind=kind, size=size))
        blocks.extend(
            padded(payload)[index : index + BLOCK]
            for index in range(0, len(padded(payload)), BLOCK)
        )

    for kind in draw(st.lists(st.sampled_from([b"x", b"g", b"L", b"K", b"X"]), max_size=2)):
        if kind in (b"L", b"K"):
            add_metadata(kind, draw(names) + draw(st.sampled_from([b"\0", b""])))
        else:
            add_metadata(kind, draw(pax_payloads()))
    kind = draw(kinds)
    data_size = draw(st.integers(0, 1100))
    declared = draw(st.one_of(st.just(data_size), st.just(data_size), sizes))
    gnu = kind == b"S" or draw(st.booleans())
    block = header(
        name=draw(names),
        kind=kind,
        size=declared,
        mode=draw(mode_fields),
        uid=draw(owner_fields),
        gid=draw(owner_fields),
        link=draw(names),
        prefix=draw(st.sampled_from([b"", b"", b"p", b"..", b"/abs"])),
        gnu=gnu,
    )
    extensions = 0
    if kind == b"S":
        extensions = draw(st.integers(0, 3))
        block[482] = 1 if extensions else 0
        block[483:495] = octal(data_size, 12)
    add_header(block)
    for index in range(extensions):
        extension = bytearray(BLOCK)
        extension[504] = 1 if index < extensions - 1 else 0
        blocks.append(bytes(extension))
    data = draw(st.sampled_from([b"x", b"\0", b"\xff"])) * data_size
    blocks.extend(
        padded(data)[index : index + BLOCK] for index in range(0, len(padded(data)), BLOCK)
    )
    return blocks, headers


@st.composite
def built_streams(draw) -> bytes:
    """Entries, an end marker of 0-2 zero blocks, maybe garbage after it; then mutated."""
    blocks: list[bytes] = []
    headers: list[int] = []
    for entry_blocks, entry_headers in draw(st.lists(entries(), min_size=1, max_size=4)):
        headers += [len(blocks) + index for index in entry_headers]
        blocks += entry_blocks
    blocks += [bytes(BLOCK)] * draw(st.integers(0, 2))
    if draw(st.integers(0, 4)) == 0:
        blocks.append(draw(st.sampled_from([b"\x01" * BLOCK, with_checksum(header())])))
    return mutate(draw, b"".join(blocks), headers)


def mutate(draw, data: bytes, headers: list[int]) -> bytes:
    """A few bit flips (repairing the checksum of a flipped header, or not), a cut, a block
    repeated or a zero block inserted."""
    stream = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "flip", "repair", "cut", "repeat", "zero"]))
        if not stream:
            break
        if kind in ("flip", "repair"):
            target = None
            if headers and kind == "repair":
                target = headers[draw(st.integers(0, len(headers) - 1))]
            if target is not None and (target + 1) * BLOCK <= len(stream):
                position = target * BLOCK + draw(st.integers(0, BLOCK - 1))
            else:
                position = draw(st.integers(0, len(stream) - 1))
            stream[position] ^= 1 << draw(st.integers(0, 7))
            if target is not None and (target + 1) * BLOCK <= len(stream):
                start = target * BLOCK
                stream[start : start + BLOCK] = with_checksum(stream[start : start + BLOCK])
        elif kind == "cut":
            del stream[draw(st.integers(0, len(stream) - 1)) :]
        else:
            at = draw(st.integers(0, len(stream) // BLOCK)) * BLOCK
            insert = bytes(BLOCK) if kind == "zero" else bytes(stream[at : at + BLOCK])
            stream[at:at] = insert
            headers = [h + 1 if h * BLOCK >= at else h for h in headers]
    return bytes(stream)


# --- streams written by tarfile ----------------------------------------------------------------

member_names = st.one_of(
    st.sampled_from(
        [
            "./",
            "f",
            "./d/f",
            "./" + "long/" * 30 + "f",
            "../x",
            "/abs",
            "./t/x",
            "./t",
            "./s",
            "./h",
            ".opskit-reserved",
            "./\udcff",
        ]
    ),
    st.text(st.characters(blacklist_characters="\0"), min_size=1, max_size=8),
)
member_kinds = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CHRTYPE,
    ]
)


@st.composite
def tarfile_streams(draw) -> bytes:
    """An archive of a few members written by `tarfile` in ustar, GNU or PAX format, mutated."""
    archive_format = draw(
        st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    )
    buffer = io.BytesIO()
    headers: list[int] = []
    with tarfile.open(
        fileobj=buffer, mode="w", format=archive_format, errors="surrogateescape"
    ) as archive:
        for _ in range(draw(st.integers(1, 5))):
            info = tarfile.TarInfo(draw(member_names))
            info.type = draw(member_kinds)
            info.linkname = draw(member_names) if info.type in (b"1", b"2") else ""
            info.mode = draw(st.sampled_from([0o644, 0o4755, 0o7777]))
            info.uid = draw(st.sampled_from([0, 1000, 8**7, 2**40]))
            if archive_format == tarfile.PAX_FORMAT and draw(st.booleans()):
                info.pax_headers = {
                    draw(st.sampled_from(["comment", "SCHILY.xattr.user.a", "uid", "size"])): draw(
                        st.sampled_from(["1", "x" * 3000, "", "05"])
                    )
                }
            data = b"z" * draw(st.integers(0, 700)) if info.type == tarfile.REGTYPE else b""
            info.size = len(data)
            try:
                info.tobuf(archive.format, archive.encoding, archive.errors)
            except (ValueError, UnicodeError):  # a name or number this format cannot hold
                continue
            start = buffer.tell()
            archive.addfile(info, io.BytesIO(data) if data else None)
            # The blocks that tarfile wrote as headers (its metadata headers and the member's).
            end = buffer.tell() - len(padded(data))
            headers += [
                index
                for index in range(start // BLOCK, end // BLOCK)
                if _checksum_valid(buffer.getvalue()[index * BLOCK : (index + 1) * BLOCK])
            ]
    return mutate(draw, buffer.getvalue(), headers)


def _checksum_valid(block: bytes) -> bool:
    try:
        recorded = int(block[148:156].strip(b" \0") or b"x", 8)
    except ValueError:
        return False
    return recorded == sum(block[:148]) + 8 * 0x20 + sum(block[156:])


# --- what a watch decides ----------------------------------------------------------------------


def decide(chunks: Iterable[bytes], **options) -> tuple:
    """Watch `chunks` to the end; return the decision: the error (type and message), or the
    bytes passed and everything found."""
    watcher = TarWatcher(chunks, reserved_names=RESERVED, archive_name="bk.tar", **options)
    passed = []
    try:
        for chunk in watcher:
            passed.append(chunk)
    except (errors.ArchiveCorrupt, errors.ArchiveUnsafe) as exc:
        return type(exc).__name__, str(exc)
    return (
        "passed",
        b"".join(passed),
        watcher.ignored_after_end,
        watcher.root,
        watcher.owned_symlinks,
        watcher.setid_count,
        watcher.setid_files,
        watcher.capability_count,
        watcher.capability_files,
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:stop] for start, stop in zip(bounds, bounds[1:], strict=False)]


def check_stream(data: bytes, cuts: list[int], **options) -> None:
    """The watch of `data` raises only its two errors, passes a prefix of the stream and counts
    the rest as ignored, and decides the same in one chunk as in the chunks `cuts` make."""
    whole = decide([data], **options)
    if whole[0] == "passed":
        passed, ignored = whole[1], whole[2]
        assert data.startswith(passed)
        assert len(passed) + ignored == len(data)
        assert len(whole[6]) == min(whole[5], MAX_NAMED)
    assert decide(split(data, cuts), **options) == whole


cuts = st.lists(st.integers(min_value=0), max_size=12)
options = st.fixed_dictionaries(
    {"allow_devices": st.booleans(), "extractor_reads_pax_size": st.booleans()}
)


@fuzz(200)
@given(data=built_streams(), cuts=cuts, options=options)
@example(data=with_checksum(header(kind=b"x", size=2**80)) + bytes(BLOCK), cuts=[], options={})
@example(
    data=with_checksum(header(kind=b"x", size=len(pax_record(b"uid", b"9" * 5000))))
    + padded(pax_record(b"uid", b"9" * 5000))
    + with_checksum(header())
    + bytes(2 * BLOCK),
    cuts=[700],
    options={},
)
def test_watch_of_built_streams_decides_only_with_its_errors(data, cuts, options):
    """Streams built header by header and mutated: the watcher raises only `ArchiveCorrupt` or
    `ArchiveUnsafe` (never ValueError, IndexError, ...), and decides the same however the
    stream is chunked."""
    check_stream(data, cuts, **options)


@fuzz(250)
@given(data=tarfile_streams(), cuts=cuts, options=options)
def test_watch_of_tarfile_streams_decides_only_with_its_errors(data, cuts, options):
    """Archives written by `tarfile` (ustar, GNU, PAX; long names, links, devices, big
    owners) and mutated: only the watcher's two errors, the same decision in any chunking."""
    check_stream(data, cuts, **options)


@fuzz(150)
@given(data=st.binary(max_size=3 * BLOCK), cuts=cuts)
def test_watch_of_random_bytes_decides_only_with_its_errors(data, cuts):
    """Random bytes (mostly failing the checksum, or all zeros) are refused or passed."""
    check_stream(data, cuts)


@fuzz(200)
@given(key=st.sampled_from(["uid", "gid", "size"]), digits=st.integers(1, 6000), flip=st.booleans())
@example(key="uid", digits=5000, flip=False)
@example(key="size", digits=4301, flip=False)
@example(key="gid", digits=19, flip=False)
def test_pax_numbers_of_any_length_are_read_or_refused(key, digits, flip):
    """A PAX `uid`, `gid` or `size` of thousands of digits (Python's int() refuses more than
    4,300 with ValueError) is read if it fits a Go int64, else refused as corrupt."""
    value = ("0" * digits if flip else "9" * digits).encode()
    payload = pax_record(key.encode(), value)
    stream = (
        with_checksum(header(kind=b"x", size=len(payload)))
        + padded(payload)
        + with_checksum(header(name=b"./f", size=0))
        + bytes(2 * BLOCK)
    )
    decision = decide([stream], extractor_reads_pax_size=True)
    readable = flip or digits <= 18  # 10^18 - 1 fits a Go int64; 10^19 - 1 does not
    assert decision[0] == ("passed" if readable else "ArchiveCorrupt"), decision


# --- bounded memory and linear time ------------------------------------------------------------


def lazily(first: bytes, chunk: bytes, count: int, last: bytes = b"") -> Iterator[bytes]:
    """`first`, then `count` times `chunk`, then `last`, made one by one (never held whole)."""
    yield first
    for _ in range(count):
        yield chunk
    if last:
        yield last


def watch_peak(chunks: Iterable[bytes], **options) -> tuple[int, object]:
    """The peak memory of watching `chunks` (each dropped once passed, as the restore's
    consumer does), and ("passed",) or (error type, message)."""

    def consume() -> tuple:
        watcher = TarWatcher(chunks, reserved_names=RESERVED, archive_name="bk.tar", **options)
        try:
            for _ in watcher:
                pass
        except (errors.ArchiveCorrupt, errors.ArchiveUnsafe) as exc:
            return type(exc).__name__, str(exc)
        return ("passed",)

    return peak_memory(consume)


def test_a_pax_header_claiming_a_huge_size_is_refused_before_any_buffering():
    """A PAX header that claims 2^80 bytes, followed by 256 MiB of data made lazily, is refused
    at its header: nothing of the claimed payload is buffered."""
    first = with_checksum(header(kind=b"x", size=2**80))
    peak, outcome = watch_peak(lazily(first, bytes(MIB), 256))

    assert outcome[0] == "ArchiveCorrupt", outcome
    assert "a metadata header of" in outcome[1]
    assert peak < 256 * 1024, f"peak {peak / 1024:.0f} KiB"


def test_a_pax_header_of_the_largest_accepted_size_is_buffered_once():
    """A PAX header of exactly `MAX_METADATA` bytes (one `path` record of nearly 1 MiB)
    arriving in 4 KiB chunks is buffered, parsed and checked in a few times its size."""
    length = MAX_METADATA - 20
    while len(pax_record(b"path", b"./" + b"a" * length)) < MAX_METADATA:
        length += 1
    payload = pax_record(b"path", b"./" + b"a" * length)
    assert len(payload) == MAX_METADATA
    stream = (
        with_checksum(header(kind=b"x", size=len(payload)))
        + padded(payload)
        + with_checksum(header(name=b"./ignored"))
        + bytes(2 * BLOCK)
    )
    chunks = [stream[index : index + 4096] for index in range(0, len(stream), 4096)]
    peak, outcome = watch_peak(iter(chunks))

    assert outcome[0] == "passed", outcome
    assert peak < 5 * MAX_METADATA, f"peak {peak / MIB:.1f} MiB"


def _entry(name: bytes, kind: bytes = b"0", size: int = 0, **fields) -> bytes:
    return with_checksum(header(name=name, kind=kind, size=size, **fields)) + padded(b"x" * size)


def test_thousands_of_tiny_entries_take_constant_memory():
    """10,000 one-byte setuid files in 64 KiB chunks: the watcher keeps nothing per entry but
    the first `MAX_NAMED` setuid names, so memory does not grow with the count."""
    one = _entry(b"./f", size=1, mode=0o4755)
    per_chunk = 64 * 1024 // len(one)
    chunk = one * per_chunk
    count = 10_000 // per_chunk
    peak, outcome = watch_peak(lazily(_entry(b"./", b"5"), chunk, count, bytes(2 * BLOCK)))

    assert outcome[0] == "passed", outcome
    assert peak < 256 * 1024, f"peak {peak / 1024:.0f} KiB"


def test_thousands_of_symlinks_take_memory_linear_in_their_names():
    """5,000 symlinks owned by a user: the watcher must remember each (the restore chowns them,
    and no entry may be written through one), and takes under 512 bytes a symlink for it."""
    count = 5_000
    symlinks = b"".join(
        _entry(b"./l%05d" % index, b"2", link=b"/anywhere", uid=1000) for index in range(count)
    )
    chunks = [symlinks[index : index + 64 * 1024] for index in range(0, len(symlinks), 64 * 1024)]
    stream_bytes = sum(len(chunk) for chunk in chunks)
    peak, outcome = watch_peak(iter(chunks + [bytes(2 * BLOCK)]))

    assert outcome[0] == "passed", outcome
    # The chunks themselves are held by the list (not counted: allocated before tracing).
    assert peak < count * 512, f"{peak / count:.0f} bytes a symlink ({stream_bytes} in)"


def test_long_names_of_one_mebibyte_are_not_accumulated():
    """Fifty entries each with a GNU long name of nearly `MAX_METADATA` bytes: each name is
    dropped with its entry, so the peak stays a few names' size, not fifty."""
    name = b"./" + b"n" * (MAX_METADATA - 10)
    one = with_checksum(header(name=b"././@LongLink", kind=b"L", size=len(name) + 1))
    one += padded(name + b"\0") + _entry(name[:100])
    peak, outcome = watch_peak(lazily(b"", one, 50, bytes(2 * BLOCK)))

    assert outcome[0] == "passed", outcome
    assert peak < 6 * MAX_METADATA, f"peak {peak / MIB:.1f} MiB"


def test_a_sparse_map_of_ten_thousand_extension_blocks_takes_constant_memory():
    """An old GNU sparse file whose map runs over 10,000 extension blocks is followed through
    every block without keeping any of them."""
    block = header(name=b"./sparse", kind=b"S", size=1, gnu=True)
    block[482] = 1
    block[483:495] = octal(1, 12)
    extension = bytearray(BLOCK)
    extension[504] = 1
    last = bytes(BLOCK) + padded(b"x") + bytes(2 * BLOCK)
    peak, outcome = watch_peak(lazily(with_checksum(block), bytes(extension) * 16, 625, last))

    assert outcome[0] == "passed", outcome
    assert peak < 256 * 1024, f"peak {peak / 1024:.0f} KiB"


def test_a_deep_name_after_a_symlink_is_checked_in_linear_time():
    """A symlink, then a file and a hardlink whose 1 MiB names have half a million components:
    every prefix is checked against the archive's symlinks in linear time (it took minutes
    when each prefix was built anew)."""
    deep = b"a/" * (MAX_METADATA // 2 - 8) + b"f"

    def long_entry(field: bytes) -> bytes:
        long = with_checksum(header(name=b"././@LongLink", kind=field, size=len(deep) + 1))
        return long + padded(deep + b"\0")

    stream = (
        _entry(b"./s", b"2", link=b"/elsewhere")
        + long_entry(b"L")
        + _entry(b"x")
        + long_entry(b"K")
        + _entry(b"./h", b"1")
        + _entry(b"./a/s", b"2", link=b"/x")
        + with_checksum(header(name=b"././@LongLink", kind=b"L", size=len(deep) + 5))
        + padded(b"a/s/" + deep + b"\0")
        + _entry(b"x")
        + bytes(2 * BLOCK)
    )
    started = time.monotonic()
    outcome = decide([stream])
    elapsed = time.monotonic() - started

    assert outcome[0] == "ArchiveUnsafe", outcome
    assert "goes through the symlink './a/s'" in outcome[1]
    assert elapsed < 10, f"{elapsed:.1f} s"
