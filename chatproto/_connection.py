"""One connection's bookkeeping inside :class:`~chatproto.ChatServer`.

Owns nothing of its own: a record of slots that the server reads and writes on
its hot paths (attribute access on a slotted object is the cheapest Python
has). Private: the public handle of a connection is its
:data:`~chatproto.ConnId`.
"""

from __future__ import annotations

import math

from ._events import CloseMode, CloseReason, ConnId
from ._framing import LineTooLong
from ._server_session import ServerSession

__all__ = ["Connection", "Line"]

#: A framed line waiting to be executed (or the marker of an over-long one).
Line = bytes | LineTooLong


class Connection:
    """Bookkeeping for one connection: session, output queue, flow control."""

    __slots__ = (
        "close_deadline",
        "congested",
        "congested_at",
        "congestion_due",
        "counted",
        "dm_prefix",
        "eof_pending",
        "flood_episode",
        "held",
        "id",
        "last_seen",
        "lines",
        "mode",
        "msg_prefix",
        "name",
        "out",
        "queued",
        "reading",
        "reason",
        "refilled",
        "session",
        "stalled",
        "tokens",
        "user_line",
        "waiters",
        "waiting_on",
    )

    def __init__(self, conn: ConnId, session: ServerSession, now: float, tokens: float) -> None:
        self.id = conn
        self.session = session
        self.lines = session.lines
        self.last_seen = now
        #: Chunks waiting for data_to_send: shared broadcast lines, replies,
        #: and at shutdown memoryviews into one shared block.
        self.out: list[bytes | memoryview] = []
        self.queued = 0
        self.mode = CloseMode.OPEN
        self.reason: CloseReason | None = None
        self.close_deadline = 0.0
        #: Whether this connection counts against max_clients.
        self.counted = False
        self.name: str | None = None
        # Encoded once at login, for the hot paths.
        self.msg_prefix = b""
        self.dm_prefix = b""
        self.user_line = b""

        # -- input flow control (docs/protocol.md §16)
        #: Lines received and framed but not executed yet, in order; ``None``
        #: while the connection's input is taken as it comes. Not ``None``
        #: means the adapter was told to stop reading.
        self.held: list[Line] | None = None
        #: Whether the adapter should read this connection (the last thing it
        #: was told through take_reading_changes).
        self.reading = True
        #: Flood budget in lines, and when it was last topped up.
        self.tokens = tokens
        self.refilled = now
        #: Whether FloodLimited was reported and the budget has not filled up
        #: since (one report per episode).
        self.flood_episode = False
        #: The congested recipient this connection's input waits for.
        self.waiting_on: Connection | None = None
        #: The end of stream arrived while lines were held: close after them.
        self.eof_pending = False

        # -- output congestion (docs/protocol.md §12.3)
        #: Queued past the high-water mark, and not yet drained down to the
        #: low-water mark.
        self.congested = False
        #: While congested: when it last made progress (took output), or
        #: became congested. The stall and soft-limit clocks run from here.
        self.congested_at = 0.0
        #: The deadline of the live congestion entry in the timer heap (others
        #: are stale), or infinity.
        self.congestion_due = math.inf
        #: Congested without taking anything for backpressure_timeout: it
        #: holds nobody back until it takes output again.
        self.stalled = False
        #: Senders waiting for this connection to drain.
        self.waiters: list[Connection] = []
