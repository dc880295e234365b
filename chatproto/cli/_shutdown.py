"""What SIGINT and SIGTERM mean to ``chatproto-serve``: say what is happening, and obey a second.

The first signal starts the adapter's graceful shutdown (every client is told
``INFO server-shutdown`` and its output is flushed, bounded by
``close_timeout``); the adapter reports it through the observer's
``stopping(connections)``, and :meth:`ShutdownSignals.announce` logs one line
saying so, with the signal and the number of connections being closed. A
second Ctrl-C (SIGINT), from an operator who will not wait, ends the process
at once with status 130, as shells report a process that SIGINT killed. A
repeated SIGTERM does not: it is what supervisors send before their own
SIGKILL.

Who calls :meth:`~ShutdownSignals.signalled`: the adapters own the signal
handling (each starts its graceful shutdown from a handler of its own kind)
and do not pass the signal on. So :meth:`~ShutdownSignals.install` puts
``signalled`` in front of the handlers the adapter installed, once the
adapter reports that it is listening (by then they are in place):

* threading, anyio on asyncio, uvloop or trio: Python-level handlers
  (``signal.signal``); ours calls the adapter's afterwards. asyncio and
  uvloop learn of the signal through the wakeup file descriptor, which
  replacing the Python-level handler leaves alone.
* gevent: libev signal watchers, which ``signal.signal`` would silently
  disable; ours is one more gevent watcher beside the adapter's.

Once the adapters call ``observer.signal_received(signum)`` from their own
handlers (``LoggingObserver.signal_received`` forwards here), :meth:`install`
is no longer needed.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["SHUTDOWN_SIGNALS", "ShutdownSignals"]

log = logging.getLogger("chatproto.serve")

#: The signals that stop the server.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Counts SIGINT/SIGTERM: the first is announced, the second exits at once."""

    def __init__(
        self,
        open_connections: Callable[[], int],
        *,
        force_exit: Callable[[int], object] = os._exit,
    ) -> None:
        #: How many connections are open now (the observer counts them).
        self._open_connections = open_connections
        self._force_exit = force_exit
        #: The signals received so far, in order.
        self.received: list[signal.Signals] = []
        self._undo: list[Callable[[], None]] = []

    def signalled(self, signum: int) -> None:
        """A SIGINT or SIGTERM arrived (call on every one, from the handler).

        The first needs nothing here: the adapter's own handler starts the
        shutdown, which :meth:`announce` reports.
        """
        sig = signal.Signals(signum)
        self.received.append(sig)
        if len(self.received) == 1:
            return
        count = self._open_connections()
        plural = "" if count == 1 else "s"
        if sig is signal.SIGINT:
            log.warning("second SIGINT: exiting now, dropping %d connection%s", count, plural)
            for handler in logging.getLogger().handlers:
                handler.flush()
            self._force_exit(128 + signum)
        else:
            # Supervisors repeat SIGTERM before their SIGKILL; the graceful
            # shutdown is already bounded by close_timeout.
            log.info("already shutting down: %d connection%s left", count, plural)

    def announce(self, connections: int) -> None:
        """The adapter began its graceful shutdown of ``connections`` connections."""
        cause = f" on {self.received[0].name}" if self.received else ""
        log.info(
            "shutting down%s: closing %d connection%s (Ctrl-C exits at once)",
            cause,
            connections,
            "" if connections == 1 else "s",
        )

    def install(self, backend: str) -> None:
        """Hear every shutdown signal before the ``backend`` adapter's own handlers do.

        Call in the main thread, after the adapter installed its handlers
        (from the observer's ``listening``). Undone by :meth:`uninstall`.
        """
        if self._undo:
            return
        for signum in SHUTDOWN_SIGNALS:
            if backend == "gevent":
                self._undo.append(self._watch_gevent(signum))
            else:
                self._undo.append(self._chain_python(signum))

    def uninstall(self) -> None:
        """Remove what :meth:`install` added (after the adapter has returned)."""
        while self._undo:
            self._undo.pop()()

    def _chain_python(self, signum: int) -> Callable[[], None]:
        previous = signal.getsignal(signum)

        def handler(signum: int, frame: FrameType | None) -> None:
            self.signalled(signum)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signum, handler)

        def undo() -> None:
            if signal.getsignal(signum) is handler and previous is not None:
                signal.signal(signum, previous)

        return undo

    def _watch_gevent(self, signum: int) -> Callable[[], None]:
        import gevent  # noqa: PLC0415 - only the gevent backend has it

        watcher: Any = gevent.signal_handler(signum, self.signalled, signum)
        return watcher.cancel  # type: ignore[no-any-return]
