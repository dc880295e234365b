"""One connection's bookkeeping inside :class:`~chatproto.ChatServer`.

Owns: the record of slots the server reads and writes on its hot paths
(attribute access on a slotted object is the cheapest Python has), and the
close-mode state machine, :data:`MODE_TRANSITIONS`: the only way a
connection's :class:`~chatproto.CloseMode` changes. Private: the public
handle of a connection is its :data:`~chatproto.ConnId`.

One owner per fact: the connection's close mode says whether it is open,
closing after its output, or being cut off; its session says only how far
the login got (and what a line means); the user's name is the session's
``username``; the lines that name the user are its :class:`UserLines`.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Final

from ._events import CloseMode, CloseReason, ConnId
from ._framing import LineTooLong
from ._replies import UserLines
from ._server_session import ServerSession

__all__ = ["MODE_TRANSITIONS", "Connection", "Line", "Timer"]

#: A framed line waiting to be executed (or the marker of an over-long one).
Line = bytes | LineTooLong

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW

#: (close mode, trigger) -> next close mode. Rules: a connection starts OPEN;
#: ``close`` lets it take its output first (QUIT, idle, half-close, slow
#: consumer, shutdown...); ``abort`` cuts it off (a reset, an overflow while
#: closing, close_timeout over). A connection never reopens. Anything not
#: listed is a bug in the core.
MODE_TRANSITIONS: Final[dict[tuple[CloseMode, str], CloseMode]] = {
    (_OPEN, "close"): _AFTER_FLUSH,
    (_OPEN, "abort"): _NOW,
    (_AFTER_FLUSH, "abort"): _NOW,
    (_NOW, "abort"): _NOW,
}


class Timer(IntEnum):
    """What an entry ``(deadline, conn id, kind)`` of the server's timer heap is for."""

    IDLE = 0
    CLOSE = 1
    CONGESTION = 2
    TOKENS = 3


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
        "out",
        "queued",
        "reading",
        "reason",
        "refilled",
        "session",
        "stalled",
        "tokens",
        "user",
        "waiters",
        "waiting_on",
    )

    def __init__(self, conn: ConnId, session: ServerSession, now: float, tokens: float) -> None:
        self.id = conn
        self.session = session
        # The session's framer and parser, for the hot path (the core's own
        # cheap form of ServerSession.receive_data).
        self.lines = session._lines
        self.last_seen = now
        #: Chunks waiting for data_to_send: shared broadcast lines, replies,
        #: and at shutdown memoryviews into one shared block.
        self.out: list[bytes | memoryview] = []
        self.queued = 0
        #: Changed only by :meth:`transition` (MODE_TRANSITIONS).
        self.mode = _OPEN
        self.reason: CloseReason | None = None
        self.close_deadline = 0.0
        #: Whether this connection counts against max_clients.
        self.counted = False
        #: The lines naming this user, from login on.
        self.user: UserLines | None = None
        # Hot-path copies of user.msg_prefix and user.dm_prefix.
        self.msg_prefix = b""
        self.dm_prefix = b""

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

        # -- output congestion (docs/protocol.md §12.3, §16.3)
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

    @property
    def name(self) -> str | None:
        """The user logged in on this connection (the session owns it)."""
        return self.session.username

    def transition(self, trigger: str) -> None:
        """Change the close mode as :data:`MODE_TRANSITIONS` says (nothing else does)."""
        self.mode = MODE_TRANSITIONS[(self.mode, trigger)]
