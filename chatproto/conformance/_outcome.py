"""Outcomes and the record of a run: what every report is made from.

Owns: :class:`Outcome`, :class:`Result` (one test's verdict with its evidence)
and :class:`RunReport` (a whole run, with its JSON form, which is also the
input of ``chatproto-conformance matrix``). Never runs or prints anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_UNUSABLE",
    "EXIT_USAGE",
    "Deadlock",
    "Outcome",
    "Result",
    "RunReport",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_UNUSABLE = 3

#: Version of the JSON report format.
REPORT_FORMAT = 1


class Outcome(str, Enum):
    """A test's verdict."""

    #: The server does exactly what the spec says.
    PASS = "PASS"
    #: It passes through a named dialect variant (core and robust only).
    LENIENT = "LENIENT"
    #: The test says nothing about this target (with a reason and a hint).
    SKIP = "SKIP"
    #: A Bonus feature of the original README (WHO, DM, PING, idle timeout)
    #: that this server does not have: core reports it, never fails it.
    NOT_IMPLEMENTED = "NOT-IMPLEMENTED"
    #: Not run, because the server deadlocked earlier (see the run's verdict).
    NOT_RUN = "NOT-RUN"
    #: It failed, as the expectations file says it will (with its reason).
    XFAIL = "XFAIL"
    #: The server does not do what the test checks.
    FAIL = "FAIL"
    #: The test could not reach a verdict: the server died or hung, or the
    #: suite itself broke.
    ERROR = "ERROR"

    @property
    def bad(self) -> bool:
        """Whether it makes the run non-conformant."""
        return self in (Outcome.FAIL, Outcome.ERROR)


@dataclass
class Result:
    """One test's verdict and the evidence for it."""

    id: str
    slug: str
    section: str
    area: str
    title: str
    outcome: Outcome
    #: Lenient variants used (for LENIENT).
    variants: list[str] = field(default_factory=list)
    #: Why: the failure, the skip reason and hint, the XFAIL reason.
    reason: str = ""
    #: What the test expected and what arrived, when it failed on a line.
    expected: str | None = None
    got: str | None = None
    transcript: list[str] = field(default_factory=list)
    #: The server's last stderr lines, when it died.
    server_output: list[str] = field(default_factory=list)
    duration: float = 0.0
    #: Anything else worth knowing (an XFAIL that passed, a restart).
    note: str = ""
    #: The root cause a failure points to, in words; failures with the same
    #: cause are reported as one block.
    cause: str = ""
    #: What the test measured (load tests: round trips, seconds, rates), by a
    #: name that carries its unit, e.g. ``ping_rtt_max_s``.
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``ID slug``."""
        return f"{self.id} {self.slug}"

    @property
    def verdict(self) -> str:
        """``PASS``, ``LENIENT(msg-echo)``, ``SKIP`` ..."""
        if self.outcome is Outcome.LENIENT and self.variants:
            return f"LENIENT({','.join(self.variants)})"
        return self.outcome.value

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Inverse of :meth:`to_json`."""
        fields = dict(data)
        fields["outcome"] = Outcome(fields["outcome"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in fields.items() if k in known})


@dataclass
class RunReport:
    """A whole run."""

    #: Name of the implementation (for the matrix).
    implementation: str
    #: What was tested (URL, command, backend).
    target: str
    profiles: list[str]
    #: The probe's fingerprint (:meth:`Dialect.to_json`), if it got that far.
    dialect: dict[str, Any] | None = None
    results: list[Result] = field(default_factory=list)
    started: str = ""
    duration: float = 0.0
    #: Set when the target could not be tested at all.
    unusable: str | None = None
    tool_version: str = ""
    #: Set when the server stopped answering: where, why, and the transcript.
    deadlock: Deadlock | None = None
    #: Expectations entries whose tests passed (they can be removed).
    stale_expectations: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many results of each outcome, in :class:`Outcome` order."""
        counts = {o.value: 0 for o in Outcome}
        for r in self.results:
            counts[r.outcome.value] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """0 conformant, 1 failures, 3 target unusable."""
        if self.unusable is not None:
            return EXIT_UNUSABLE
        if self.deadlock is not None or any(r.outcome.bad for r in self.results):
            return EXIT_FAILURES
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` report."""
        return {
            "format": REPORT_FORMAT,
            "tool": "chatproto-conformance",
            "tool_version": self.tool_version,
            "implementation": self.implementation,
            "target": self.target,
            "profiles": self.profiles,
            "started": self.started,
            "duration": round(self.duration, 3),
            "unusable": self.unusable,
            "exit_code": self.exit_code,
            "summary": self.counts(),
            "dialect": self.dialect,
            "deadlock": None if self.deadlock is None else asdict(self.deadlock),
            "stale_expectations": self.stale_expectations,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunReport:
        """Read a ``--json`` report back (for the matrix)."""
        if data.get("format") != REPORT_FORMAT or data.get("tool") != "chatproto-conformance":
            raise ValueError("not a chatproto-conformance JSON report (format 1)")
        return cls(
            implementation=data["implementation"],
            target=data["target"],
            profiles=list(data["profiles"]),
            dialect=data.get("dialect"),
            results=[Result.from_json(r) for r in data["results"]],
            started=data.get("started", ""),
            duration=float(data.get("duration", 0.0)),
            unusable=data.get("unusable"),
            tool_version=data.get("tool_version", ""),
            deadlock=Deadlock(**data["deadlock"]) if data.get("deadlock") else None,
            stale_expectations=list(data.get("stale_expectations", [])),
        )

    def root_causes(self) -> list[tuple[str, list[Result]]]:
        """Failures grouped by cause, the largest group first (ties: catalogue order)."""
        groups: dict[str, list[Result]] = {}
        for r in self.results:
            if r.outcome.bad:
                groups.setdefault(r.cause or r.reason, []).append(r)
        return sorted(groups.items(), key=lambda item: -len(item[1]))


@dataclass
class Deadlock:
    """The server stopped answering: the verdict of the run, named once."""

    #: Where it was noticed: a test label, or ``the probe``.
    where: str
    #: What was waited for, and the failed liveness check.
    reason: str
    #: The transcript of the test (or probe) that caused it.
    transcript: list[str] = field(default_factory=list)
