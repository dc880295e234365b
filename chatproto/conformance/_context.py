"""What a test body works with: its world, and the connections it opens.

Owns: :class:`TestContext` (one test's clock, transcript, connections, user
names, dialect and leniencies, and the verdicts it stops with) and
:class:`Settings` (the knobs of a run that tests read). A test body says what
the spec promises; its connections (:class:`~._conn.Conn`) apply the
server's dialect, so that one body serves every dialect, and the context
records each lenient variant they had to use.

Synchronisation uses the protocol (see :mod:`._barrier`). The only plain
waits are :meth:`TestContext.absent`, which shows that nothing arrives on a
connection, and say so in the transcript.
"""

from __future__ import annotations

import selectors
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from chatproto import MessageReceived, Ok

from ._conn import Conn, Event, cause_of
from ._dialect import COSMETIC, REPORTED_ONCE, VARIANTS, Dialect, template_match
from ._registry import Check
from ._verdicts import CheckFailed, NotImplementedFeature, SkipTest
from ._wire import LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = ["ServerControl", "Settings", "TestContext"]


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


class ServerControl(Protocol):
    """What a test that needs its own server may do with it."""

    def terminate(self) -> None:
        """Ask the server to shut down gracefully (SIGTERM to its process group)."""


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
                    cause=cause_of(first),
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
                            cause=cause_of(event),
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
