"""Broken server: writes only when no input is waiting, and never holds a sender back.

The bug: each loop iteration reads every readable socket, but hands output
to the sockets only in an iteration where nothing was waiting to be read,
and it has no backpressure (a sender is never paused for a recipient that is
behind). A flood keeps input waiting, so a recipient's queue grows faster
than it is written, however fast the recipient reads, until the output limit
drops it (issue 10: anyio on asyncio and uvloop dropped a reader that keeps
up after 34 to 93 % of a 2 MB flood). Caught by LOD-51
(reader-keeps-up-with-a-flood), and by LOD-52 (the PONGs wait too); traffic
in bursts, as in every other test, notices nothing.
"""

from __future__ import annotations

import selectors
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class NoBackpressure(LoopServer):
    backlog: set[ConnId] = set()  # noqa: RUF012  (one server per process)

    def drain_ready(self) -> None:
        self.backlog.update(self.core.take_ready())
        waiting = any(
            mask & selectors.EVENT_READ and key.data is not None
            for key, mask in self.sel.select(0)
            if key.fileobj is not self.listener and key.fileobj is not self.wake_r
        )
        if waiting:
            return  # output waits for a quiet moment
        for conn in self.backlog:
            if conn in self.socks:
                self.flush(conn)
        self.backlog.clear()


if __name__ == "__main__":
    main(NoBackpressure)
