"""Barriers: proof that everything a connection sent before was processed.

Owns: :meth:`Barriers.sync` and its two halves (:meth:`~Barriers.start_sync`,
:meth:`~Barriers.finish_sync`, so that a test can start barriers on several
connections before it waits for any). Synchronisation uses the protocol:
``PING`` is answered by ``PONG`` only after everything sent before it was
processed (§10.2). A server without ``PING`` (a Bonus feature of the
original README) is synchronised by messages instead: the connection sends a
``MSG`` that a partner connection must see, then the partner sends one back.
Where neither is possible (before login, on a server that ignores ``PING``
there), what arrives within the absence wait is collected, labelled in the
transcript. Never judges a line it did not ask for: the lines read before the
barrier's answer are returned to the caller.

A mixin of :class:`~._conn.Conn`, whose state it shares: the split keeps each
module to one job while a test still calls one object.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from chatproto import Error, Pong

from ._wire import Line, LineSocket, PeerClosed, ReadTimeout

if TYPE_CHECKING:
    from ._conn import Event
    from ._context import TestContext

__all__ = ["Barriers"]


class Barriers:
    """The barrier half of :class:`~._conn.Conn`."""

    # Shared with Conn, which sets them up.
    ctx: TestContext
    label: str
    wire: LineSocket
    logged_in: bool
    _syncs: int
    _marks_seen: list[str]

    # What Conn provides to it.
    def send_line(self, text: str) -> None:
        raise NotImplementedError

    def next_event(self, what: str, *, timeout: float | None = None) -> Event:
        raise NotImplementedError

    def _late(self, what: str, started: float, deadline: float) -> float:
        raise NotImplementedError

    def _normalise(self, line: Line) -> Event | None:
        raise NotImplementedError

    # ----------------------------------------------------- synchronisation

    def _next_token(self, prefix: str = "sync") -> str:
        self._syncs += 1
        return f"{prefix}{self._syncs}"

    def start_sync(self) -> str | None:
        """Start a barrier; ``None`` if none is possible here (then an absence wait is used).

        With PING: ``PING`` (core, the original form) or ``PING <token>``
        (strict). Without: ``MSG <mark>`` that a partner connection must see.
        """
        d = self.ctx.dialect
        answers = d.has_ping if self.logged_in else d.ping_before_login != "silent"
        if answers:
            token = self._next_token()
            self.send_line(f"PING {token}" if self.ctx.settings.strict else "PING")
            return token
        if not self.logged_in:
            return None
        self.ctx.partner()  # logged in before the mark is sent, so that it sees it
        token = f"{self.ctx.sync_mark}{self.label}{self._next_token()}"
        self.send_line(f"MSG {token}")
        return "msg:" + token

    def finish_sync(self, token: str | None) -> list[Event]:
        """Read up to the barrier's answer; return what came before it."""
        if token is None:
            return self._collect(self.ctx.settings.absence)
        if token.startswith("msg:"):
            return self._finish_msg_sync(token[len("msg:") :])
        before: list[Event] = []
        while True:
            event = self.next_event("PONG" if not self.ctx.settings.strict else f"PONG {token}")
            if isinstance(event.line, Pong):
                self._check_pong(event, token)
                return before
            if (
                isinstance(event.line, Error)
                and not self.logged_in
                and self.ctx.dialect.ping_before_login == "refused"
            ):
                if self.ctx.dialect.has_ping:
                    self.ctx.allow(
                        "ping-refused-before-login", f"{event.raw!r} for PING before LOGIN"
                    )
                return before
            before.append(event)

    def _finish_msg_sync(self, mark: str) -> list[Event]:
        """The message barrier: the partner sees our mark, then we see the partner's."""
        partner = self.ctx.partner()
        partner.read_raw_until(mark, f"the barrier MSG {mark} from {self.label}")
        back = mark + "back"
        partner.send_line(f"MSG {back}")
        return self.read_raw_until(back, f"the barrier MSG {back}")

    def read_raw_until(self, mark: str, what: str) -> list[Event]:
        """Events up to the line containing ``mark`` (a barrier MSG; skipped otherwise)."""
        before: list[Event] = []
        for seen in self._marks_seen:
            if mark in seen:
                self._marks_seen.remove(seen)
                return before
        deadline = self.ctx.deadline()
        settle = self.ctx.settings.settle
        started = time.monotonic()
        checked = settle is None
        while True:
            soft = deadline if checked else min(deadline, started + (settle or 0.0))
            try:
                line = self.wire.read_line(soft)
            except ReadTimeout:
                if not checked:
                    checked = True
                    deadline = self._late(what, started, deadline)
                    continue
                self.ctx.fail(
                    f"{self.label}: no {what} (the message barrier of a server without PING)",
                    expected=what,
                    got="(nothing)",
                )
            except PeerClosed as exc:
                self.ctx.fail(f"{self.label}: {exc} (expected {what})", expected=what)
            if mark in line.text:
                return before
            if self.ctx.sync_mark in line.text:
                self._marks_seen.append(line.text)
                continue
            event = self._normalise(line)
            if event is not None:
                before.append(event)

    def _collect(self, seconds: float) -> list[Event]:
        """Whatever arrives within ``seconds`` (labelled): the barrier of last resort."""
        self.ctx.note(self.label, f"no barrier possible here: collecting for {seconds:.2f} s")
        end = min(time.monotonic() + seconds, self.ctx.hard_end)
        out: list[Event] = []
        while True:
            try:
                line = self.wire.read_line(end)
            except (ReadTimeout, PeerClosed):
                return out
            event = self._normalise(line)
            if event is not None:
                out.append(event)

    def _check_pong(self, event: Event, token: str) -> None:
        assert isinstance(event.line, Pong)
        if not self.ctx.settings.strict or event.line.token == token:
            return
        if event.line.token is None and not self.ctx.dialect.pong_token:
            self.ctx.allow("pong-without-token", f"{event.raw!r} for PING {token}")
            return
        want = f"PONG {token}"
        self.ctx.fail(
            f"{self.label}: expected {want!r}, got {event.raw!r}", expected=want, got=event.raw
        )

    def sync(self) -> list[Event]:
        """A barrier round trip: every earlier command was processed. Returns what came before."""
        return self.finish_sync(self.start_sync())
