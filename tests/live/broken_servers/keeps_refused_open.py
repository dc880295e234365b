"""Broken server: a connection past max_clients gets ERR server-full but stays open.

The bug: the refusal is written, and then the socket is kept until the
client closes it (issue 10: a flood of refused connections exhausted every
backend's file descriptors). docs/protocol.md §13: a refused connection is
closed as soon as its line is written. Caught by LOD-54
(connection-flood-refused), within a second, and by LIM-51 (strict), which
waits a line timeout for its one refused client to be closed.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import READ, LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import READ, LoopServer, main

from chatproto import ConnectionRefused, ConnId


class KeepsRefusedOpen(LoopServer):
    refused: dict[int, socket.socket] = {}  # noqa: RUF012  (one server per process)

    def accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        admitted = self.core.accept(time.monotonic())
        if isinstance(admitted, ConnectionRefused):
            sock.send(admitted.data)
            key = -sock.fileno()  # not a connection id: read() knows it
            self.refused[key] = sock
            self.sel.register(sock, READ, key)
            return
        self.socks[admitted] = sock
        self.sel.register(sock, READ, admitted)

    def read(self, conn: ConnId) -> None:
        sock = self.refused.get(conn)
        if sock is None:
            super().read(conn)
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # only when the client gives up
            self.sel.unregister(sock)
            sock.close()
            del self.refused[conn]


if __name__ == "__main__":
    main(KeepsRefusedOpen)
