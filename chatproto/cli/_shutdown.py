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

The adapters own the signal handling (each starts its graceful shutdown from
a handler of its own kind) and report every signal first through the
observer's ``signal_received(signum)``, which ``LoggingObserver`` forwards to
:meth:`ShutdownSignals.signalled`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

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
