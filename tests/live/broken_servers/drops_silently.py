"""Broken server: drops a slow consumer without telling it why.

The bug: when the core cuts off a client that stopped reading, this loop
closes the socket at once instead of sending the last line the core queued,
``INFO slow-consumer`` (docs/protocol.md §12.3; issue 10: the dropped users'
stream just ended, sometimes mid-line). The others are told, nobody waits:
only the dropped client's view is wrong. Caught by ROB-52
(slow-consumer-dropped) under the strict profile; LOD-53, which accepts a
close with or without that line, passes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import CloseReason, ConnId


class DropsSilently(LoopServer):
    def flush(self, conn: ConnId) -> None:
        if self.core.close_reason(conn) is CloseReason.SLOW_CONSUMER and conn in self.socks:
            self.core.data_to_send(conn, now=time.monotonic())  # thrown away
            self.close(conn)
            return
        super().flush(conn)


if __name__ == "__main__":
    main(DropsSilently)
