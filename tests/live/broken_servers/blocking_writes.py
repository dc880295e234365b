"""Broken server: writes to each client with a blocking ``sendall``, stalling everyone.

The bug: output is written with blocking ``sendall`` in the one loop that
serves everybody, so a client that stops reading fills its socket buffer
and the whole server freezes until it reads (or goes away). Caught by
ROB-51 (slow-reader-does-not-stall) and ROB-52 (slow-consumer-dropped);
with readers that read, everything works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class BlockingWrites(LoopServer):
    def flush(self, conn: ConnId) -> None:
        data = self.unsent.pop(conn, b"") + self.core.data_to_send(conn)
        sock = self.socks.get(conn)
        if data and sock is not None:
            sock.setblocking(True)
            try:
                sock.sendall(data)
            except OSError:
                pass
            sock.setblocking(False)
        super().flush(conn)


if __name__ == "__main__":
    main(BlockingWrites)
