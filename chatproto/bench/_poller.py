"""Readiness of many sockets at once: ``epoll`` where it exists, else ``poll``.

Owns the one system call the load generator waits in. ``epoll`` costs per
event, not per registered socket, which is what lets one process hold 19,000
idle connections and still serve a busy room beside them.
"""

from __future__ import annotations

import select

__all__ = ["GONE", "IN", "OUT", "Poller"]

IN, OUT = select.POLLIN, select.POLLOUT
#: Error and hang-up; epoll and poll use the same bit values on Linux for these.
GONE = select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)


class Poller:
    """``epoll`` where it exists, else ``poll``; timeouts in seconds."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._poll = select.poll() if self._epoll is None else None

    def register(self, fd: int, mask: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, mask)
        else:
            assert self._poll is not None
            self._poll.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        if self._epoll is not None:
            self._epoll.modify(fd, mask)
        else:
            assert self._poll is not None
            self._poll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                assert self._poll is not None
                self._poll.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass  # already gone

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        if self._epoll is not None:
            return self._epoll.poll(timeout)
        assert self._poll is not None
        return self._poll.poll(int(timeout * 1000))
