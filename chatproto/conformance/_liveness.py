"""Liveness: does the server still answer a fresh connection?

Owns: the one check that tells "this line is not coming" from "this server
stopped answering", and the exception that carries the second verdict.

The check must exercise the server's shared state (a ``PING`` answered by a
thread that takes no lock would say "alive" while every user is stuck) and
must not change it (a user who logs in and leaves triggers a leave notice,
which is exactly what deadlocks some servers). So one *anchor* user stays
logged in for the whole run, and each check is a fresh connection asking for
the anchor's name: ``LOGIN <anchor>`` must be refused, which takes the same
path as any login, creates no user and announces nothing. If the anchor was
dropped meanwhile (a slow reader, an idle timeout), the check's connection is
accepted under that name and becomes the new anchor. Never interprets an
answer beyond "a line came".
"""

from __future__ import annotations

import itertools
import ssl
import time

from ._wire import LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = ["Liveness", "ServerUnresponsive", "check_alive"]

_SERIAL = itertools.count(1)


class ServerUnresponsive(Exception):  # noqa: N818  (a verdict on the server)
    """A fresh connection got no answer: the server is deadlocked or stopped."""


class Liveness:
    """Liveness checks against one server, sharing one anchor user."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        banner_lines: int,
        timeout: float,
        nonce: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.banner_lines = banner_lines
        self.timeout = timeout
        self.name = f"live{nonce}{next(_SERIAL)}"
        self._anchor: LineSocket | None = None
        self._record = Transcript()

    def check(self) -> float:
        """Seconds a fresh connection's ``LOGIN <anchor>`` took to be answered.

        Raises :class:`ServerUnresponsive` when it cannot connect, is closed on,
        or hears nothing within the timeout.
        """
        self._drain()
        start = time.monotonic()
        end = start + self.timeout
        try:
            sock = LineSocket.connect(self.address, "live", self._record, end, end, tls=self.tls)
        except OSError as exc:
            raise ServerUnresponsive(f"a fresh connection could not be made: {exc}") from None
        sock.verbose = False
        keep = False
        try:
            for _ in range(self.banner_lines):
                sock.read_line(end)
            sock.send(f"LOGIN {self.name}\n".encode())
            answer = sock.read_line(end)
            if answer.text.upper().startswith("OK"):
                # The anchor was gone: this connection is the anchor now.
                if self._anchor is not None:
                    self._anchor.close_quietly()
                self._anchor, keep = sock, True
            return time.monotonic() - start
        except ReadTimeout:
            raise ServerUnresponsive(
                f"a fresh connection's LOGIN got no answer within {self.timeout:.1f} s"
            ) from None
        except PeerClosed as exc:
            raise ServerUnresponsive(f"a fresh connection was {exc}") from None
        except OSError as exc:
            raise ServerUnresponsive(f"a fresh connection failed: {exc}") from None
        finally:
            if not keep:
                sock.close_quietly()

    def _drain(self) -> None:
        """Read what the anchor was sent, so it does not weigh on the server."""
        anchor = self._anchor
        if anchor is None:
            return
        anchor.read_available()
        anchor.discard_lines()
        if anchor.eof:
            anchor.close_quietly()
            self._anchor = None

    def close(self) -> None:
        """Let the anchor go (at the end of the run)."""
        if self._anchor is not None:
            self._anchor.close_quietly()
            self._anchor = None


def check_alive(
    address: tuple[str, int], *, banner_lines: int, timeout: float, nonce: str
) -> float:
    """A one-off liveness check (its anchor is released afterwards)."""
    live = Liveness(address, banner_lines=banner_lines, timeout=timeout, nonce=nonce)
    try:
        return live.check()
    finally:
        live.close()
