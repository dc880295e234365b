"""Broken server: never frees a name when its user leaves.

The bug: when a logged-in client goes away, the others get the usual
``INFO <name> disconnected``, but the server forgets to release the session,
so the name stays taken and the ghost stays in WHO. Caught by DIS-52
(name-freed), DIS-53 (notice-on-reset), WHO-52 (leaver-not-listed), DM-53
(target-gone) and ROB-59 (no-ghost-users); the notices themselves (DIS-51)
are right.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class NeverFreesName(LoopServer):
    def __init__(self, port: int, *, idle_timeout: float = 60.0, max_clients: int = 10_000) -> None:
        super().__init__(port, idle_timeout=idle_timeout, max_clients=max_clients)
        self.ghosts: set[ConnId] = set()

    def peer_closed(self, conn: ConnId) -> None:
        name = self.core.username(conn)
        if name is None:
            super().peer_closed(conn)
            return
        # Tell the others, close the socket, but keep the session in the core.
        sock = self.socks.pop(conn)
        self.sel.unregister(sock)
        sock.close()
        self.ghosts.add(conn)
        for other in list(self.socks):
            if self.core.username(other) is not None:
                self.write(other, f"INFO {name} disconnected\n".encode())
                self.flush(other)

    def after_iteration(self) -> None:
        for ghost in self.ghosts:
            self.core.data_to_send(ghost)  # what the ghost is sent goes nowhere


if __name__ == "__main__":
    main(NeverFreesName)
