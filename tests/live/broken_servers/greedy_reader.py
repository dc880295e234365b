"""Broken server: reads a socket until it is empty before serving anyone else.

The bug: when a connection is readable, the loop calls ``recv`` on it again
and again until the kernel has nothing more (``EAGAIN``), feeding every
chunk to the core, and only then looks at the other sockets, its timers and
its output. A client that sends faster than the server processes keeps that
loop going for as long as it sends: everyone else waits (issue 10: gevent's
reader, a PING waiting 7.46 s). Caught by LOD-52 (ping-during-flood); a
client that sends in bursts, as every other test does, notices nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class GreedyReader(LoopServer):
    def read(self, conn: ConnId) -> None:
        sock = self.socks.get(conn)
        if sock is None:
            return
        while True:  # never yields while there is input
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                super().read(conn)  # the end of stream, handled as usual
                return
            self.feed(conn, data)


if __name__ == "__main__":
    main(GreedyReader)
