"""What a test body works with: connections that speak in normalised events.

Owns: :class:`TestContext` (one test's clock, transcript, connections, user
names, dialect and leniencies) and :class:`Conn` (one client connection with
expectation helpers). A test body says what the spec promises ("b gets alice's
message"); the context applies the server's dialect, so that one body serves
every dialect, and records each lenient variant it had to use.

Synchronisation uses the protocol: :meth:`Conn.sync` sends ``PING`` and reads
up to the ``PONG``, which proves that everything sent before it was processed
(§10.2). A server without ``PING`` (a Bonus feature of the original README)
is synchronised by messages instead: the connection sends a ``MSG`` that a
partner connection must see, then the partner sends one back. The only plain
waits are :meth:`TestContext.absent`, which shows that nothing arrives on a
connection, and say so in the transcript.

A line that does not come is not waited for blindly: after ``settle``
seconds a fresh connection is asked to log in (:func:`check_alive`). If it is
answered, the line is not coming and the test fails at once; if not, the
server stopped answering, which is the run's verdict (:class:`ServerUnresponsive`).

Lines that concern users of other tests (a late leave notice of a previous
test, say) are noted in the transcript and skipped: each test owns the names
it creates, and only those count.
"""

from __future__ import annotations

import selectors
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

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

from ._dialect import (
    COSMETIC,
    REPORTED_ONCE,
    SPEC_JOIN,
    SPEC_LEAVE,
    VARIANTS,
    Dialect,
    template_match,
    undecorate,
)
from ._liveness import ServerUnresponsive
from ._registry import Check
from ._wire import Line, LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = [
    "CheckFailed",
    "Conn",
    "Event",
    "NotImplementedFeature",
    "ServerControl",
    "ServerUnresponsive",
    "Settings",
    "SkipTest",
    "TestContext",
]


@dataclass(frozen=True)
class Settings:
    """Knobs of a run that tests read."""

    #: Seconds to wait for each expected line. Generous, for loaded CI boxes;
    #: a passing test never waits for it.
    line_timeout: float = 5.0
    #: Seconds of a labelled absence wait.
    absence: float = 0.3
    #: The server's max_line_bytes (§1.4).
    max_line_bytes: int = 4096
    #: The idle timeout of the server a test talks to, when known (§12.2).
    idle_timeout: float | None = None
    #: The max_clients of the server a test talks to, when the suite chose it (§13).
    max_clients: int | None = None
    #: Whether the strict profile is in force: dialects are failures.
    strict: bool = False
    #: Seconds a line may be late before a fresh connection is asked whether
    #: the server still answers (then the test fails at once, or the run ends
    #: on a deadlock). ``None``: wait the whole ``line_timeout`` (floods).
    settle: float | None = 1.0
    #: Seconds the liveness check waits for an answer.
    liveness_timeout: float = 3.0


class CheckFailed(Exception):  # noqa: N818  (a verdict, not an error)
    """The server did not do what the test checks."""

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        got: str | None = None,
        cause: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.got = got
        #: The root cause in words, when the failure knows better than its test.
        self.cause = cause


class SkipTest(Exception):  # noqa: N818  (a verdict, not an error)
    """The test cannot say anything about this target (the reason is the message)."""


class NotImplementedFeature(Exception):  # noqa: N818  (a verdict, not an error)
    """A README Bonus feature the test needs is absent (core: NOT-IMPLEMENTED)."""


class ServerControl(Protocol):
    """What a test that needs its own server may do with it."""

    def terminate(self) -> None:
        """Ask the server to shut down gracefully (SIGTERM to its process group)."""


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


def _cause_of(event: Event) -> str:
    """The root cause a surprising line points to by itself ("" if it does not say)."""
    return DUPLICATE_LEAVE if isinstance(event.line, UserDisconnected) else ""


def _name_of(who: Conn | str) -> str:
    return who.name if isinstance(who, Conn) else who


class Conn:
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
                cause=_cause_of(event),
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
                    cause=_cause_of(event),
                )
        return names

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


@dataclass
class TestContext:
    """One test's world: the target, its clock, its connections and what they saw."""

    check: Check
    address: tuple[str, int]
    #: The dialect the probe found.
    probed: Dialect
    settings: Settings
    #: Makes this run's user names unique (letters and digits).
    nonce: str
    #: This test's number in the run.
    serial: int
    transcript: Transcript = field(default_factory=Transcript)
    #: Names (lower case) this test owns besides those it makes (vectors).
    owned_names: frozenset[str] = frozenset()
    #: Control over a server started for this test alone, if it needs one.
    server: ServerControl | None = None
    #: When the test must end, as a monotonic time (set by the runner).
    hard_end: float = 0.0
    #: Whether cleanup waits for the server to close each connection.
    graceful_cleanup: bool = False
    #: Seconds cleanup waits for those closes (short once the server was seen
    #: not to close on a half-close: waiting then only costs time).
    cleanup_wait: float = 1.0
    conns: list[Conn] = field(default_factory=list)
    #: Lenient variants used: name -> first detail seen.
    leniencies: dict[str, str] = field(default_factory=dict)
    #: Variants this test is the dedicated test of (strict fails them here).
    dedicated: set[str] = field(default_factory=set)
    #: What the test measured, for the result (see :meth:`measure`).
    measurements: dict[str, float] = field(default_factory=dict)
    #: The liveness check (seconds a fresh connection took to be answered;
    #: raises :class:`ServerUnresponsive`). Set by the runner.
    liveness: Callable[[], float] | None = None
    #: A cluster's nodes: connections go to them in turn (``address`` is the first).
    spread: tuple[tuple[str, int], ...] = ()
    #: The client context of a server reached over TLS (``None``: plain TCP).
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.dialect = self.probed.for_strict() if self.settings.strict else self.probed
        self.suffix = f"{self.nonce}{self.serial}".lower()
        #: Text in every barrier MSG of this run: lines carrying it are skipped.
        self.sync_mark = f"zz{self.nonce}sync"
        self._partner: Conn | None = None
        if not self.hard_end:
            self.hard_end = time.monotonic() + self.check.budget

    def need(self, feature: str) -> None:
        """Stop as NOT-IMPLEMENTED (core) if the server lacks this README Bonus feature."""
        if not self.settings.strict and not self.dialect.has(feature):
            raise NotImplementedFeature(feature)

    def alive(self) -> float:
        """Seconds a fresh connection took to be answered; :class:`ServerUnresponsive` if never."""
        if self.liveness is None:
            return 0.0
        return self.liveness()

    def partner(self) -> Conn:
        """The connection that completes message barriers (servers without PING).

        Its name is not one of the test's users, so every line about it is
        skipped on the test's own connections.
        """
        if self._partner is None:
            conn = self.connect("sync", name=f"zz{self.nonce}p{self.serial}")
            conn.final_check = False
            conn.filter_foreign = False
            conn.send_line(f"LOGIN {conn.name}")
            conn.expect("OK (LOGIN of the barrier partner)", lambda e: isinstance(e.line, Ok))
            conn.logged_in = True
            self._partner = conn
        return self._partner

    # --------------------------------------------------------------- names

    def name(self, label: str) -> str:
        """A username for ``label``, unique to this test and run."""
        return f"{label}{self.nonce}{self.serial}"

    def owns(self, name: str) -> bool:
        """Whether ``name`` is a user of this test."""
        low = name.lower()
        return low.endswith(self.suffix) or low in self.owned_names

    # ---------------------------------------------------------------- time

    def deadline(self, timeout: float | None = None) -> float:
        """An absolute deadline ``timeout`` seconds away (default: one line's wait)."""
        wait = self.settings.line_timeout if timeout is None else timeout
        return min(time.monotonic() + wait, self.hard_end)

    def note(self, conn: str, text: str) -> None:
        """Add a note to the transcript."""
        self.transcript.note(conn, text)

    def measure(self, name: str, value: float, text: str) -> None:
        """Record a measurement for the result (``name`` carries its unit) and note ``text``."""
        self.measurements[name] = round(value, 4)
        self.note("", f"measured: {text}")

    def pause(self, seconds: float, why: str) -> None:
        """A labelled plain wait, for tests about time itself (idle timeout)."""
        self.note("", f"waiting {seconds:.2f} s: {why}")
        time.sleep(max(0.0, min(seconds, self.hard_end - time.monotonic())))

    # -------------------------------------------------------- connections

    def connect(
        self,
        label: str,
        *,
        name: str | None = None,
        rcvbuf: int | None = None,
        banner: bool = True,
        address: tuple[str, int] | None = None,
    ) -> Conn:
        """Open a connection (and read the dialect's banner, if it has one)."""
        if address is None and self.spread:
            address = self.spread[
                sum(1 for c in self.conns if c.label != "sync") % len(self.spread)
            ]
        try:
            wire = LineSocket.connect(
                address or self.address,
                label,
                self.transcript,
                self.deadline(),
                self.hard_end,
                rcvbuf=rcvbuf,
                tls=self.tls,
            )
        except OSError as exc:
            self.fail(f"{label}: could not connect to {self.address[0]}:{self.address[1]}: {exc}")
        conn = Conn(self, label, name or self.name(label), wire)
        self.conns.append(conn)
        if banner:
            for _ in self.dialect.banner:
                conn.next_event("the banner")
        return conn

    def users(self, *labels: str) -> list[Conn]:
        """Connect and log in each label in turn; earlier users see each join notice."""
        done: list[Conn] = []
        for label in labels:
            conn = self.connect(label).login()
            for earlier in done:
                earlier.expect_joined(conn)
            done.append(conn)
        return done

    # ------------------------------------------------------ synchronisation

    def quiet(self, *conns: Conn) -> None:
        """Prove with PING round trips that nothing unexpected reached ``conns``."""
        live = [c for c in conns if c.open]
        tokens = [(c, c.start_sync()) for c in live]
        for conn, token in tokens:
            before = conn.finish_sync(token)
            if before:
                first = before[0]
                self.fail(
                    f"{conn.label}: unexpected line {first.raw!r}{self.hint(conn, first)}"
                    + (f" (and {len(before) - 1} more)" if len(before) > 1 else ""),
                    expected="nothing",
                    got="\n".join(e.raw for e in before[:10]),
                    cause=_cause_of(first),
                )

    def absent(self, *conns: Conn, why: str, seconds: float | None = None) -> None:
        """Show that nothing arrives on ``conns``, by waiting (labelled in the transcript).

        Only for absence on a connection other than the one that acted: a
        ``PING`` there cannot prove that another connection's action was
        processed. Short (0.3 s by default).
        """
        wait = self.settings.absence if seconds is None else seconds
        live = [c for c in conns if c.open]
        labels = ", ".join(c.label for c in live)
        self.note("", f"absence wait {wait:.2f} s on {labels}: {why}")
        end = min(time.monotonic() + wait, self.hard_end)
        sel = selectors.DefaultSelector()
        try:
            for c in live:
                sel.register(c.wire.sock, selectors.EVENT_READ, c)
            while True:
                for c in live:
                    event = c.poll_event()
                    if event is not None:
                        self.fail(
                            f"{c.label}: unexpected line {event.raw!r}"
                            f"{self.hint(c, event)} ({why})",
                            expected="nothing",
                            got=event.raw,
                            cause=_cause_of(event),
                        )
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                for key, _ in sel.select(remaining):
                    conn: Conn = key.data
                    conn.wire.read_available()
                    if conn.wire.eof:
                        sel.unregister(conn.wire.sock)
        finally:
            sel.close()

    # ------------------------------------------------------------- verdicts

    def allow(self, variant: str, detail: str, *, tested_here: bool = False) -> None:
        """Accept a dialect difference: recorded under core/robust, a failure under strict.

        Cosmetic variants (banner, CRLF) are absorbed silently, and strict
        reports the wording of notices only in their dedicated tests
        (``tested_here``, or :attr:`dedicated`): one difference, one red.
        """
        assert variant in VARIANTS, variant
        dedicated = tested_here or variant in self.dedicated
        if variant in COSMETIC and not dedicated:
            return
        if self.settings.strict:
            if variant in REPORTED_ONCE and not dedicated:
                return
            self.fail(
                f"{detail}: the core profile accepts this as dialect '{variant}', "
                f"strict does not ({VARIANTS[variant]})",
                cause=f"dialect {variant}: {VARIANTS[variant]}",
            )
        self.leniencies.setdefault(variant, detail)
        self.note("", f"lenient: {variant}: {detail}")

    def fail(
        self,
        message: str,
        *,
        expected: str | None = None,
        got: str | None = None,
        cause: str = "",
    ) -> NoReturn:
        """Stop the test as failed; ``cause`` names the root cause if the test's is too vague."""
        raise CheckFailed(message, expected=expected, got=got, cause=cause)

    def require(
        self,
        condition: bool,
        message: str,
        *,
        expected: str | None = None,
        got: str | None = None,
        cause: str = "",
    ) -> None:
        """Fail with ``message`` unless ``condition``."""
        if not condition:
            self.fail(message, expected=expected, got=got, cause=cause)

    def skip(self, reason: str) -> NoReturn:
        """Stop the test as skipped."""
        raise SkipTest(reason)

    def hint(self, conn: Conn, event: Event) -> str:
        """Why a surprising line might have come: the dialect it looks like."""
        line = event.line
        if isinstance(line, MessageReceived) and line.sender.lower() == conn.name.lower():
            return " (an echo of its own MSG: dialect 'msg-echo', §6.2)"
        probed = self.probed
        for template, variant in ((probed.join_notice, "join"), (probed.leave_notice, "leave")):
            if template and template_match(template, event.raw):
                return f" (a {variant} notice)"
        return ""

    # ------------------------------------------------------------ the end

    def finish(self) -> None:
        """The end-of-test check: no connection got a line the test did not expect."""
        self.quiet(*[c for c in self.conns if c.final_check and not c.quit_sent])

    def cleanup(self) -> bool:
        """Close every connection the test opened (never raises).

        Returns ``False`` if a graceful cleanup found the server not closing
        a half-closed connection in time.
        """
        live = [c for c in self.conns if not c.wire.closed]
        closed = self._close_gracefully(live) if self.graceful_cleanup else True
        for c in live:
            c.wire.close_quietly()
        return closed

    def _close_gracefully(self, conns: Iterable[Conn]) -> bool:
        # Half-close, then read to the server's close: when that comes, the
        # server has processed the departure, so the names are free again.
        waiting = []
        for c in conns:
            c.wire.verbose = False
            c.wire.shutdown_write(note=False)
            waiting.append(c)
        end = min(time.monotonic() + self.cleanup_wait, self.hard_end + 2.0)
        closed = True
        for c in waiting:
            try:
                while True:
                    c.wire.read_line(end)
            except ReadTimeout:
                closed = False
            except (PeerClosed, OSError):
                pass
        return closed
