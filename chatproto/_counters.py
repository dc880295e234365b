"""What a :class:`~chatproto.ChatServer` has done and holds, in numbers: for metrics.

Owns :class:`ServerCounters`, the snapshot :meth:`ChatServer.counters`
returns. The core keeps the totals as plain integers, incremented where the
work already happens (once per read for the lines executed, once per
command for the rarer commands and for each broadcast, once per drain for
the bytes), so keeping them costs almost nothing; everything else (how many
connections, users, bytes queued, inputs paused) is counted only when a
snapshot is taken. Nothing here reads a clock or knows a metrics library:
``chatproto-serve --metrics`` turns a snapshot into Prometheus metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["COMMAND_LABELS", "ServerCounters"]

#: The keys of :attr:`ServerCounters.lines_in`, in the order of the protocol's
#: command list (docs/protocol.md §3.3), then ``invalid``.
COMMAND_LABELS = ("login", "msg", "dm", "who", "ping", "help", "quit", "invalid")


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """A snapshot of a server's totals (since it was made) and current sizes.

    Totals only grow. A snapshot may be taken from another thread than the
    one feeding the server: each number is read once, so a snapshot taken
    while the server works is consistent per number, not across numbers.
    """

    #: Lines executed, by command (the keys of :data:`COMMAND_LABELS`):
    #: ``invalid`` is a line refused before it meant anything (an unknown
    #: word, a missing argument, a bad name, a line too long, a command before
    #: LOGIN...), answered ``ERR``. A line the server never ran (after QUIT,
    #: a partial line, input dropped with its connection) is not counted.
    lines_in: Mapping[str, int]
    #: Lines queued for clients: replies, deliveries and notices, one per
    #: recipient (a slow consumer's backlog that was dropped included).
    lines_out: int
    #: Bytes the adapter took to write (:meth:`ChatServer.data_to_send`).
    bytes_out: int
    #: Connections the adapter has not reported lost yet (closing ones included).
    connections: int
    #: Logged-in users.
    users: int
    #: Bytes queued for clients, not yet taken by the adapter.
    queued_bytes: int
    #: Connections whose input the core does not take now, by cause
    #: (``flood``, ``backpressure``: :class:`~chatproto.PauseCause` values).
    paused: Mapping[str, int]
