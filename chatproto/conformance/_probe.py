"""The probe: a short scripted session that fingerprints a server's dialect.

Owns: finding out, with a few connections and PING round trips, whether the
server sends a banner, echoes MSG, announces joins and leaves (and how), acks a
DM, which error tokens it uses, whether command words are case-insensitive,
how lines end, and whether a refused LOGIN closes the connection. Reads raw
lines (no dialect applied yet, since that is what it finds out).

A server that stops answering part-way is not fatal: the probe records where,
keeps the spec's defaults for the rest, and lets the run report the hang. Only
a target that cannot be reached, or answers nothing at all, is unusable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ._dialect import SPEC, Dialect, name_template
from ._wire import Line, LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = ["ProbeResult", "TargetUnusable", "probe"]


class TargetUnusable(Exception):  # noqa: N818  (a verdict on the target)
    """The target cannot be tested at all (exit code 3)."""


@dataclass
class ProbeResult:
    """The dialect found, and the transcript of how."""

    dialect: Dialect
    transcript: Transcript
    #: Whether the server stopped answering during the probe.
    hung: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class _Stop(Exception):  # noqa: N818  (control flow)
    """The server stopped answering: end the probe, keep what was found."""


class _Prober:
    def __init__(self, address: tuple[str, int], timeout: float, nonce: str) -> None:
        self.address = address
        self.timeout = timeout
        self.nonce = nonce
        self.record = Transcript()
        self.hard_end = time.monotonic() + 20 * timeout + 10
        self.socks: list[LineSocket] = []
        self.banner_size = 0
        self.crlf = False
        self.pings = 0
        self.problems: list[str] = []

    def connect(self, label: str) -> LineSocket:
        try:
            sock = LineSocket.connect(
                self.address, label, self.record, time.monotonic() + self.timeout, self.hard_end
            )
        except OSError as exc:
            raise TargetUnusable(
                f"cannot connect to {self.address[0]}:{self.address[1]}: {exc}"
            ) from exc
        self.socks.append(sock)
        for _ in range(self.banner_size):
            self.line(sock, "the banner")
        return sock

    def line(self, sock: LineSocket, what: str) -> Line:
        try:
            line = sock.read_line(time.monotonic() + self.timeout)
        except ReadTimeout:
            raise _Stop(f"no answer within {self.timeout:.1f} s while waiting for {what}") from None
        except PeerClosed as exc:
            raise _Stop(f"{exc} while waiting for {what}") from None
        self.crlf = self.crlf or line.crlf
        return line

    def until(
        self, sock: LineSocket, what: str, done: Callable[[Line], bool]
    ) -> tuple[list[Line], Line]:
        """Lines up to (and the line) for which ``done`` is true."""
        before: list[Line] = []
        while True:
            line = self.line(sock, what)
            if done(line):
                return before, line
            before.append(line)

    def sync(self, sock: LineSocket) -> list[Line]:
        """PING round trip; the lines before the PONG."""
        self.pings += 1
        token = f"probe{self.pings}"
        sock.send(f"PING {token}\n".encode())
        before, _ = self.until(sock, f"PONG {token}", lambda ln: ln.text.upper().startswith("PONG"))
        return before

    def error_after(self, sock: LineSocket, command: str) -> str | None:
        """Send ``command`` and a PING; the error token (or line) it got, if any."""
        sock.send(f"{command}\n".encode())
        for line in self.sync(sock):
            word, _, rest = line.text.partition(" ")
            if word.upper() == "ERR":
                return rest.partition(" ")[0] or "(empty)"
            return f"(not ERR) {line.text}"
        return None

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close_quietly()


def probe(address: tuple[str, int], *, timeout: float = 5.0, nonce: str = "probe") -> ProbeResult:
    """Fingerprint the server at ``address``.

    Raises :class:`TargetUnusable` when it cannot be reached or answers nothing
    at all; a hang later on is reported in :attr:`ProbeResult.hung`.
    """
    p = _Prober(address, timeout, nonce)
    start = time.monotonic()
    found: dict[str, Any] = {}
    hung = False
    try:
        _run(p, found)
    except _Stop as stop:
        if not found.get("answered"):
            p.close_all()
            raise TargetUnusable(f"the server answers nothing: {stop}") from None
        hung = True
        p.problems.append(f"the server stopped answering during the probe: {stop}")
    finally:
        p.close_all()
    found.pop("answered", None)
    found["banner"] = tuple(found.get("banner", ()))
    dialect = replace(SPEC, crlf_output=p.crlf, problems=tuple(p.problems), **found)
    return ProbeResult(dialect, p.record, hung, time.monotonic() - start, p.problems)


def _run(p: _Prober, found: dict[str, Any]) -> None:
    name_a, name_b, name_c = (f"{x}{p.nonce}0" for x in ("probea", "probeb", "probec"))
    # 1. Banner and PING before LOGIN: whatever precedes the first reply to a
    #    PING is a banner (the client speaks first in the spec).
    a = p.connect("a")
    a.send(b"PING probe0\n")
    before, reply = p.until(
        a, "a reply to PING", lambda ln: ln.text.upper().startswith(("PONG", "ERR"))
    )
    found["answered"] = True
    found["banner"] = [ln.text for ln in before]
    p.banner_size = len(before)
    if reply.text.upper().startswith("PONG"):
        found["ping_before_login"] = "pong"
        found["pong_token"] = reply.text == "PONG probe0"
    else:
        found["ping_before_login"] = "refused"
    # 2. LOGIN, and PING after it (the suite cannot work without it).
    a.send(f"LOGIN {name_a}\n".encode())
    _, reply = p.until(
        a, f"OK for LOGIN {name_a}", lambda ln: ln.text.upper().startswith(("OK", "ERR"))
    )
    if not reply.text.upper().startswith("OK"):
        p.problems.append(f"LOGIN {name_a} was refused: {reply.text!r}")
        raise _Stop("LOGIN refused")
    p.pings += 1
    a.send(f"PING probe{p.pings}\n".encode())
    _, pong = p.until(a, "PONG", lambda ln: ln.text.upper().startswith("PONG"))
    if found["ping_before_login"] != "pong":
        found["pong_token"] = pong.text == f"PONG probe{p.pings}"
    # 3. A second user: the first one's lines up to a PONG are the join notice.
    b = p.connect("b")
    b.send(f"LOGIN {name_b}\n".encode())
    p.until(b, f"OK for LOGIN {name_b}", lambda ln: ln.text.upper().startswith("OK"))
    notices = [ln.text for ln in p.sync(a) if name_b.lower() in ln.text.lower()]
    found["join_notice"] = name_template(notices[0], name_b) if notices else None
    # 4. MSG: does it come back to the sender?
    a.send(b"MSG probe hello\n")
    p.until(b, "the MSG", lambda ln: "probe hello" in ln.text)
    found["msg_echo"] = any("probe hello" in ln.text for ln in p.sync(a))
    # 5. DM: what acknowledges it?
    a.send(f"DM {name_b} probe dm\n".encode())
    p.until(b, "the DM", lambda ln: "probe dm" in ln.text)
    acks = p.sync(a)
    found["dm_ack"] = name_template(acks[0].text, name_b) if acks else None
    # 6. Case of command words.
    p.pings += 1
    a.send(f"ping probe{p.pings}\n".encode())
    _, reply = p.until(a, "a reply to ping", lambda ln: ln.text.upper().startswith(("PONG", "ERR")))
    found["case_insensitive"] = reply.text.upper().startswith("PONG")
    # 7. Error tokens.
    tokens: dict[str, str] = {}
    for spec_token, command in (
        ("unknown-command", "FROBNICATE"),
        ("user-not-found", f"DM nobody{p.nonce} hi"),
        ("missing-argument", "MSG"),
        ("already-logged-in", f"LOGIN {name_c}"),
    ):
        token = p.error_after(a, command)
        if token is not None:
            tokens[spec_token] = token
    c = p.connect("c")
    c.send(b"WHO\n")
    line = p.line(c, "a reply to WHO before LOGIN")
    word, _, rest = line.text.partition(" ")
    if word.upper() == "ERR":
        tokens["not-logged-in"] = rest.partition(" ")[0] or "(empty)"
    c.send(f"LOGIN {name_b}\n".encode())
    refusal = p.line(c, "a refusal of a taken name")
    word, _, rest = refusal.text.partition(" ")
    if word.upper() == "ERR":
        tokens["username-taken"] = rest.partition(" ")[0] or "(empty)"
    found["error_tokens"] = tokens
    # 8. Does a refused LOGIN close the connection?
    try:
        c.send(b"PING probe-after-refusal\n")
        c.read_line(time.monotonic() + p.timeout)
        found["closes_after_refused_login"] = False
    except (PeerClosed, OSError):
        found["closes_after_refused_login"] = True
    except ReadTimeout:
        p.problems.append("no answer to PING after a refused LOGIN")
    # 9. The leave notice: b goes away; a's next line naming b is it. A
    #    server without one leaves nothing to read: wait one timeout, then
    #    check with a PING that it still answers.
    b.close()
    try:
        line = a.read_line(time.monotonic() + p.timeout)
    except ReadTimeout:
        p.sync(a)
        found["leave_notice"] = None
        return
    except PeerClosed as exc:
        raise _Stop(str(exc)) from None
    if name_b.lower() in line.text.lower():
        found["leave_notice"] = name_template(line.text, name_b)
    else:
        p.problems.append(f"after {name_b} left, {name_a} got {line.text!r} first")
        found["leave_notice"] = None
