"""Splitting the engine's multiplexed exec stream, cut anywhere by the socket's reads."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opskit import errors
from opskit.engine.remote_transfer import FrameSplitter


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def _collect(data: bytes, cuts: list[int]):
    splitter = FrameSplitter()
    out = {1: bytearray(), 2: bytearray()}
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        for stream, piece in splitter.split(data[start:cut]):
            out[stream] += piece
        start = cut
    return out, splitter.between_frames


@given(
    frames=st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_streams_come_out_whole_wherever_reads_cut_them(frames, cuts):
    data = b"".join(_frame(stream, payload) for stream, payload in frames)
    out, between = _collect(data, [cut for cut in cuts if cut <= len(data)])
    assert bytes(out[1]) == b"".join(p for s, p in frames if s == 1)
    assert bytes(out[2]) == b"".join(p for s, p in frames if s == 2)
    assert between


def test_a_stream_cut_mid_frame_is_not_between_frames():
    _, between = _collect(_frame(1, b"abcdef")[:-2], [])
    assert not between


def test_an_unknown_stream_number_is_refused():
    with pytest.raises(errors.HelperFailed, match="garbled"):
        list(FrameSplitter().split(_frame(7, b"x")))
