"""Broken server: deadlocks right after the first successful LOGIN.

The bug: once the first user's ``OK`` is sent, the loop takes a lock it
already holds and never runs again. The socket still accepts connections (the
kernel does that), but nothing is ever answered. The suite must report the
server as unresponsive (an ERROR naming the hang), restart it, and go on,
never hanging itself.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main


class DeadlockAfterLogin(LoopServer):
    lock = threading.Lock()

    def after_iteration(self) -> None:
        if self.core.usernames():
            with self.lock:
                self.lock.acquire()  # the classic: re-entering a non-reentrant lock


if __name__ == "__main__":
    main(DeadlockAfterLogin)
