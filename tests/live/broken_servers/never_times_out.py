"""Broken server: never times out an idle connection, whatever it is told.

The bug: the idle timeout given on its command line is ignored, so a
connection that never completes a line (slowloris: a byte now and then,
never a newline) holds its socket and memory forever. Caught by LOD-55
(slowloris-timed-out), and by the strict idle tests (IDL-51, IDL-53).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ServerConfig


class NeverTimesOut(LoopServer):
    def configure(self, idle_timeout: float, max_clients: int) -> ServerConfig:
        return super().configure(1e6, max_clients)  # eleven days


if __name__ == "__main__":
    main(NeverTimesOut)
