"""The runner: starts the target, probes it, runs each test under a deadline.

Owns: the order of a run (start, probe, tests, stop), the instances a test
needs (the main server, one with a short idle timeout, one with a small
max_clients, a throwaway one for shutdown), the per-test watchdog, the health
check after each test (did the server die, or stop answering?), restarts, and
turning exceptions into outcomes. Never formats a report.

Nothing here can hang: each test body runs in a worker thread whose every wait
is capped by the test's budget, and the runner gives up on the thread shortly
after that budget even if it is still stuck.
"""

from __future__ import annotations

import random
import string
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from chatproto import __version__

from ._context import CheckFailed, Settings, SkipTest, TestContext
from ._dialect import SPEC, Dialect
from ._expectations import Expectations
from ._outcome import Outcome, Result, RunReport
from ._probe import ProbeResult, TargetUnusable, probe
from ._registry import Check
from ._target import CommandTarget, Target
from ._wire import LineSocket, PeerClosed, ReadTimeout, Transcript

__all__ = ["RunOptions", "Runner"]


@dataclass(frozen=True)
class RunOptions:
    """How to run: profiles, timeouts, and what the target allows."""

    profiles: tuple[str, ...] = ("core",)
    expectations: Expectations = field(default_factory=Expectations)
    #: Run idle-timeout tests against the server's own timeout when the suite
    #: cannot start a server with a short one.
    allow_slow: bool = False
    #: The server's own idle timeout, for --allow-slow.
    assumed_idle_timeout: float = 60.0
    #: The idle timeout of the instance the suite starts for idle tests.
    short_idle_timeout: float = 1.0
    #: max_clients of the instance the suite starts for the server-full test.
    small_max_clients: int = 3
    line_timeout: float = 5.0
    absence: float = 0.3
    max_line_bytes: int = 4096
    implementation: str = ""
    #: Multiplies every test's budget (for slow servers or machines).
    budget_factor: float = 1.0

    @property
    def strict(self) -> bool:
        """Whether dialects count as failures."""
        return "strict" in self.profiles


class _Down(Exception):  # noqa: N818  (a state, not an error)
    """The server is unresponsive and cannot be restarted."""


class Runner:
    """Runs ``checks`` against ``target``; ``on_result`` hears each verdict as it comes."""

    def __init__(
        self,
        target: Target,
        checks: Sequence[Check],
        options: RunOptions,
        *,
        on_probe: Callable[[ProbeResult], None] | None = None,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        self.target = target
        self.checks = list(checks)
        self.options = options
        self.on_probe = on_probe
        self.on_result = on_result
        #: Letters that make this run's user names unique.
        self.nonce = "".join(random.choice(string.ascii_lowercase) for _ in range(3))
        self.dialect: Dialect = SPEC
        self._variants: dict[str, Target] = {}
        #: The test after which an uncontrolled server stopped answering.
        self._down_since: str | None = None

    # ------------------------------------------------------------------ run

    def run(self) -> RunReport:
        """Run everything; never raises for anything the server does."""
        report = RunReport(
            implementation=self.options.implementation or self.target.description,
            target=self.target.description,
            profiles=list(self.options.profiles),
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            tool_version=__version__,
        )
        start = time.monotonic()
        try:
            self.target.start()
            found = probe(self.target.address, timeout=self.options.line_timeout, nonce=self.nonce)
        except TargetUnusable as exc:
            report.unusable = str(exc)
            self._stop_all()
            report.duration = time.monotonic() - start
            return report
        self.dialect = found.dialect
        report.dialect = found.dialect.to_json()
        if self.on_probe is not None:
            self.on_probe(found)
        try:
            if found.hung:
                self._recover(self.target, "the probe")
            for serial, check in enumerate(self.checks, 1):
                result = self._run_one(check, serial)
                report.results.append(result)
                if self.on_result is not None:
                    self.on_result(result)
        finally:
            self._stop_all()
        report.duration = time.monotonic() - start
        return report

    def _stop_all(self) -> None:
        for variant in self._variants.values():
            variant.stop()
        self._variants.clear()
        self.target.stop()

    # ------------------------------------------------------------ one test

    def _run_one(self, check: Check, serial: int) -> Result:
        base = Result(check.id, check.slug, check.section, check.area, check.title, Outcome.PASS)
        began = time.monotonic()
        try:
            result = self._attempt(check, serial, base)
        except _Down as down:
            result = replace(base, outcome=Outcome.ERROR, reason=str(down))
        result.duration = round(time.monotonic() - began, 3)
        return self._apply_expectations(result)

    def _attempt(self, check: Check, serial: int, base: Result) -> Result:
        skip = self._skip_reason(check)
        if skip is not None:
            return replace(base, outcome=Outcome.SKIP, reason=skip)
        instance, settings = self._instance_for(check)
        if instance is None:
            return replace(
                base, outcome=Outcome.ERROR, reason="could not start a server for this test"
            )
        if self._down_since is not None and instance is self.target:
            why = self._health(instance, timeout=min(1.0, self.options.line_timeout))
            if why is not None:
                raise _Down(f"the server is still not answering (since {self._down_since}): {why}")
            self._down_since = None
        ctx = TestContext(
            check=check,
            address=instance.address,
            probed=self.dialect,
            settings=settings,
            nonce=self.nonce,
            serial=serial,
            transcript=Transcript(),
            owned_names=_vector_names(check),
            server=instance
            if isinstance(instance, CommandTarget) and "own-server" in check.needs
            else None,
            hard_end=time.monotonic() + check.budget * self.options.budget_factor,
            graceful_cleanup=check.source == "vectors",
        )
        result = self._execute(check, ctx, base)
        ctx.cleanup()
        result.transcript = ctx.transcript.lines()
        if "own-server" in check.needs:
            instance.stop()
            return result
        return self._after(instance, check, result)

    def _execute(self, check: Check, ctx: TestContext, base: Result) -> Result:
        """Run the body in a worker thread, under the test's budget."""
        box: list[Result] = []

        def work() -> None:
            try:
                check.body(ctx)
                ctx.finish()
            except CheckFailed as failed:
                box.append(
                    replace(
                        base,
                        outcome=Outcome.FAIL,
                        reason=failed.message,
                        expected=failed.expected,
                        got=failed.got,
                    )
                )
            except SkipTest as skipped:
                box.append(replace(base, outcome=Outcome.SKIP, reason=str(skipped)))
            except Exception as exc:  # a bug in the suite, or an OS error: say which
                where = traceback.extract_tb(exc.__traceback__)[-1]
                box.append(
                    replace(
                        base,
                        outcome=Outcome.ERROR,
                        reason=f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})",
                    )
                )
            else:
                if ctx.leniencies:
                    box.append(
                        replace(base, outcome=Outcome.LENIENT, variants=sorted(ctx.leniencies))
                    )
                else:
                    box.append(replace(base))

        worker = threading.Thread(target=work, name=f"conformance-{check.id}", daemon=True)
        worker.start()
        worker.join(max(0.0, ctx.hard_end - time.monotonic()) + 2.0)
        if worker.is_alive():
            # Closing the sockets wakes any read the body is stuck in.
            for conn in ctx.conns:
                conn.wire.close_quietly()
            worker.join(3.0)
            budget = check.budget * self.options.budget_factor
            return replace(
                base,
                outcome=Outcome.ERROR,
                reason=f"the test did not finish within its {budget:.0f} s budget and was stopped",
            )
        return box[0]

    def _after(self, instance: Target, check: Check, result: Result) -> Result:
        """Did the server die or stop answering during this test?"""
        died = instance.died()
        if died is None:
            why = self._health(instance, timeout=self.options.line_timeout)
            if why is None:
                return result
            died = instance.wait_died(1.0) if instance.controlled else None
            if died is None:
                hung = f"the server stopped answering during this test (deadlock?): {why}"
                result = replace(result, outcome=Outcome.ERROR, reason=_joined(hung, result.reason))
                self._recover(instance, check.label)
                return result
        tail = instance.output_tail(20)
        result = replace(
            result,
            outcome=Outcome.ERROR,
            reason=_joined(f"{died} during this test", result.reason),
            server_output=tail,
        )
        self._recover(instance, check.label)
        result.note = _joined(result.note, "the server was restarted")
        return result

    def _recover(self, instance: Target, after: str) -> None:
        """Restart a server the suite controls; remember an uncontrolled one is down."""
        if instance.controlled:
            try:
                instance.restart()
            except TargetUnusable as exc:
                raise _Down(f"the server could not be restarted after {after}: {exc}") from None
        else:
            self._down_since = after

    def _health(self, instance: Target, *, timeout: float) -> str | None:
        """``None`` if a fresh connection gets an answer to PING, else why not."""
        record = Transcript()
        end = time.monotonic() + timeout
        try:
            sock = LineSocket.connect(instance.address, "health", record, end, end + 1)
        except OSError as exc:
            return f"cannot connect: {exc}"
        try:
            for _ in self.dialect.banner:
                sock.read_line(end)
            sock.send(b"PING health\n")
            while True:
                line = sock.read_line(end)
                if line.text.upper().startswith(("PONG", "ERR")):
                    return None
        except ReadTimeout:
            return f"no answer to PING within {timeout:.1f} s on a fresh connection"
        except PeerClosed as exc:
            return f"a fresh connection was {exc}"
        except OSError as exc:
            return f"a fresh connection failed: {exc}"
        finally:
            sock.close_quietly()

    # ----------------------------------------------------- what tests need

    def _settings(self, check: Check, idle_timeout: float | None = None) -> Settings:
        o = self.options
        return Settings(
            line_timeout=o.line_timeout,
            absence=o.absence,
            max_line_bytes=o.max_line_bytes,
            idle_timeout=idle_timeout,
            # A robust-only test tolerates dialects even in a strict+robust run.
            strict=o.strict and "strict" in check.profiles,
        )

    def _skip_reason(self, check: Check) -> str | None:
        target = self.target
        if (
            "idle" in check.needs
            and not self.options.allow_slow
            and not self._can_vary(target, "idle_timeout")
        ):
            return (
                "needs a server with a short idle timeout. "
                + target.variant_hint("idle_timeout")
                + "; or pass --allow-slow (with --idle-timeout S, the server's own timeout) "
                "to wait for it"
            )
        if "max-clients" in check.needs and not self._can_vary(target, "max_clients"):
            return "needs a server with a small max_clients. " + target.variant_hint("max_clients")
        if "own-server" in check.needs and not target.controlled:
            return (
                "needs a server the suite may shut down; hint: let the suite start it "
                "with --server-cmd or --backend"
            )
        return None

    @staticmethod
    def _can_vary(target: Target, setting: str) -> bool:
        return isinstance(target, CommandTarget) and target.has_placeholder(setting)

    def _instance_for(self, check: Check) -> tuple[Target | None, Settings]:
        if "idle" in check.needs:
            if not self._can_vary(self.target, "idle_timeout"):
                return self.target, self._settings(check, self.options.assumed_idle_timeout)
            short = self.options.short_idle_timeout
            return self._variant("idle", idle_timeout=short), self._settings(check, short)
        if "max-clients" in check.needs:
            return self._variant(
                "full", max_clients=self.options.small_max_clients
            ), self._settings(check)
        if "own-server" in check.needs:
            fresh = self.target.variant()
            if fresh is None:
                return None, self._settings(check)
            try:
                fresh.start()
            except TargetUnusable:
                return None, self._settings(check)
            return fresh, self._settings(check)
        return self.target, self._settings(check)

    def _variant(self, key: str, **settings: float) -> Target | None:
        found = self._variants.get(key)
        if found is not None:
            return found
        variant = self.target.variant(**settings)  # type: ignore[arg-type]
        if variant is None:
            return None
        try:
            variant.start()
        except TargetUnusable:
            return None
        self._variants[key] = variant
        return variant

    def _apply_expectations(self, result: Result) -> Result:
        reason = self.options.expectations.reason_for(result.id)
        if reason is None:
            return result
        if result.outcome.bad:
            return replace(
                result,
                outcome=Outcome.XFAIL,
                note=_joined(f"was {result.outcome.value}: {result.reason}", result.note),
                reason=reason,
            )
        if result.outcome in (Outcome.PASS, Outcome.LENIENT):
            return replace(
                result,
                note=_joined(
                    result.note,
                    f"listed as an expected failure ({reason}) but passed: remove the entry",
                ),
            )
        return result


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _vector_names(check: Check) -> frozenset[str]:
    names = getattr(check.body, "owned_names", None)
    return frozenset(names) if names else frozenset()
