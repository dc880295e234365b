"""The server a test runs against, and the settings it reads.

Owns: which instance of the server each test gets (the target itself; one
with a short idle timeout; one with a small max_clients, or with room for a
crowd; a fresh one it may shut down; one with flood control off), starting
each variant once and keeping it for the run, why a test is skipped when the
target cannot make the instance it needs, and the :class:`~._context.Settings`
a test reads (how patient it is with a late line, by area). Never runs a test
and never stops a server (the runner does, at the end).

A mixin of :class:`~._runner.Runner`, whose state it shares: the split keeps
each module to one job while the runner stays one object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._command_target import CommandTarget
from ._context import Settings
from ._probe import TargetUnusable
from ._registry import Check
from ._target import Target

if TYPE_CHECKING:
    from ._runner import RunOptions

__all__ = ["Instances"]

#: Areas whose tests move a lot of data or wait on purpose: a late line there
#: is waited for the whole line timeout, not judged after ``settle``.
PATIENT_AREAS = frozenset({"ROB", "IDL", "LIM", "SHD", "LOD"})
#: Areas whose tests are busier than most: twice the settle time.
BUSY_AREAS = frozenset({"CON"})


class Instances:
    """The instances half of :class:`~._runner.Runner`."""

    # Shared with Runner, which sets them up.
    target: Target
    options: RunOptions
    _settle: float
    _variants: dict[str, Target]

    def _settings(
        self,
        check: Check,
        idle_timeout: float | None = None,
        max_clients: int | None = None,
    ) -> Settings:
        o = self.options
        return Settings(
            line_timeout=o.line_timeout,
            absence=o.absence,
            max_line_bytes=o.max_line_bytes,
            idle_timeout=idle_timeout,
            max_clients=max_clients,
            # A robust-only test tolerates dialects even in a strict+robust run.
            strict=o.strict and "strict" in check.profiles,
            settle=None
            if check.area in PATIENT_AREAS
            else self._settle * (2 if check.area in BUSY_AREAS else 1),
            liveness_timeout=o.liveness_timeout,
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
        if ("max-clients" in check.needs or "crowd" in check.needs) and not self._can_vary(
            target, "max_clients"
        ):
            return "needs a server with a small max_clients. " + target.variant_hint("max_clients")
        if "own-server" in check.needs and not target.controlled:
            return (
                "needs a server the suite may shut down; hint: let the suite start it "
                "with --server-cmd or --backend"
            )
        return None

    @staticmethod
    def _can_vary(target: Target, setting: str) -> bool:
        has_placeholder = getattr(target, "has_placeholder", None)  # a CommandTarget, a cluster
        return has_placeholder is not None and bool(has_placeholder(setting))

    @staticmethod
    def _can_unthrottle(target: Target) -> bool:
        """Whether the suite can start ``target`` with flood control off, and has not."""
        if not isinstance(target, CommandTarget):
            return False
        return bool(target.flood_off) and not target.unthrottled

    def _instance_for(self, check: Check) -> tuple[Target | None, Settings]:
        if "idle" in check.needs:
            if not self._can_vary(self.target, "idle_timeout"):
                return self.target, self._settings(check, self.options.assumed_idle_timeout)
            short = self.options.short_idle_timeout
            return self._variant("idle", idle_timeout=short), self._settings(check, short)
        for need, key, size in (
            ("max-clients", "full", self.options.small_max_clients),
            ("crowd", "crowd", self.options.crowd_max_clients),
        ):
            if need in check.needs:
                settings = self._settings(check, max_clients=size)
                return self._variant(key, max_clients=size), settings
        if "own-server" in check.needs:
            fresh = self.target.variant()
            if fresh is None:
                return None, self._settings(check)
            try:
                fresh.start()
            except TargetUnusable:
                return None, self._settings(check)
            return fresh, self._settings(check)
        if "unthrottled" in check.needs and self._can_unthrottle(self.target):
            return self._variant("unthrottled", flood_control=False), self._settings(check)
        # A server the suite cannot unthrottle is tested as it is.
        return self.target, self._settings(check)

    def _variant(
        self,
        key: str,
        *,
        idle_timeout: float | None = None,
        max_clients: int | None = None,
        flood_control: bool | None = None,
    ) -> Target | None:
        found = self._variants.get(key)
        if found is not None:
            return found
        variant = self.target.variant(
            idle_timeout=idle_timeout, max_clients=max_clients, flood_control=flood_control
        )
        if variant is None:
            return None
        try:
            variant.start()
        except TargetUnusable:
            return None
        self._variants[key] = variant
        return variant
