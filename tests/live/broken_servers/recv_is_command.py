"""Broken server: treats each ``recv()`` as exactly one command.

The bug: whatever one ``recv()`` returns is taken as one line. The rest of a
packet holding several commands is lost, and a command split over several
packets is executed piece by piece as garbage. Caught by FRM-52
(pipelined-one-packet), FRM-53 (split-over-packets) and FRM-54
(byte-at-a-time); one command per packet, as most tests send, works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class RecvIsCommand(LoopServer):
    def feed(self, conn: ConnId, data: bytes) -> None:
        first = data.split(b"\n", 1)[0]
        super().feed(conn, first + b"\n")


if __name__ == "__main__":
    main(RecvIsCommand)
