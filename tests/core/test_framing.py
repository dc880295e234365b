"""LineBuffer: framing and the line-length limit (docs/protocol.md §1).

Every limit is checked at N and N+1 bytes, fed whole and split at every
position, against :func:`reference_frames`, a direct reading of the spec.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatproto import LineBuffer, LineTooLong
from tests.core.reference import Frame, reference_frames

MAX = 8
TOO_LONG = LineTooLong()


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The whole, one byte at a time, and every split into two and three pieces."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
        for j in range(i + 1, len(data)):
            yield [data[:i], data[i:j], data[j:]]


def feed_all(chunks: list[bytes], max_line: int = MAX) -> tuple[list[Frame], LineBuffer]:
    buf = LineBuffer(max_line)
    out: list[Frame] = []
    for chunk in chunks:
        out += buf.feed(chunk)
    return out, buf


def check_every_split(data: bytes, expected: list[Frame]) -> None:
    assert reference_frames(data, MAX) == expected, "test expectation disagrees with the spec model"
    for chunks in splits(data):
        got, _ = feed_all(chunks)
        assert got == expected, chunks


# ------------------------------------------------------------------ basics


def test_lines_split_at_lf_and_cr_stripped() -> None:
    check_every_split(b"one\ntwo\r\nthree\n", [b"one", b"two", b"three"])


def test_only_one_cr_is_stripped() -> None:
    # The second "\r" is content: the session refuses it as a control character.
    check_every_split(b"ab\r\r\n", [b"ab\r"])


def test_cr_elsewhere_is_kept() -> None:
    check_every_split(b"a\rb\n\rc\n", [b"a\rb", b"\rc"])


def test_empty_lines_dropped() -> None:
    check_every_split(b"\n\r\n\nx\n\r\n", [b"x"])


def test_partial_line_waits() -> None:
    got, buf = feed_all([b"PING", b" 1"])
    assert got == []
    assert buf.buffered == 6
    assert buf.feed(b"\n") == [b"PING 1"]
    assert buf.buffered == 0


def test_feed_eof_drops_partial_line() -> None:
    buf = LineBuffer(MAX)
    assert buf.feed(b"ok\npart") == [b"ok"]
    assert buf.feed_eof() == 4
    assert buf.buffered == 0
    # The dropped bytes never come back as the start of another line.
    assert buf.feed(b"x\n") == [b"x"]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_bytes_like(kind: type[bytes] | type[bytearray] | type[memoryview]) -> None:
    buf = LineBuffer(MAX)
    assert buf.feed(kind(b"ab\ncd")) == [b"ab"]
    assert buf.feed(kind(b"\n")) == [b"cd"]
    assert all(type(line) is bytes for line in buf.feed(kind(b"e\n")))


def test_feed_does_not_keep_a_reference_to_the_callers_buffer() -> None:
    buf = LineBuffer(MAX)
    data = bytearray(b"abc")
    buf.feed(data)
    data[:] = b"XYZ"
    assert buf.feed(b"\n") == [b"abc"]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LineBuffer(0)
    assert LineBuffer(1).max_line_bytes == 1


# -------------------------------------------------------------- the limit


def test_line_of_exactly_max_is_accepted() -> None:
    check_every_split(b"x" * MAX + b"\n", [b"x" * MAX])


def test_line_of_max_plus_one_is_too_long() -> None:
    check_every_split(b"x" * (MAX + 1) + b"\n", [TOO_LONG])


def test_max_plus_crlf_is_accepted() -> None:
    check_every_split(b"x" * MAX + b"\r\n", [b"x" * MAX])


def test_max_plus_one_plus_crlf_is_too_long() -> None:
    check_every_split(b"x" * (MAX + 1) + b"\r\n", [TOO_LONG])


def test_max_then_two_crs_is_too_long() -> None:
    # max bytes + "\r" could still be legal; a second "\r" makes it max + 1.
    check_every_split(b"x" * MAX + b"\r\r\n", [TOO_LONG])


def test_next_line_after_too_long_is_read_normally() -> None:
    check_every_split(b"y" * (MAX + 3) + b"\nok\n", [TOO_LONG, b"ok"])


def test_too_long_reported_once_however_long() -> None:
    data = b"z" * (MAX * 10) + b"\n"
    got, _ = feed_all([data[i : i + 3] for i in range(0, len(data), 3)])
    assert got == [TOO_LONG]


def test_too_long_reported_as_soon_as_exceeded() -> None:
    buf = LineBuffer(MAX)
    assert buf.feed(b"x" * MAX) == []
    # max + "\r" may be the start of "\r\n": not yet too long.
    assert buf.feed(b"\r") == []
    assert buf.feed(b"x") == [TOO_LONG]
    # Discarding up to the "\n": nothing more is reported, nothing buffered.
    assert buf.feed(b"more bytes") == []
    assert buf.buffered == 0
    assert buf.feed(b"tail\nnext\n") == [b"next"]


def test_max_plus_one_without_newline_is_too_long_at_once() -> None:
    assert feed_all([b"x" * (MAX + 1)])[0] == [TOO_LONG]
    assert feed_all([b"x" * MAX, b"x"])[0] == [TOO_LONG]


def test_discarding_keeps_memory_bounded() -> None:
    buf = LineBuffer(MAX)
    for _ in range(100):
        buf.feed(b"w" * 1000)
        assert buf.buffered <= MAX + 1


def test_eof_while_discarding_resets() -> None:
    buf = LineBuffer(MAX)
    assert buf.feed(b"x" * (MAX + 2)) == [TOO_LONG]
    assert buf.feed_eof() == 0
    assert buf.feed(b"fresh\n") == [b"fresh"]


def test_several_lines_and_limits_in_one_feed() -> None:
    data = b"a\n" + b"b" * MAX + b"\r\n" + b"c" * (MAX + 1) + b"\n\nd\r\n" + b"e" * (MAX + 1)
    check_every_split(data, [b"a", b"b" * MAX, TOO_LONG, b"d", TOO_LONG])
