"""A helper command's output: bounded (head and tail kept), and its first real error line."""

from opskit.engine.helper import BoundedOutput, ExecResult


def test_bounded_output_keeps_small_output_whole():
    collected = BoundedOutput(limit=100)
    for chunk in (b"tar: a\n", b"tar: b\n"):
        collected.add(chunk)
    assert collected.text() == "tar: a\ntar: b\n"


def test_bounded_output_keeps_head_and_tail_of_large_output():
    collected = BoundedOutput(limit=64)
    collected.add(b"FIRST LINE\n")
    for index in range(1000):
        collected.add(f"line {index}\n".encode())
    collected.add(b"LAST LINE\n")
    text = collected.text()
    assert text.startswith("FIRST LINE\n")
    assert text.endswith("LAST LINE\n")
    assert "bytes of output left out" in text
    head, _, tail = text.partition("[...")
    assert len(head.encode()) <= 33 and len(tail.split("]\n", 1)[1].encode()) == 32
    left_out = int(text.split("[... ")[1].split(" ")[0])
    total = len(b"FIRST LINE\n") + sum(len(f"line {i}\n") for i in range(1000)) + 10
    assert left_out == total - 64


def test_bounded_output_handles_one_huge_chunk():
    collected = BoundedOutput(limit=10)
    collected.add(b"a" * 5 + b"b" * 100 + b"c" * 5)
    assert collected.text() == "aaaaa\n[... 100 bytes of output left out ...]\nccccc"


def test_first_error_line_skips_busybox_summary():
    result = ExecResult(
        exit_code=1,
        output="tar: ./file: No such file or directory\n"
        "tar: error exit delayed from previous errors\n",
    )
    assert result.first_error_line() == "tar: ./file: No such file or directory"
    assert result.last_line() == "tar: error exit delayed from previous errors"


def test_first_error_line_skips_gnu_warnings_and_summary():
    result = ExecResult(
        exit_code=2,
        output="tar: ./sock: socket ignored\n\n"
        "tar: ./gone: Cannot stat: No such file or directory\n"
        "tar: ./other: Cannot open: Permission denied\n"
        "tar: Exiting with failure status due to previous errors\n",
    )
    assert result.first_error_line() == "tar: ./gone: Cannot stat: No such file or directory"


def test_first_error_line_falls_back_to_last_line_or_exit_code():
    assert ExecResult(1, "tar: error exit delayed from previous errors\n").first_error_line() == (
        "tar: error exit delayed from previous errors"
    )
    assert ExecResult(3, "").first_error_line() == "exit code 3"
