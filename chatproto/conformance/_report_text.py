"""The terminal report: one line per test as it finishes, then details and a summary.

Owns: how results, the dialect fingerprint and the summary read on a terminal
(colour only when the stream is a TTY). Never decides an outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from ._dialect import VARIANTS, Dialect
from ._outcome import Outcome, Result, RunReport
from ._registry import PROFILES, Check

__all__ = [
    "LINE_WIDTH",
    "TextReporter",
    "cut",
    "format_catalogue",
    "format_dialect",
    "format_measurements",
]

_COLOURS = {
    Outcome.PASS: "32",
    Outcome.LENIENT: "36",
    Outcome.SKIP: "33",
    Outcome.NOT_IMPLEMENTED: "33",
    Outcome.NOT_RUN: "90",
    Outcome.XFAIL: "35",
    Outcome.FAIL: "31;1",
    Outcome.ERROR: "41;97",
}
#: Transcript lines shown for a failure (the end of it, where it went wrong).
TRANSCRIPT_SHOWN = 40
#: No printed line is longer than this (plus the "(+N bytes)" marker).
LINE_WIDTH = 200


def format_dialect(dialect: Dialect) -> list[str]:
    """The probe's fingerprint as an aligned table, with the variants it implies."""
    rows = dialect.rows()
    width = max(len(r[0]) for r in rows)
    out = [
        f"  {feature:<{width}}  {observed}" + ("" if observed == spec else f"   (spec: {spec})")
        for feature, observed, spec in rows
    ]
    variants = dialect.variants()
    out.append(
        "  dialect variants: " + (", ".join(variants) if variants else "none (speaks the spec)")
    )
    out.extend(f"  problem: {p}" for p in dialect.problems)
    return out


def format_catalogue(checks: Iterable[Check]) -> list[str]:
    """``list``: every test with its profiles and section, grouped by area."""
    out: list[str] = []
    area = None
    for c in checks:
        if c.area != area:
            area = c.area
            out.append(f"\n{c.area}  {c.area_name}")
        needs = f"  [needs {', '.join(sorted(c.needs))}]" if c.needs else ""
        profiles = ",".join(p for p in PROFILES if p in c.profiles)
        out.append(f"  {c.id:<7} {c.slug:<34} §{c.section:<10} {profiles:<24}{needs}")
        out.append(f"          {c.title}")
    return out


class TextReporter:
    """Writes the terminal report to ``stream``."""

    def __init__(
        self, stream: TextIO, *, colour: bool | None = None, verbose: bool = False
    ) -> None:
        self.stream = stream
        self.colour = stream.isatty() if colour is None else colour
        self.verbose = verbose

    def _paint(self, outcome: Outcome, text: str) -> str:
        return f"\033[{_COLOURS[outcome]}m{text}\033[0m" if self.colour else text

    def write(self, line: str = "") -> None:
        """One line (each part cut at :data:`LINE_WIDTH`), flushed: the run is watched live."""
        for part in line.split("\n"):
            self.stream.write(cut(part) + "\n")
        self.stream.flush()

    def header(self, target: str, profiles: list[str], count: int) -> None:
        """The first lines of a run."""
        self.write(
            f"chatproto-conformance: {count} tests, profile {'+'.join(profiles)}, target {target}"
        )

    def probe(self, dialect: Dialect, seconds: float) -> None:
        """The fingerprint, right after the probe."""
        self.write(f"dialect probe ({seconds:.2f} s):")
        for line in format_dialect(dialect):
            self.write(line)
        self.write()

    def result(self, r: Result) -> None:
        """One test's line, as it finishes."""
        verdict = self._paint(r.outcome, f"{r.verdict:<8}")
        if r.outcome is Outcome.NOT_RUN and not self.verbose:
            return
        extra = ""
        if r.outcome in (Outcome.SKIP, Outcome.XFAIL, Outcome.NOT_IMPLEMENTED, Outcome.NOT_RUN):
            extra = f"  ({r.reason})"
        elif r.outcome.bad:
            extra = f"  {r.reason.splitlines()[0] if r.reason else ''}"
        if r.measurements and r.outcome is not Outcome.SKIP:
            extra = f"  [{format_measurements(r.measurements)}]{extra}"
        self.write(f"{verdict} {r.label:<42} {r.duration:6.2f}s{extra}")
        if self.verbose and r.outcome not in (Outcome.SKIP,):
            for line in r.transcript:
                self.write(f"           {line}")

    def details(self, report: RunReport) -> None:
        """Root causes first, then one block per cause (the first failure in full)."""
        if report.deadlock is not None:
            self._deadlock(report)
        groups = report.root_causes()
        if not groups:
            return
        self.write()
        self.write(self._paint(Outcome.FAIL, f"root causes ({len(groups)}):"))
        for cause, results in groups:
            ids = ", ".join(r.id for r in results[:12]) + (" ..." if len(results) > 12 else "")
            count = f"{len(results)} test{'s' if len(results) > 1 else ''}"
            self.write(f"  * {cause}: {count} ({ids})")
        for cause, results in groups:
            first = results[0]
            self.write()
            self.write(self._paint(first.outcome, f"== {cause}"))
            self._block(first)
            for r in results[1:]:
                self.write(f"   same cause: {r.verdict} {r.label}: {_first_line(r.reason)}")

    def _deadlock(self, report: RunReport) -> None:
        dead = report.deadlock
        assert dead is not None
        not_run = sum(1 for r in report.results if r.outcome is Outcome.NOT_RUN)
        self.write()
        self.write(
            self._paint(Outcome.ERROR, f"== DEADLOCK: the server stopped answering in {dead.where}")
        )
        self.write(f"   why:      {dead.reason}")
        if not_run:
            self.write(f"   {not_run} tests after it were not run")
        if dead.transcript:
            shown = dead.transcript[-TRANSCRIPT_SHOWN:]
            self.write("   transcript (t seconds, client, > sent / < received / * note):")
            for line in shown:
                self.write(f"     {line}")

    def _block(self, r: Result) -> None:
        """Everything needed to understand one failure."""
        self.write(f"   {r.outcome.value} {r.label} (§{r.section}): {r.title}")
        self.write(f"   why:      {r.reason}")
        if r.expected is not None:
            self.write(f"   expected: {r.expected}")
        if r.got is not None:
            self.write(f"   got:      {r.got}")
        if r.note:
            self.write(f"   note:     {r.note}")
        if r.transcript:
            shown = r.transcript[-TRANSCRIPT_SHOWN:]
            cut = len(r.transcript) - len(shown)
            self.write(
                "   transcript (t seconds, client, > sent / < received / * note):"
                + (f" last {len(shown)} of {len(r.transcript)}" if cut else "")
            )
            for line in shown:
                self.write(f"     {line}")
        if r.server_output:
            self.write("   server output (last lines):")
            for line in r.server_output:
                self.write(f"     | {line}")

    def summary(self, report: RunReport) -> None:
        """Counts, variants used, missing features, stale expectations, and the verdict."""
        self.write()
        if report.unusable is not None:
            self.write(self._paint(Outcome.ERROR, f"target unusable: {report.unusable}"))
            return
        counts = report.counts()
        parts = [self._paint(Outcome(k), f"{v} {k}") for k, v in counts.items() if v]
        self.write(f"{len(report.results)} tests in {report.duration:.1f} s: " + ", ".join(parts))
        used = sorted({v for r in report.results for v in r.variants})
        for v in used:
            self.write(f"  lenient variant {v}: {VARIANTS.get(v, '')}")
        missing = sorted({r.reason for r in report.results if r.outcome is Outcome.NOT_IMPLEMENTED})
        for reason in missing:
            self.write(f"  not implemented: {reason}")
        for entry in report.stale_expectations:
            self.write(f"  expectation for a passing test (remove it): {entry}")
        if report.deadlock is not None:
            self.write(self._paint(Outcome.ERROR, f"DEADLOCK in {report.deadlock.where}"))
        verdict = "CONFORMANT" if report.exit_code == 0 else "NOT CONFORMANT"
        self.write(f"{verdict} to profile {'+'.join(report.profiles)}")


def format_measurements(measurements: dict[str, float]) -> str:
    """``ping_rtt_max_s=0.012 ...``: what a test measured, in one short run of text."""
    return " ".join(f"{name}={value:g}" for name, value in measurements.items())


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def cut(line: str, width: int = LINE_WIDTH) -> str:
    """``line`` cut at ``width`` characters, saying how much was left out."""
    if len(line) <= width:
        return line
    rest = len(line[width:].encode("utf-8", "replace"))
    return f"{line[:width]}... (+{rest} bytes)"
