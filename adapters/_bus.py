"""The Redis connection's bytes, parsed for the core: RESP3 through hiredis.

Owns: one :class:`BusParser` per Redis connection, which turns what was read
into the plain values the core takes (:data:`chatproto.BusItem`): a push
(pub/sub) becomes a ``tuple``, an error reply a :class:`chatproto.BusError`,
every other reply stays what hiredis made of it. Imported only in cluster
mode: a single-node server never loads hiredis.

hiredis's ``Reader`` is a sans-IO RESP parser kept by the Redis project
itself (C, RESP3 pushes, errors returned rather than raised): the one part of
the cluster that chatproto does not write by hand.
"""

from __future__ import annotations

import hiredis

from chatproto import BusError, BusItem

__all__ = ["BusParser"]


class BusParser:
    """Bytes from Redis in, whole replies and pushes out."""

    __slots__ = ("_reader",)

    def __init__(self) -> None:
        self._reader = hiredis.Reader()

    def feed(self, data: bytes) -> list[BusItem]:
        """Everything complete in what was read so far, in order."""
        reader = self._reader
        reader.feed(data)
        items: list[BusItem] = []
        while True:
            item = reader.gets()
            if item is False:
                return items
            if isinstance(item, hiredis.PushNotification):
                items.append(tuple(item))
            elif isinstance(item, hiredis.ReplyError):
                items.append(BusError(str(item)))
            else:
                items.append(item)
