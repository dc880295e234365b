"""The probe: a short scripted session that learns a server's dialect.

Owns: finding out, with a few connections, what the server has and how it
words things: a banner, ``PING`` (bare and with a token, before and after
``LOGIN``), ``OK`` with text, join and leave notices (found by looking for the
other user's name in the line, whatever the wording, timestamps taken out),
``MSG`` echo, ``WHO``, ``DM`` and its acknowledgement, error replies, case of
command words, and whether a refused ``LOGIN`` closes the connection.

It learns rather than matches: each step reads what comes, and a surprise
is written down as a problem and the probe goes on with the next step. A late
answer is not waited for blindly: after ``settle`` seconds a fresh connection
is asked to log in; if that is not answered either, the server has stopped
answering, which the probe reports as a deadlock (with where it happened).
Only a target that cannot be reached, or answers nothing at all, is unusable.
Reads raw lines: no dialect is applied yet, since that is what it finds out.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ._dialect import SPEC, Dialect, name_template, undecorate
from ._liveness import Liveness, ServerUnresponsive
from ._wire import Line, LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = ["ProbeResult", "TargetUnusable", "probe"]


class TargetUnusable(Exception):  # noqa: N818  (a verdict on the target)
    """The target cannot be tested at all (exit code 3)."""


@dataclass
class ProbeResult:
    """The dialect found, and the transcript of how."""

    dialect: Dialect
    transcript: Transcript
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: Set when the server stopped answering during the probe: what was
    #: waited for and what the liveness check found.
    deadlock: str | None = None

    @property
    def hung(self) -> bool:
        """Whether the server stopped answering during the probe."""
        return self.deadlock is not None


class _Surprise(Exception):  # noqa: N818  (control flow)
    """A step could not finish; note it and go on with the next one."""


class _Dead(Exception):  # noqa: N818  (control flow)
    """The server stopped answering: end the probe."""


def _reply(line: Line) -> bool:
    return line.text.upper().startswith(("PONG", "ERR", "OK"))


def _is(*words: str) -> Callable[[Line], bool]:
    return lambda line: line.text.upper().startswith(words)


class _Prober:
    def __init__(
        self,
        address: tuple[str, int],
        timeout: float,
        settle: float,
        liveness: float,
        nonce: str,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.timeout = timeout
        self.settle = settle
        self.liveness = liveness
        self.nonce = nonce
        self.record = Transcript()
        self.hard_end = time.monotonic() + 4 * timeout + 20 * settle + 10
        self.socks: list[LineSocket] = []
        self.banner: list[str] = []
        self.crlf = False
        self.answered = False
        self.has_ping = False
        self.syncs = 0
        self.problems: list[str] = []
        self.live: Liveness | None = None

    def connect(self, label: str) -> LineSocket:
        try:
            sock = LineSocket.connect(
                self.address,
                label,
                self.record,
                time.monotonic() + self.timeout,
                self.hard_end,
                tls=self.tls,
            )
        except OSError as exc:
            raise TargetUnusable(
                f"cannot connect to {self.address[0]}:{self.address[1]}: {exc}"
            ) from exc
        self.socks.append(sock)
        for _ in self.banner:
            self.read(sock, "the banner", lambda _line: True)
        return sock

    def read(
        self,
        sock: LineSocket,
        what: str,
        done: Callable[[Line], bool],
        *,
        wait: float | None = None,
        check: bool = True,
    ) -> tuple[list[Line], Line | None]:
        """Lines up to the one ``done`` accepts; ``None`` for it if it does not come.

        After ``wait`` (default: settle) seconds without it, a fresh connection
        must be answered (``check``), else the server is dead; if it is answered,
        ``what`` gets a short grace and is then taken as not coming.
        """
        before: list[Line] = []
        started = time.monotonic()
        end = started + (self.settle if wait is None else wait)
        checked = not check
        while True:
            try:
                line = sock.read_line(end)
            except ReadTimeout:
                if checked:
                    return before, None
                checked = True
                self.record.note(sock.label, f"no {what} yet; is the server alive?")
                took = self.alive(what)
                end = time.monotonic() + max(0.2, 5 * took)
                continue
            except PeerClosed as exc:
                raise _Surprise(f"{exc} while waiting for {what}") from None
            self.answered = True
            self.crlf = self.crlf or line.crlf
            if done(line):
                return before, line
            before.append(line)

    def alive(self, what: str) -> float:
        if self.live is None:
            self.live = Liveness(
                self.address,
                banner_lines=len(self.banner),
                timeout=self.liveness,
                nonce=self.nonce,
                tls=self.tls,
            )
        try:
            return self.live.check()
        except ServerUnresponsive as exc:
            raise _Dead(f"no {what}, and {exc}") from None

    def login(self, sock: LineSocket, name: str) -> Line:
        sock.send(f"LOGIN {name}\n".encode())
        _, reply = self.read(sock, f"a reply to LOGIN {name}", _is("OK", "ERR"))
        if reply is None or not reply.text.upper().startswith("OK"):
            got = "nothing" if reply is None else repr(reply.text)
            raise _Surprise(f"LOGIN {name} got {got}")
        return reply

    def sync(self, sock: LineSocket, partner: LineSocket | None) -> list[Line]:
        """A barrier on ``sock``: PING if the server has it, else a MSG round trip via a partner."""
        self.syncs += 1
        if self.has_ping:
            sock.send(b"PING\n")
            before, pong = self.read(sock, "PONG", _is("PONG"))
            if pong is None:
                raise _Surprise("no PONG")
            return before
        if partner is None:
            raise _Surprise("no barrier possible: no PING and no second user")
        mark = f"zz{self.nonce}probesync{self.syncs}"
        sock.send(f"MSG {mark}\n".encode())
        self.read(partner, f"the barrier MSG {mark}", lambda ln: mark in ln.text)
        partner.send(f"MSG {mark}back\n".encode())
        before, back = self.read(sock, f"the barrier MSG {mark}back", lambda ln: mark in ln.text)
        if back is None:
            raise _Surprise(f"the barrier MSG {mark} did not come back")
        return [ln for ln in before if mark not in ln.text]

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close_quietly()
        if self.live is not None:
            self.live.close()


def probe(
    address: tuple[str, int],
    *,
    timeout: float = 5.0,
    settle: float = 1.0,
    liveness: float = 3.0,
    nonce: str = "probe",
    tls: ssl.SSLContext | None = None,
) -> ProbeResult:
    """Learn the dialect of the server at ``address`` (over TLS with ``tls``).

    Raises :class:`TargetUnusable` when it cannot be reached or answers nothing
    at all; a server that stops answering part-way is reported in
    :attr:`ProbeResult.deadlock`.
    """
    p = _Prober(address, timeout, settle, liveness, nonce, tls=tls)
    start = time.monotonic()
    found: dict[str, Any] = {}
    deadlock = None
    try:
        _run(p, found)
    except _Dead as dead:
        deadlock = str(dead)
    finally:
        p.close_all()
    found["banner"] = tuple(p.banner)
    found["has_ping"] = p.has_ping
    dialect = replace(SPEC, crlf_output=p.crlf, problems=tuple(p.problems), **found)
    return ProbeResult(dialect, p.record, time.monotonic() - start, p.problems, deadlock)


def _first(p: _Prober, found: dict[str, Any], name_a: str) -> LineSocket:
    """Banner, PING before LOGIN, the first LOGIN. Unusable if nothing answers at all."""
    try:
        a = p.connect("a")
        a.send(b"PING\n")
        before, reply = p.read(a, "a reply to PING before LOGIN", _reply, check=False)
        p.banner = [ln.text for ln in before]
        if reply is None:
            found["ping_before_login"] = "silent"
        elif reply.text.upper().startswith("PONG"):
            found["ping_before_login"] = "pong"
        else:
            found["ping_before_login"] = "refused"
        a.send(f"LOGIN {name_a}\n".encode())
        more, reply = p.read(
            a, f"a reply to LOGIN {name_a}", _is("OK", "ERR"), wait=p.timeout, check=p.answered
        )
    except _Surprise as exc:
        raise TargetUnusable(f"the server closed the first connection: {exc}") from None
    if reply is None and not p.answered:
        raise TargetUnusable(
            f"the server answers nothing: no reply to PING or LOGIN within {p.timeout:.1f} s"
        )
    if found["ping_before_login"] == "silent":
        p.banner += [ln.text for ln in more]
    if reply is None or not reply.text.upper().startswith("OK"):
        got = "nothing" if reply is None else repr(reply.text)
        raise TargetUnusable(f"LOGIN {name_a} got {got}: the suite cannot log in")
    found["ok_text"] = reply.text.strip() != "OK"
    return a


def _run(p: _Prober, found: dict[str, Any]) -> None:
    name_a, name_b, name_c = (f"{x}{p.nonce}0" for x in ("probea", "probeb", "probec"))
    a = _first(p, found, name_a)
    conns: dict[str, LineSocket] = {"a": a}

    def ping() -> None:
        a.send(b"PING\n")
        _, reply = p.read(a, "PONG", _reply)
        p.has_ping = reply is not None and reply.text.upper().startswith("PONG")
        if not p.has_ping:
            if found["ping_before_login"] == "refused":
                found["ping_before_login"] = "silent"
            return
        a.send(b"PING probe1\n")
        _, reply = p.read(a, "PONG probe1", _reply)
        found["pong_token"] = reply is not None and reply.text == "PONG probe1"
        if reply is None or not reply.text.upper().startswith("PONG"):
            p.problems.append(f"PING with a token got {reply.text if reply else 'nothing'!r}")

    def join() -> None:
        b = p.connect("b")
        conns["b"] = b
        p.login(b, name_b)
        lines = p.sync(a, b)
        # Also what comes with the first MSG: a join notice may trail the OK.
        b.send(b"MSG probe hello\n")
        before, msg = p.read(a, "b's MSG", lambda ln: "probe hello" in ln.text)
        lines += before
        notices = [ln.text for ln in lines if name_b.lower() in ln.text.lower()]
        if notices:
            text, stamped = undecorate(notices[0])
            found["join_notice"] = name_template(text, name_b)
            found["timestamps"] = stamped
        else:
            found["join_notice"] = None
        if msg is None:
            p.problems.append("a MSG was not relayed to the other user")
        else:
            text, _ = undecorate(msg.text)
            if text != f"MSG {name_b} probe hello":
                p.problems.append(f"MSG relayed as {msg.text!r}")
        found["msg_echo"] = any("probe hello" in ln.text for ln in p.sync(b, a))

    def who() -> None:
        a.send(b"WHO\n")
        lines = p.sync(a, conns.get("b"))
        found["has_who"] = any(ln.text.startswith("USER ") for ln in lines)

    def dm() -> None:
        b = conns["b"]
        a.send(f"DM {name_b} probe dm\n".encode())
        _, got = p.read(b, "the DM", lambda ln: "probe dm" in ln.text)
        acks = p.sync(a, b)
        found["has_dm"] = got is not None
        if got is not None:
            found["dm_ack"] = name_template(acks[0].text, name_b) if acks else None

    def errors() -> None:
        tokens: dict[str, str] = {}
        tries = [("unknown-command", "FROBNICATE"), ("missing-argument", "MSG")]
        if found.get("has_dm", True):
            tries.append(("user-not-found", f"DM nobody{p.nonce} hi"))
        tries.append(("already-logged-in", f"LOGIN {name_c}"))
        for spec_token, command in tries:
            a.send(f"{command}\n".encode())
            lines = p.sync(a, conns.get("b"))
            word, _, rest = lines[0].text.partition(" ") if lines else ("", "", "")
            if not lines:
                tokens[spec_token] = "(silent)"
            elif word.upper() == "ERR":
                tokens[spec_token] = rest.partition(" ")[0] or "(empty)"
            else:
                tokens[spec_token] = f"(not ERR) {lines[0].text}"
        found["error_tokens"] = tokens

    def case() -> None:
        if not p.has_ping:
            return
        a.send(b"ping\n")
        _, reply = p.read(a, "a reply to ping", _reply)
        found["case_insensitive"] = reply is not None and reply.text.upper().startswith("PONG")

    def taken() -> None:
        c = p.connect("c")
        c.send(f"LOGIN {name_b}\n".encode())
        _, refusal = p.read(c, "a refusal of a taken name", _is("OK", "ERR"))
        if refusal is None or not refusal.text.upper().startswith("ERR"):
            p.problems.append(
                f"LOGIN with a taken name got {refusal.text if refusal else 'nothing'!r}"
            )
            return
        tokens = dict(found.get("error_tokens", {}))
        tokens["username-taken"] = refusal.text.partition(" ")[2].partition(" ")[0] or "(empty)"
        found["error_tokens"] = tokens
        if found["ping_before_login"] == "silent":
            return
        c.send(b"PING\n")
        try:
            c.read_line(time.monotonic() + p.settle)
            found["closes_after_refused_login"] = False
        except (PeerClosed, OSError):
            found["closes_after_refused_login"] = True
        except ReadTimeout:
            p.problems.append("no answer to PING after a refused LOGIN")

    def leave() -> None:
        conns["b"].close()
        _, line = p.read(
            a, f"a notice that {name_b} left", lambda ln: name_b.lower() in ln.text.lower()
        )
        if line is None:
            found["leave_notice"] = None
            return
        text, stamped = undecorate(line.text)
        found["leave_notice"] = name_template(text, name_b)
        found["timestamps"] = found.get("timestamps") or stamped

    steps: list[tuple[str, bool, Callable[[], None]]] = [
        ("PING after LOGIN", False, ping),
        ("a second user, join notice, MSG", False, join),
        ("WHO", True, who),
        ("DM", True, dm),
        ("error replies", False, errors),
        ("case of command words", False, case),
        ("a taken name", False, taken),
        ("leave notice", True, leave),
    ]
    for what, needs_b, step in steps:
        if needs_b and "b" not in conns:
            p.problems.append(f"{what}: not probed (no second user)")
            continue
        try:
            step()
        except _Surprise as exc:
            p.problems.append(f"{what}: {exc}")
            if a.eof:
                p.problems.append("the first connection was closed; the probe stops here")
                return
        except _Dead as dead:
            raise _Dead(f"{dead} (probe step: {what})") from None
