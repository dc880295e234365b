"""Broken server: echoes every MSG back to its sender.

The bug (§6.2 says no echo): ``MSG hi`` from alice also sends
``MSG alice hi`` to alice. A common dialect, so ``core`` passes it as
LENIENT(msg-echo). Caught by ``strict``: MSG-51 (fan-out) and the vectors
that check for silence after a MSG (MSG-01 broadcast-no-echo ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

from chatproto import ConnId


class EchoMsg(LoopServer):
    def feed(self, conn: ConnId, data: bytes) -> None:
        super().feed(conn, data)
        name = self.core.username(conn)
        if name is None:
            return
        for line in data.split(b"\n")[:-1]:
            word, _, text = line.rstrip(b"\r").partition(b" ")
            if word.upper() == b"MSG" and text:
                self.write(conn, b"MSG " + name.encode() + b" " + text + b"\n")
                self.flush(conn)


if __name__ == "__main__":
    main(EchoMsg)
