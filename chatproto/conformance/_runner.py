"""The runner: starts the target, probes it, runs each test under a deadline.

Owns: the order of a run (start, probe, tests, stop), the per-test watchdog,
the health check after each test, restarts after a crash, the deadlock
verdict, and turning exceptions into outcomes. Which server a test runs
against (the main one, one with a short idle timeout, one with a small
max_clients, a throwaway one for shutdown) is its mixin
:class:`~._instances.Instances`. Never formats a report.

Nothing here can hang: each test body runs in a worker thread whose every wait
is capped by the test's budget, and the runner gives up on the thread shortly
after that budget even if it is still stuck. A server that stops answering is
found once (a fresh connection's LOGIN is not answered), that becomes the
verdict of the run, and the tests after it are NOT-RUN: waiting for the same
dead server once per test tells nobody anything.
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

from ._context import TestContext
from ._dialect import FEATURES, SPEC, Dialect
from ._expectations import Expectations
from ._instances import Instances
from ._liveness import Liveness, ServerUnresponsive
from ._outcome import Deadlock, Outcome, Result, RunReport
from ._probe import ProbeResult, TargetUnusable, probe
from ._registry import Check
from ._target import Target
from ._verdicts import CheckFailed, NotImplementedFeature, SkipTest
from ._wire import Transcript

__all__ = ["RunOptions", "Runner"]

#: Root causes about framing: a later "nothing arrived" is most likely the same
#: defect (the barrier or the command was pipelined too), and is reported so.
FRAMING_CAUSES = frozenset(
    {
        "lines after the first in one packet are not processed",
        "a line split over several packets is not reassembled",
        "lines after LOGIN in the same packet wait for more data",
    }
)


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
    #: max_clients of the instance for the connection flood (LOD-54): room
    #: for a crowd that stays served while the flood past it is refused.
    crowd_max_clients: int = 20
    line_timeout: float = 5.0
    #: Seconds a line may be late before the liveness check (see Settings).
    settle: float = 1.0
    #: Seconds the liveness check waits for a fresh connection's answer.
    liveness_timeout: float = 3.0
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


class Runner(Instances):
    """Runs ``checks`` against ``target``; ``on_result`` hears each verdict as it comes.

    :meth:`run` does everything. The pytest plugin drives the same steps one
    at a time: :meth:`begin`, :meth:`run_check` per test, :meth:`end`.
    """

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
        self._serial = 0
        self._started = 0.0
        #: Seconds a late line is given before the liveness check: the option,
        #: shortened once a fresh connection was seen answered quickly (see
        #: :meth:`_measured`).
        self._settle = options.settle
        #: A framing root cause found so far, if any.
        self._framing: str | None = None
        #: Whether the server closes a half-closed connection (None: not seen).
        self._closes_half_closed: bool | None = None
        #: Liveness checkers (each with its anchor user), by server address.
        self._live: dict[tuple[str, int], Liveness] = {}
        self.report = RunReport(
            implementation=options.implementation or target.description,
            target=target.description,
            profiles=list(options.profiles),
            tool_version=__version__,
        )

    # ------------------------------------------------------------------ run

    def run(self) -> RunReport:
        """Run everything; never raises for anything the server does."""
        try:
            if self.begin():
                for check in self.checks:
                    self.run_check(check)
        finally:
            self.end()
        return self.report

    def begin(self) -> bool:
        """Start the target and probe it; ``False`` if it is unusable (see the report)."""
        self._started = time.monotonic()
        self.report.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        o = self.options
        try:
            self.target.start()
            found = probe(
                self.target.address,
                timeout=o.line_timeout,
                settle=o.settle,
                liveness=o.liveness_timeout,
                nonce=self.nonce,
                tls=self.target.tls,
            )
        except TargetUnusable as exc:
            self.report.unusable = str(exc)
            return False
        self.dialect = found.dialect
        self.report.dialect = found.dialect.to_json()
        if found.deadlock is not None:
            self.report.deadlock = Deadlock("the probe", found.deadlock, found.transcript.lines())
        if self.on_probe is not None:
            self.on_probe(found)
        return True

    def end(self) -> RunReport:
        """Stop every server the suite started; the report is complete."""
        self._stop_all()
        self.report.duration = time.monotonic() - self._started if self._started else 0.0
        return self.report

    def run_check(self, check: Check) -> Result:
        """Run one test (after :meth:`begin`), record and return its result."""
        self._serial += 1
        result = self._run_one(check, self._serial)
        self.report.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _stop_all(self) -> None:
        for live in self._live.values():
            live.close()
        self._live.clear()
        for variant in self._variants.values():
            variant.stop()
        self._variants.clear()
        self.target.stop()

    # ------------------------------------------------------------ one test

    def _run_one(self, check: Check, serial: int) -> Result:
        base = Result(
            check.id, check.slug, check.section, check.area, check.title, Outcome.PASS,
            cause=check.cause,
        )  # fmt: skip
        began = time.monotonic()
        dead = self.report.deadlock
        if dead is not None:
            result = replace(
                base,
                outcome=Outcome.NOT_RUN,
                reason=f"not run: the server stopped answering in {dead.where}",
            )
        else:
            try:
                result = self._attempt(check, serial, base)
            except _Down as down:
                result = replace(base, outcome=Outcome.ERROR, reason=str(down))
        result.duration = round(time.monotonic() - began, 3)
        return self._apply_expectations(self._attribute(result))

    def _attribute(self, result: Result) -> Result:
        """Name a framing defect as the cause of a later line that never came."""
        if result.outcome is not Outcome.FAIL:
            return result
        if result.cause in FRAMING_CAUSES:
            self._framing = self._framing or result.cause
        elif self._framing is not None and result.got in ("(nothing)", "(connection closed)"):
            return replace(
                result,
                cause=self._framing,
                note=_joined(result.note, f"counted under the framing defect: {self._framing}"),
            )
        return result

    def _measured(self, took: float) -> float:
        """A fresh connection was answered in ``took`` s: a late line needs less patience.

        A server that answers a newcomer in a few milliseconds and still has
        not sent a line after ``max(0.5, 50 x took)`` seconds is not going to;
        a busy machine makes ``took`` larger and the patience with it.
        """
        self._settle = min(self.options.settle, max(0.5, 50 * took))
        return took

    def _lacks(self, check: Check) -> str | None:
        """The README Bonus feature this core test needs and the server lacks, if any."""
        feature = check.feature
        if not feature or ("strict" in check.profiles and self.options.strict):
            return None
        return None if self.dialect.has(feature) else feature

    def _attempt(self, check: Check, serial: int, base: Result) -> Result:
        missing = self._lacks(check)
        if missing is not None:
            return replace(
                base,
                outcome=Outcome.NOT_IMPLEMENTED,
                reason=f"the server has no {FEATURES[missing]} (a README Bonus feature)",
            )
        skip = self._skip_reason(check)
        if skip is not None:
            return replace(base, outcome=Outcome.SKIP, reason=skip)
        instance, settings = self._instance_for(check)
        if instance is None:
            return replace(
                base, outcome=Outcome.ERROR, reason="could not start a server for this test"
            )
        live = self._live.get(instance.address)
        if live is None:
            live = self._live[instance.address] = Liveness(
                instance.address,
                banner_lines=len(self.dialect.banner),
                timeout=self.options.liveness_timeout,
                nonce=self.nonce,
                tls=instance.tls,
            )

        def liveness() -> float:
            return self._measured(live.check())

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
            if hasattr(instance, "terminate") and "own-server" in check.needs
            else None,
            hard_end=time.monotonic() + check.budget * self.options.budget_factor,
            graceful_cleanup=check.source == "vectors",
            cleanup_wait=0.1 if self._closes_half_closed is False else 1.0,
            liveness=liveness,
            spread=getattr(instance, "addresses", ()),
            tls=instance.tls,
        )
        result = self._execute(check, ctx, base)
        if not ctx.cleanup() and self._closes_half_closed is None:
            self._closes_half_closed = False
        result.transcript = ctx.transcript.lines()
        result.measurements = dict(ctx.measurements)
        if "own-server" in check.needs:
            instance.stop()
            return result
        if result.outcome is Outcome.ERROR and result.cause.startswith("deadlock"):
            return self._deadlocked(check, result)
        return self._after(instance, check, result, liveness)

    def _deadlocked(self, check: Check, result: Result) -> Result:
        """Record the run's deadlock verdict, found in ``check``."""
        self.report.deadlock = Deadlock(check.label, result.reason, list(result.transcript))
        return result

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
                        cause=failed.cause or base.cause,
                    )
                )
            except SkipTest as skipped:
                box.append(replace(base, outcome=Outcome.SKIP, reason=str(skipped)))
            except NotImplementedFeature as absent:
                feature = FEATURES.get(str(absent), str(absent))
                box.append(
                    replace(
                        base,
                        outcome=Outcome.NOT_IMPLEMENTED,
                        reason=f"the server has no {feature} (a README Bonus feature)",
                    )
                )
            except ServerUnresponsive as exc:
                box.append(self._unresponsive(check, base, str(exc)))
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

    @staticmethod
    def _unresponsive(check: Check, base: Result, why: str) -> Result:
        return replace(
            base,
            outcome=Outcome.ERROR,
            reason=f"DEADLOCK: the server stopped answering during {check.label}: {why}",
            cause=f"deadlock: the server stopped answering during {check.label} ({check.cause})",
        )

    def _after(
        self, instance: Target, check: Check, result: Result, liveness: Callable[[], float]
    ) -> Result:
        """Did the server die or stop answering during this test?"""
        died = instance.died()
        if died is None:
            try:
                liveness()
                return result
            except ServerUnresponsive as exc:
                died = instance.wait_died(0.5) if instance.controlled else None
                if died is None:
                    hung = self._unresponsive(check, result, f"after the test, {exc}")
                    hung = replace(
                        hung,
                        reason=_joined(hung.reason, result.reason),
                        transcript=result.transcript,
                    )
                    return self._deadlocked(check, hung)
        tail = instance.output_tail(20)
        result = replace(
            result,
            outcome=Outcome.ERROR,
            reason=_joined(f"{died} during this test", result.reason),
            cause=f"the server crashed ({died})",
            server_output=tail,
        )
        self._recover(instance, check.label)
        result.note = _joined(result.note, "the server was restarted")
        return result

    def _recover(self, instance: Target, after: str) -> None:
        """Restart a server the suite controls after it died."""
        if not instance.controlled:
            raise _Down(f"the server died during {after} and the suite cannot restart it")
        stale = self._live.pop(instance.address, None)
        if stale is not None:
            stale.close()
        try:
            instance.restart()
        except TargetUnusable as exc:
            raise _Down(f"the server could not be restarted after {after}: {exc}") from None

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
            self.report.stale_expectations.append(f"{result.id}: {reason}")
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
