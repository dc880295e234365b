"""A model of framing computed on a whole stream: what the core's framer must agree with.

Shared by test_framing.py and test_properties.py (no test module imports another).
"""

from __future__ import annotations

from chatproto import LineTooLong

__all__ = ["TOO_LONG", "Frame", "reference_frames"]

Frame = bytes | LineTooLong
TOO_LONG = LineTooLong()


def reference_frames(stream: bytes, max_line: int) -> list[Frame]:
    """What the spec says a stream frames to, computed on the whole stream.

    Complete lines lose one trailing ``\\r``; empty ones vanish; longer than
    ``max_line`` is one LineTooLong. A trailing partial line is reported too
    long as soon as it cannot become legal any more: over ``max_line + 1``
    bytes, or exactly that and not ending in the ``\\r`` of a ``\\r\\n``.
    """
    *complete, partial = stream.split(b"\n")
    out: list[Frame] = []
    for line in complete:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_line:
            out.append(TOO_LONG)
        elif line:
            out.append(line)
    size = len(partial)
    if size > max_line + 1 or (size == max_line + 1 and not partial.endswith(b"\r")):
        out.append(TOO_LONG)
    return out
