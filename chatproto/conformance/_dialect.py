"""Dialects: how a server speaks, as learned by the probe, and the named differences.

Owns: the :class:`Dialect` record the probe fills in (features present, the
wording of notices, decorations such as timestamps), the names of the lenient
variants, and reading a line through a learned wording (templates with
``{name}``, timestamps taken out). Never touches a socket: :mod:`._probe`
fills it in, the test context consults it.

Two references are in play. ``core`` is the original protocol as its README
described it (summarised in docs/conformance.md): a Bonus feature may be
absent, and what it leaves open may differ. ``strict`` is docs/protocol.md,
where every difference is a failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "COSMETIC",
    "FEATURES",
    "REPORTED_ONCE",
    "SPEC",
    "SPEC_JOIN",
    "SPEC_LEAVE",
    "VARIANTS",
    "Dialect",
    "name_template",
    "template_match",
    "undecorate",
]

#: Every lenient variant, with what it means. A core or robust test that passes
#: only thanks to one of these is reported ``LENIENT(<name>)``; under the
#: strict profile the same difference is a failure.
VARIANTS: Final[Mapping[str, str]] = {
    "banner": "the server greets each connection with a banner (§1.1: the client speaks first)",
    "crlf-output": "the server ends its lines with CRLF (§1.2: LF only)",
    "ok-with-text": "OK is followed by text, e.g. 'OK welcome alice' (§5.1: OK alone)",
    "timestamps": "notices carry a timestamp or other decoration (§8: none)",
    "join-notice-wording": "join notices worded otherwise, or absent (§8.1: INFO <name> joined)",
    "leave-notice-wording": "leave notices are worded differently (§8.2: INFO <name> disconnected)",
    "msg-echo": "the sender of a MSG gets its own message back (§6.2: no echo)",
    "dm-ack-wording": "a DM is acknowledged with another line than OK (§7.1)",
    "no-dm-ack": "a DM is not acknowledged at all (§7.1: OK)",
    "error-token": "errors carry other tokens after ERR (§4.2)",
    "ping-refused-before-login": "PING before LOGIN is refused with an ERR (§10.2: it works)",
    "pong-without-token": "PONG does not repeat the PING token (§10.1)",
    "close-after-refused-login": "a refused LOGIN closes the connection (§5.4: one may retry)",
    "who-order": "WHO lists users in another order than login order (§9.1)",
}

#: Variants that concern every line or every connection. They are tested once,
#: by a dedicated test, and silently absorbed everywhere else (otherwise a
#: banner would fail or flag every single test, which tells nobody anything).
COSMETIC: Final = frozenset({"banner", "crlf-output", "timestamps"})

#: Variants that strict reports once, in their dedicated test, and absorbs
#: elsewhere: ``OK welcome alice`` would otherwise fail every test that logs
#: in, burying the one thing to fix under dozens of reds.
REPORTED_ONCE: Final = COSMETIC | {
    "join-notice-wording",
    "leave-notice-wording",
    "ok-with-text",
    "pong-without-token",
    "ping-refused-before-login",
}

#: The README's Bonus features, which ``core`` tests only where present.
FEATURES: Final[Mapping[str, str]] = {
    "ping": "PING/PONG heartbeat",
    "who": "WHO (list active users)",
    "dm": "DM (private messages)",
    "idle": "idle timeout",
}

SPEC_JOIN: Final = "INFO {name} joined"
SPEC_LEAVE: Final = "INFO {name} disconnected"

#: A timestamp as servers print them: ``2026-11-29 17:29:45``, ``17:29``,
#: ``[17:29:45]``, ISO forms with ``T``, fractions and ``Z``.
_TIMESTAMP = (
    r"[\[(]?(?:\d{4}-\d{2}-\d{2}[ T])?\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?Z?[\])]?"
    r"|[\[(]?\d{4}-\d{2}-\d{2}[\])]?"
)
_DECORATED = re.compile(rf"^(?:(INFO|MSG|DM) )?(?:{_TIMESTAMP})(?: (?:{_TIMESTAMP}))? ?(.*)$")


@dataclass(frozen=True)
class Dialect:
    """How one server speaks, as far as the probe could tell.

    The defaults are the spec, so ``Dialect()`` is chatproto's own dialect.
    """

    #: Lines sent on connect, before the client says anything.
    banner: tuple[str, ...] = ()
    #: Whether lines end with ``\\r\\n``.
    crlf_output: bool = False
    #: Whether ``PING`` (bare) is answered with ``PONG`` once logged in.
    has_ping: bool = True
    #: ``"pong"``, ``"refused"`` (an ``ERR``) or ``"silent"`` (no answer).
    ping_before_login: str = "pong"
    #: Whether ``PING x`` is answered ``PONG x``.
    pong_token: bool = True
    #: Whether ``LOGIN`` is answered ``OK`` followed by text.
    ok_text: bool = False
    #: Whether notices carry a timestamp (taken out before matching).
    timestamps: bool = False
    #: Template of the join notice (``{name}`` for the user), or ``None``.
    join_notice: str | None = SPEC_JOIN
    #: Template of the leave notice, or ``None``.
    leave_notice: str | None = SPEC_LEAVE
    #: Whether a MSG comes back to its sender.
    msg_echo: bool = False
    #: Whether WHO lists users as ``USER <name>`` lines.
    has_who: bool = True
    #: Whether DM delivers a private message.
    has_dm: bool = True
    #: Template of the DM acknowledgement (``{name}`` for the recipient), or
    #: ``None`` for none.
    dm_ack: str | None = "OK"
    #: Error token observed for each spec token probed (spec token -> theirs;
    #: ``(silent)`` when nothing was answered).
    error_tokens: Mapping[str, str] = field(default_factory=dict)
    #: Whether command words are matched case-insensitively (§3.2).
    case_insensitive: bool = True
    #: Whether a refused LOGIN closes the connection.
    closes_after_refused_login: bool = False
    #: What the probe could not find out, or found odd.
    problems: tuple[str, ...] = ()

    def has(self, feature: str) -> bool:
        """Whether a README Bonus feature (see :data:`FEATURES`) is there."""
        return {"ping": self.has_ping, "who": self.has_who, "dm": self.has_dm}.get(feature, True)

    def variants(self) -> dict[str, str]:
        """The lenient variants this dialect uses, each with what was seen."""
        found: dict[str, str] = {}
        if self.banner:
            found["banner"] = " | ".join(self.banner)
        if self.crlf_output:
            found["crlf-output"] = "lines end with CRLF"
        if self.ok_text:
            found["ok-with-text"] = "OK <text>"
        if self.timestamps:
            found["timestamps"] = "timestamps in notices"
        if self.join_notice != SPEC_JOIN:
            found["join-notice-wording"] = self.join_notice or "(none)"
        if self.leave_notice != SPEC_LEAVE:
            found["leave-notice-wording"] = self.leave_notice or "(none)"
        if self.msg_echo:
            found["msg-echo"] = "MSG comes back to its sender"
        if self.has_dm and self.dm_ack is None:
            found["no-dm-ack"] = "(none)"
        elif self.has_dm and self.dm_ack != "OK":
            found["dm-ack-wording"] = self.dm_ack or ""
        odd = {k: v for k, v in self.error_tokens.items() if k != v}
        if odd:
            found["error-token"] = ", ".join(f"{k} -> {v}" for k, v in sorted(odd.items()))
        if self.ping_before_login == "refused" and self.has_ping:
            found["ping-refused-before-login"] = "ERR"
        if self.has_ping and not self.pong_token:
            found["pong-without-token"] = "PONG"
        if self.closes_after_refused_login:
            found["close-after-refused-login"] = "closed"
        return found

    def missing(self) -> list[str]:
        """The README Bonus features this server does not have."""
        return [f for f in FEATURES if f != "idle" and not self.has(f)]

    def rows(self) -> list[tuple[str, str, str]]:
        """``(feature, observed, spec)`` rows for a printed fingerprint."""
        tokens = ", ".join(f"{k}={v}" for k, v in sorted(self.error_tokens.items()))
        return [
            ("banner", " | ".join(self.banner) or "(none)", "(none)"),
            ("line endings", "CRLF" if self.crlf_output else "LF", "LF"),
            ("PING", _yes(self.has_ping), "yes"),
            ("PING before LOGIN", self.ping_before_login, "pong"),
            ("PONG repeats token", _yes(self.pong_token), "yes"),
            ("OK with text", _yes(self.ok_text), "no"),
            ("timestamps", _yes(self.timestamps), "no"),
            ("join notice", self.join_notice or "(none)", SPEC_JOIN),
            ("leave notice", self.leave_notice or "(none)", SPEC_LEAVE),
            ("MSG echoed to sender", _yes(self.msg_echo), "no"),
            ("WHO", _yes(self.has_who), "yes"),
            ("DM", _yes(self.has_dm), "yes"),
            ("DM acknowledgement", self.dm_ack or "(none)", "OK"),
            ("error tokens", tokens or "(not probed)", "as in §4.2"),
            ("case-insensitive commands", _yes(self.case_insensitive), "yes"),
            ("refused LOGIN closes", _yes(self.closes_after_refused_login), "no"),
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``dialect`` of a report)."""
        return {
            "banner": list(self.banner),
            "crlf_output": self.crlf_output,
            "has_ping": self.has_ping,
            "ping_before_login": self.ping_before_login,
            "pong_token": self.pong_token,
            "ok_text": self.ok_text,
            "timestamps": self.timestamps,
            "join_notice": self.join_notice,
            "leave_notice": self.leave_notice,
            "msg_echo": self.msg_echo,
            "has_who": self.has_who,
            "has_dm": self.has_dm,
            "dm_ack": self.dm_ack,
            "error_tokens": dict(self.error_tokens),
            "case_insensitive": self.case_insensitive,
            "closes_after_refused_login": self.closes_after_refused_login,
            "problems": list(self.problems),
            "variants": self.variants(),
            "missing_features": self.missing(),
        }

    def for_strict(self) -> Dialect:
        """The spec, keeping only the traits strict reports once (see :data:`REPORTED_ONCE`).

        Features stay as probed, so that a missing WHO fails the WHO tests and
        not every test that happens to synchronise.
        """
        return replace(
            SPEC,
            banner=self.banner,
            crlf_output=self.crlf_output,
            ok_text=self.ok_text,
            timestamps=self.timestamps,
            join_notice=self.join_notice or SPEC_JOIN,
            leave_notice=self.leave_notice or SPEC_LEAVE,
            has_ping=self.has_ping,
            ping_before_login=self.ping_before_login if not self.has_ping else "pong",
        )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


SPEC: Final = Dialect()

_NAME_FIELD: Final = "{name}"


def undecorate(line: str) -> tuple[str, bool]:
    """``line`` without a leading timestamp (kept after ``INFO``/``MSG``/``DM``); whether one was.

    ``INFO 2026-11-29 17:29:45 bob joined`` becomes ``INFO bob joined``;
    ``[17:29] INFO bob disconnected`` becomes ``INFO bob disconnected``.
    """
    m = _DECORATED.match(line)
    if m is None or not m.group(2):
        return line, False
    word, rest = m.group(1), m.group(2)
    return (f"{word} {rest}" if word else rest), True


def name_template(line: str, name: str) -> str:
    """Turn a line seen for user ``name`` into a template (``{name}`` for the name).

    The name is matched case-insensitively, since servers may show it as typed.
    """
    return re.sub(re.escape(name), lambda _m: _NAME_FIELD, line, flags=re.IGNORECASE)


def template_match(template: str, line: str) -> str | None:
    """The name in ``line`` if it matches ``template``, else ``None``.

    A template without ``{name}`` matches the line exactly and yields ``""``.
    """
    parts = []
    seen = False
    for part in re.split(r"(\{name\})", template):
        if part == _NAME_FIELD:
            parts.append("(?P=name)" if seen else "(?P<name>[^ ]+)")
            seen = True
        else:
            parts.append(re.escape(part))
    pattern = "".join(parts)
    m = re.fullmatch(pattern, line)
    if m is None:
        return None
    return m.groupdict().get("name") or ""
