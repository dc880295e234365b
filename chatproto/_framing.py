"""Line framing: bytes in, complete lines out, with a length limit.

Owns: splitting a byte stream at ``\\n``, stripping one ``\\r`` before it,
dropping empty lines, and enforcing the line-length limit however TCP splits
the bytes (docs/protocol.md §1). Never decodes text or interprets a command.

Cost stays O(n) in the bytes fed: the partial line is kept in a ``bytearray``
that never contains ``\\n``, so each feed searches only the new bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["LineBuffer", "LineTooLong"]

_LF: Final = 10
_CR: Final = 13


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line exceeded the limit; its bytes are being discarded up to ``\\n``.

    Reported once per over-long line, as soon as the limit is exceeded.
    """


_TOO_LONG: Final = LineTooLong()


class LineBuffer:
    """Reassemble lines from a byte stream.

    ``feed`` returns the complete lines (without terminator) and a
    :class:`LineTooLong` marker in stream order. Any split of the same bytes
    gives the same list, concatenated.
    """

    __slots__ = ("_discarding", "_max", "_partial")

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, got {max_line_bytes}")
        self._max = max_line_bytes
        self._partial = bytearray()
        # True while skipping the rest of an over-long line up to its "\n".
        self._discarding = False

    @property
    def max_line_bytes(self) -> int:
        """The limit, terminator excluded."""
        return self._max

    @property
    def discarding(self) -> bool:
        """Whether the rest of an over-long line is being skipped up to its ``\n``."""
        return self._discarding

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held back, waiting for its ``\\n``."""
        return len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | LineTooLong]:
        """Add bytes; return the lines they complete, in order.

        An empty list means more data is needed. Empty lines are not returned.
        """
        chunk = data if type(data) is bytes else bytes(data)
        # Fast path, the common case of a chat client: one complete line of
        # legal length, nothing held back. Same result as the general path.
        if (
            chunk.find(b"\n") == len(chunk) - 1
            and not self._partial
            and not self._discarding
            and len(chunk) <= self._max + 1
        ):
            line = chunk[:-2] if chunk[-2:-1] == b"\r" else chunk[:-1]
            return [line] if line else []
        out: list[bytes | LineTooLong] = []
        if self._discarding:
            end = chunk.find(b"\n")
            if end < 0:
                return out
            self._discarding = False
            chunk = chunk[end + 1 :]
        partial = self._partial
        if partial:
            end = chunk.find(b"\n")
            if end < 0:
                partial += chunk
                self._check_partial(out)
                return out
            partial += chunk[:end]
            self._emit(bytes(partial), out)
            partial.clear()
            chunk = chunk[end + 1 :]
        lines = chunk.split(b"\n")
        rest = lines.pop()
        limit = self._max
        for line in lines:
            # Inlined _emit: this loop is the parser's hot path.
            if line and line[-1] == _CR:
                line = line[:-1]
            if len(line) > limit:
                out.append(_TOO_LONG)
            elif line:
                out.append(line)
        if rest:
            partial += rest
            self._check_partial(out)
        return out

    def feed_eof(self) -> int:
        """End of stream: drop the partial line (never executed, §1.6).

        Returns how many bytes were dropped.
        """
        dropped = len(self._partial)
        self._partial.clear()
        self._discarding = False
        return dropped

    def _emit(self, line: bytes, out: list[bytes | LineTooLong]) -> None:
        if line and line[-1] == _CR:
            line = line[:-1]
        if len(line) > self._max:
            out.append(_TOO_LONG)
        elif line:
            out.append(line)

    def _check_partial(self, out: list[bytes | LineTooLong]) -> None:
        # The last byte may be the "\r" of a "\r\n" still to come, so a partial
        # line of max+1 bytes ending in "\r" may still be legal.
        partial = self._partial
        size = len(partial)
        if size > self._max + 1 or (size == self._max + 1 and partial[-1] != _CR):
            out.append(_TOO_LONG)
            partial.clear()
            self._discarding = True
