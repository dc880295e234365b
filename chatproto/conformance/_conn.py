"""One client connection of a test, as events and expectations.

Owns: :class:`Event` (a line from the server after the dialect was applied)
and :class:`Conn`: sending, reading a line as an event in the spec's terms,
and the expectations a test body states ("b gets alice's message"). Reading
applies the test's dialect, so that one body serves every dialect, and
records through the :class:`~._context.TestContext` each lenient variant it
had to use. The barriers that prove earlier lines were processed are the
mixin :class:`~._barrier.Barriers`.

A line that does not come is not waited for blindly: after ``settle``
seconds a fresh connection is asked to log in (:func:`check_alive`). If it is
answered, the line is not coming and the test fails at once; if not, the
server stopped answering, which is the run's verdict (:class:`ServerUnresponsive`).

Lines that concern users of other tests (a late leave notice of a previous
test, say) are noted in the transcript and skipped: each test owns the names
it creates, and only those count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatproto import (
    DirectReceived,
    Error,
    MessageReceived,
    Ok,
    Pong,
    ServerLine,
    User,
    UserDisconnected,
    UserJoined,
    parse_server_line,
)

from ._barrier import Barriers
from ._dialect import SPEC_JOIN, SPEC_LEAVE, template_match, undecorate
from ._wire import Line, LineSocket, PeerClosed, ReadTimeout

if TYPE_CHECKING:
    from ._context import TestContext

__all__ = ["DUPLICATE_LEAVE", "Conn", "Event", "cause_of"]


@dataclass(frozen=True, slots=True)
class Event:
    """A line from the server, after the dialect was applied."""

    #: The line as received (terminator removed).
    raw: str
    #: What it means, in the spec's terms.
    line: ServerLine
    #: Whether it ended with CRLF.
    crlf: bool = False


def _named(line: ServerLine) -> str | None:
    """The user a line is about, if any."""
    if isinstance(line, (UserJoined, UserDisconnected, User)):
        return line.name
    if isinstance(line, (MessageReceived, DirectReceived)):
        return line.sender
    return None


#: The root cause an unexpected leave notice points to, wherever it shows up.
DUPLICATE_LEAVE = "a user who leaves is not announced exactly once"


def cause_of(event: Event) -> str:
    """The root cause a surprising line points to by itself ("" if it does not say)."""
    return DUPLICATE_LEAVE if isinstance(event.line, UserDisconnected) else ""


def _name_of(who: Conn | str) -> str:
    return who.name if isinstance(who, Conn) else who


class Conn(Barriers):
    """One client connection of a test, as events and expectations."""

    def __init__(self, ctx: TestContext, label: str, name: str, wire: LineSocket) -> None:
        self.ctx = ctx
        #: Short label used in transcripts (``a``, ``b`` ...).
        self.label = label
        #: The username this connection logs in with.
        self.name = name
        self.wire = wire
        self.logged_in = False
        self.quit_sent = False
        #: Whether the end-of-test check (no unexpected lines) covers it.
        self.final_check = True
        #: Whether lines about other tests' users are skipped.
        self.filter_foreign = True
        #: Join and leave notices about these names (lower case) are skipped.
        self.ignore_notices_about: set[str] = set()
        # Texts of MSGs sent, so an echo (a dialect) can be recognised.
        self._echoes: list[str] = []
        self._syncs = 0
        # Barrier lines seen while waiting for another one (see read_raw_until).
        self._marks_seen: list[str] = []

    # ------------------------------------------------------------- sending

    def send(self, data: bytes | str, *, note: str | None = None) -> None:
        """Send raw bytes (a ``str`` is encoded as UTF-8)."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self._track(payload)
        try:
            self.wire.send(payload, note=note)
        except ReadTimeout as exc:
            self.ctx.fail(f"{self.label}: {exc}")
        except OSError as exc:
            self.ctx.fail(f"{self.label}: sending failed: {exc}", got="(connection broken)")

    def send_line(self, text: str) -> None:
        """Send ``text`` and ``\\n``."""
        self.send(text + "\n")

    def send_paced(
        self, pieces: Sequence[bytes], gap: float = 0.01, note: str | None = None
    ) -> None:
        """Send ``pieces`` as separate segments (see :meth:`LineSocket.send_paced`)."""
        self._track(b"".join(pieces))
        try:
            self.wire.send_paced(pieces, gap, note=note)
        except (ReadTimeout, OSError) as exc:
            self.ctx.fail(f"{self.label}: sending failed: {exc}")

    def send_draining(self, data: bytes, *, note: str | None = None, timeout: float = 30.0) -> None:
        """Send a lot while reading replies, so neither side blocks."""
        self._track(data)
        try:
            self.wire.send_draining(data, self.ctx.deadline(timeout), note=note)
        except ReadTimeout as exc:
            self.ctx.fail(f"{self.label}: {exc}")
        except OSError as exc:
            self.ctx.fail(f"{self.label}: sending failed: {exc}", got="(connection broken)")

    def _track(self, data: bytes) -> None:
        # Cheap: only MSG and QUIT lines matter (echo recognition, final check).
        if b"\n" not in data or len(data) > 1 << 16:
            return
        for raw in data.split(b"\n")[:-1]:
            word, _, rest = raw.partition(b" ")
            upper = word.upper().rstrip(b"\r")
            if upper == b"MSG" and rest:
                self._echoes.append(rest.rstrip(b"\r").decode("utf-8", "replace"))
            elif upper == b"QUIT":
                self.quit_sent = True

    # ------------------------------------------------------------- reading

    def next_event(self, what: str, *, timeout: float | None = None) -> Event:
        """The next meaningful line; fail with ``what`` as the expectation if none comes.

        With the default ``timeout`` a late line is not waited for blindly: see
        :meth:`_late`. An explicit ``timeout`` (time-based tests) is waited out.
        """
        deadline = self.ctx.deadline(timeout)
        settle = self.ctx.settings.settle if timeout is None else None
        checked = False
        started = time.monotonic()
        while True:
            soft = deadline if settle is None or checked else min(deadline, started + settle)
            try:
                line = self.wire.read_line(soft)
            except ReadTimeout:
                if soft < deadline:
                    checked = True
                    deadline = self._late(what, started, deadline)
                    continue
                waited = time.monotonic() - started
                self.ctx.fail(
                    f"{self.label}: nothing arrived within {waited:.1f} s (expected {what})",
                    expected=what,
                    got="(nothing)",
                )
            except PeerClosed as exc:
                self.ctx.fail(
                    f"{self.label}: {exc} (expected {what})",
                    expected=what,
                    got="(connection closed)",
                )
            event = self._normalise(line)
            if event is not None:
                return event

    def _late(self, what: str, started: float, deadline: float) -> float:
        """A line is late: is the server alive? Returns the new (short) deadline.

        Raises :class:`ServerUnresponsive` when a fresh connection is not
        answered either. Otherwise the line gets a last short grace (five times
        what the fresh connection took, at least 0.2 s): a server that answers
        a newcomer at once but not this line is not going to send it.
        """
        waited = time.monotonic() - started
        self.ctx.note(self.label, f"{what}: nothing after {waited:.1f} s; is the server alive?")
        took = self.ctx.alive()
        self.ctx.note(self.label, f"a fresh connection was answered in {took:.3f} s")
        return min(deadline, time.monotonic() + max(0.2, 5 * took))

    def poll_event(self) -> Event | None:
        """A line already received, if any; never waits."""
        while self.wire.has_buffered_line():
            event = self._normalise(self.wire.read_line(time.monotonic()))
            if event is not None:
                return event
        return None

    def interpret(self, line: Line) -> Event | None:
        """A line read off this connection by other means (a flooding thread), as an event."""
        return self._normalise(line)

    def _normalise(self, line: Line) -> Event | None:
        """The line as an event in the spec's terms, or ``None`` if it is to be skipped."""
        raw = line.text
        ctx = self.ctx
        d = ctx.dialect
        if ctx.sync_mark in raw:
            return None  # a message barrier of this run (see Conn.sync)
        if d.timestamps:
            raw, _ = undecorate(raw)
        parsed = parse_server_line(raw)
        wording: str | None = None
        if d.join_notice and d.join_notice != SPEC_JOIN:
            found = template_match(d.join_notice, raw)
            if found:
                parsed, wording = UserJoined(found), "join-notice-wording"
        if d.leave_notice and d.leave_notice != SPEC_LEAVE:
            found = template_match(d.leave_notice, raw)
            if found:
                parsed, wording = UserDisconnected(found), "leave-notice-wording"
        name = _named(parsed)
        if self.filter_foreign and name is not None and not ctx.owns(name):
            ctx.note(self.label, f"skipped: about {name!r}, not a user of this test")
            return None
        if isinstance(parsed, UserJoined) and not ctx.settings.strict:
            # core: join notices are not asked for; present, they are skipped.
            return None
        if (
            isinstance(parsed, (UserJoined, UserDisconnected))
            and parsed.name.lower() in self.ignore_notices_about
        ):
            return None
        if (
            isinstance(parsed, MessageReceived)
            and parsed.sender.lower() == self.name.lower()
            and parsed.text in self._echoes
            and d.msg_echo
        ):
            self._echoes.remove(parsed.text)
            ctx.allow("msg-echo", f"{self.label} got its own MSG back: {raw!r}")
            return None
        if wording is not None:
            ctx.allow(wording, f"{raw!r}")
        return Event(raw, parsed, line.crlf)

    # -------------------------------------------------------- expectations

    def expect(
        self, what: str, match: Callable[[Event], bool], *, timeout: float | None = None
    ) -> Event:
        """The next event must satisfy ``match``; ``what`` describes it for reports."""
        event = self.next_event(what, timeout=timeout)
        if not match(event):
            self.ctx.fail(
                f"{self.label}: expected {what}, got {event.raw!r}{self.ctx.hint(self, event)}",
                expected=what,
                got=event.raw,
                cause=cause_of(event),
            )
        return event

    def expect_line(self, text: str, *, timeout: float | None = None) -> Event:
        """The next line is exactly ``text`` (for exact spec texts)."""
        return self.expect(text, lambda e: e.raw == text, timeout=timeout)

    def expect_ok(self, what: str = "OK") -> Event:
        """The next line is ``OK`` (``OK <text>`` is the dialect ``ok-with-text``)."""
        event = self.expect(what, lambda e: isinstance(e.line, Ok))
        if event.raw.rstrip() != "OK":
            self.ctx.allow("ok-with-text", f"{event.raw!r} for {what}")
        return event

    def expect_error(self, token: str, *, timeout: float | None = None) -> Event:
        """The next line is ``ERR <token> ...``.

        Outside strict any text after ``ERR`` is right: the original README
        does not fix error texts.
        """
        event = self.expect(f"ERR {token}", lambda e: isinstance(e.line, Error), timeout=timeout)
        assert isinstance(event.line, Error)
        if event.line.token != token and self.ctx.settings.strict:
            self.ctx.allow("error-token", f"{event.raw!r} where the spec says ERR {token}")
        return event

    def expect_pong(self, token: str | None = None) -> Event:
        """The next line is ``PONG`` (with ``token`` when given)."""
        want = "PONG" if token is None else f"PONG {token}"
        event = self.expect(want, lambda e: isinstance(e.line, Pong))
        assert isinstance(event.line, Pong)
        if event.line.token != token:
            if token is not None and event.line.token is None:
                self.ctx.allow("pong-without-token", f"{event.raw!r} for PING {token}")
            else:
                self.ctx.fail(
                    f"{self.label}: expected {want!r}, got {event.raw!r}",
                    expected=want,
                    got=event.raw,
                )
        return event

    def ping_text(self, token: str) -> str:
        """``PING`` as the profile sends it: bare in core (the original), with a token in strict."""
        return f"PING {token}" if self.ctx.settings.strict else "PING"

    def expect_ping_answer(self, token: str) -> Event:
        """The ``PONG`` for :meth:`ping_text`."""
        return self.expect_pong(token if self.ctx.settings.strict else None)

    def ping(self, token: str) -> Event:
        """A PING round trip as the profile asks it: bare in core, ``PING <token>`` in strict.

        The original ``PING`` takes no argument; where the server has no PING
        at all, a test that needs one is NOT-IMPLEMENTED under core.
        """
        self.ctx.need("ping")
        self.send_line(self.ping_text(token))
        return self.expect_ping_answer(token)

    def expect_msg(self, sender: Conn | str, text: str) -> Event:
        """The next line is ``MSG <sender> <text>``."""
        name = _name_of(sender)
        return self.expect(
            f"MSG {name} {text}",
            lambda e: e.line == MessageReceived(name, text),
        )

    def expect_dm(self, sender: Conn | str, text: str) -> Event:
        """The next line is ``DM <sender> <text>``."""
        name = _name_of(sender)
        return self.expect(f"DM {name} {text}", lambda e: e.line == DirectReceived(name, text))

    def expect_joined(self, who: Conn | str) -> Event | None:
        """The join notice for ``who`` (strict only: core never waits for one)."""
        if self.ctx.dialect.join_notice is None or not self.ctx.settings.strict:
            return None
        name = _name_of(who)
        return self.expect(f"INFO {name} joined", lambda e: e.line == UserJoined(name))

    def expect_left(self, who: Conn | str, *, timeout: float | None = None) -> Event | None:
        """The leave notice for ``who`` (none if the dialect has none)."""
        if self.ctx.dialect.leave_notice is None:
            return None
        name = _name_of(who)
        return self.expect(
            f"INFO {name} disconnected", lambda e: e.line == UserDisconnected(name), timeout=timeout
        )

    def expect_dm_ack(self, recipient: Conn | str) -> Event | None:
        """Whatever acknowledges a DM in this dialect (``OK`` in the spec)."""
        ack = self.ctx.dialect.dm_ack
        if ack is None:
            self.ctx.allow("no-dm-ack", "no acknowledgement of a DM")
            return None
        if ack == "OK":
            return self.expect_ok("OK (DM delivered)")
        name = _name_of(recipient)
        event = self.expect(
            ack.replace("{name}", name), lambda e: template_match(ack, e.raw) is not None
        )
        self.ctx.allow("dm-ack-wording", f"{event.raw!r} acknowledges the DM")
        return event

    def expect_closed(
        self, what: str = "the server to close the connection", *, timeout: float | None = None
    ) -> None:
        """No more lines: the server closes the connection."""
        deadline = self.ctx.deadline(timeout)
        while True:
            try:
                line = self.wire.read_line(deadline)
            except ReadTimeout:
                self.ctx.fail(
                    f"{self.label}: still open (expected {what})", expected=what, got="(still open)"
                )
            except PeerClosed:
                return
            event = self._normalise(line)
            if event is not None:
                self.ctx.fail(
                    f"{self.label}: unexpected line {event.raw!r} (expected {what})"
                    + self.ctx.hint(self, event),
                    expected=what,
                    got=event.raw,
                )

    def login(self) -> Conn:
        """``LOGIN <name>`` and its ``OK``."""
        self.send_line(f"LOGIN {self.name}")
        self.expect_ok(f"OK (LOGIN {self.name})")
        self.logged_in = True
        return self

    def msg(self, text: str) -> None:
        """Send ``MSG <text>``."""
        self.send_line(f"MSG {text}")

    def who(self) -> list[str]:
        """``WHO`` then a barrier: the names listed, in order (§9.2)."""
        self.ctx.need("who")
        self.send_line("WHO")
        names: list[str] = []
        for event in self.sync():
            if isinstance(event.line, User):
                names.append(event.line.name)
            else:
                self.ctx.fail(
                    f"{self.label}: unexpected line {event.raw!r} in a WHO answer",
                    expected="USER <name>",
                    got=event.raw,
                    cause=cause_of(event),
                )
        return names

    # ---------------------------------------------------- the whole stream

    def drain(self, timeout: float) -> tuple[list[str], bool]:
        """Every line until the server closes, or ``timeout`` s: the lines, and whether it closed.

        Reads raw lines (no dialect): for a connection whose whole stream
        matters, such as the last line before a close.
        """
        deadline = self.ctx.deadline(timeout)
        verbose, self.wire.verbose = self.wire.verbose, False
        lines: list[str] = []
        try:
            while True:
                lines.append(self.wire.read_line(deadline).text)
        except ReadTimeout:
            return lines, False
        except PeerClosed:
            return lines, True
        finally:
            self.wire.verbose = verbose
            self.ctx.note(self.label, f"read {len(lines)} lines to the end of the stream")

    # --------------------------------------------------------------- close

    def close(self) -> None:
        """Close the connection normally."""
        self.wire.close()

    def reset(self) -> None:
        """Abort the connection with a TCP reset."""
        self.wire.reset()

    def half_close(self) -> None:
        """Shut down the sending side only (§12.1)."""
        self.wire.shutdown_write()

    @property
    def open(self) -> bool:
        """Whether neither side has closed the connection."""
        return not (self.wire.closed or self.wire.eof)
