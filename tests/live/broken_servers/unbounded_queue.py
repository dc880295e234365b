"""Broken server: queues output for a client that never reads, without any limit.

The bug: no output limit and no slow-consumer timeout, so a client that
stops reading is never cut off; its backlog grows as long as others talk,
and it is never told (docs/protocol.md §12.3). Writes never block, so
everyone else is served normally. Caught by LOD-53 (never-reader-cut-off),
after its 10 s soft-limit wait; a reader that reads notices nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ServerConfig


class UnboundedQueue(LoopServer):
    def configure(self, idle_timeout: float, max_clients: int) -> ServerConfig:
        return ServerConfig(
            flood_rate=0.0,
            backpressure_timeout=0.0,
            idle_timeout=idle_timeout,
            max_clients=max_clients,
            max_outbound_bytes=1 << 40,
            slow_consumer_timeout=1e6,
        )


if __name__ == "__main__":
    main(UnboundedQueue)
