"""The conformance suite as a pytest plugin: each test a pytest item named by its ID.

A third-party project runs the suite in its own CI the way it runs its tests::

    pytest -p chatproto.conformance.pytest_plugin --pyargs chatproto.conformance \\
        --chat-server-cmd 'node server.js {port}' --chat-profile core

``-k``, ``-x``, ``--junitxml`` and the rest of pytest work as usual. The
plugin is loaded only with ``-p`` (it registers no entry point), so it never
touches a test run that did not ask for it; and it collects only the marker
file ``data/suite.chat`` of this package, only when a target option is given.

Owns: the options, the collection of one item per selected test, and the
mapping of outcomes to pytest's (PASS and LENIENT pass; SKIP, NOT-IMPLEMENTED
and NOT-RUN skip with their reason; XFAIL is xfail; FAIL and ERROR fail with
the suite's own explanation). The server is started once, on the first item,
and stopped at the end of the session, by the same runner the command line uses.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatproto.adapters import BACKENDS
from chatproto.tls import client_context

from ._backend_target import backend_target
from ._catalogue import catalogue, select
from ._command_target import CommandTarget
from ._expectations import Expectations, ExpectationsError
from ._outcome import Outcome, Result, RunReport
from ._registry import PROFILES, Check
from ._report_text import TextReporter
from ._runner import Runner, RunOptions
from ._target import RemoteTarget, Target, flood_control_for, parse_target_url

__all__ = ["ChatCheckItem", "ChatSuiteFile"]

_MARKER = Path(__file__).parent / "data" / "suite.chat"
_RUNNER = pytest.StashKey["_Session"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--chat-*`` options."""
    group = parser.getgroup("chatproto-conformance", "chatproto conformance suite")
    group.addoption("--chat-server-cmd", metavar="CMD", help="shell command that starts the server")
    group.addoption(
        "--chat-server",
        metavar="tcp://HOST:PORT",
        help="a server already running (tls://HOST:PORT: over TLS, verified by the system's CAs)",
    )
    group.addoption("--chat-backend", choices=BACKENDS, help="one of chatproto's own backends")
    group.addoption("--chat-cwd", metavar="DIR", help="working directory for --chat-server-cmd")
    group.addoption(
        "--chat-flood-off",
        default="",
        metavar="ARGS",
        help="arguments that turn the server's flood control off (see docs/conformance.md)",
    )
    group.addoption(
        "--chat-profile",
        action="append",
        choices=[*PROFILES],
        help="core (default), strict, robust, load; repeatable",
    )
    group.addoption(
        "--chat-port-from-output",
        action="store_true",
        help="the server picks its port and prints HOST:PORT",
    )
    group.addoption("--chat-timeout", type=float, default=5.0, help="longest wait for a line")
    group.addoption("--chat-expectations", metavar="FILE", help="known failures file")


def _target(config: pytest.Config) -> Target | None:
    command = config.getoption("--chat-server-cmd")
    url = config.getoption("--chat-server")
    backend = config.getoption("--chat-backend")
    given = [x for x in (command, url, backend) if x]
    if not given:
        return None
    if len(given) > 1:
        raise pytest.UsageError("give one of --chat-server-cmd, --chat-server, --chat-backend")
    if url:
        try:
            tls, host, port = parse_target_url(url)
            return RemoteTarget(host, port, tls=client_context() if tls else None)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    profiles = _profiles(config)
    if backend:
        return backend_target(backend, profiles=profiles, name=backend)
    return CommandTarget(
        command,
        cwd=config.getoption("--chat-cwd"),
        port_from_output=config.getoption("--chat-port-from-output"),
        flood_off=config.getoption("--chat-flood-off"),
        flood_control=flood_control_for(profiles),
    )


def _profiles(config: pytest.Config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(config.getoption("--chat-profile") or ["core"]))


class _Session:
    """One runner for the whole pytest session, started by the first item."""

    def __init__(self, target: Target, checks: list[Check], options: RunOptions) -> None:
        self.runner = Runner(target, checks, options)
        self.began: bool | None = None

    def result(self, check: Check) -> Result | str:
        """The check's result, or why the target could not be tested."""
        if self.began is None:
            self.began = self.runner.begin()
        if not self.began:
            return f"target unusable: {self.runner.report.unusable}"
        return self.runner.run_check(check)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect the suite from its marker file, when a target is given."""
    if file_path != _MARKER or _target(parent.config) is None:
        return None
    return ChatSuiteFile.from_parent(parent, path=file_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop every server the suite started."""
    state = session.config.stash.get(_RUNNER, None)
    if state is not None and state.began is not None:
        state.runner.end()


class ChatSuiteFile(pytest.File):
    """The selected tests of the chosen profiles, one item each."""

    def collect(self) -> Iterator[ChatCheckItem]:
        config = self.config
        target = _target(config)
        assert target is not None
        profiles = _profiles(config)
        checks = select(catalogue(), profiles)
        path = config.getoption("--chat-expectations")
        try:
            expectations = Expectations.load(path) if path else Expectations()
            expectations.check_known([c.id for c in catalogue()])
        except ExpectationsError as exc:
            raise pytest.UsageError(str(exc)) from None
        options = RunOptions(
            profiles=profiles,
            expectations=expectations,
            line_timeout=config.getoption("--chat-timeout"),
        )
        config.stash[_RUNNER] = _Session(target, checks, options)
        for check in checks:
            yield ChatCheckItem.from_parent(self, name=check.id, check=check)


class ChatCheckFailedError(Exception):
    """A FAIL or ERROR, carrying the result for the report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


class ChatCheckItem(pytest.Item):
    """One conformance test."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.user_properties.append(("slug", check.slug))

    def runtest(self) -> None:
        state = self.config.stash[_RUNNER]
        got = state.result(self.check)
        if isinstance(got, str):
            pytest.fail(got, pytrace=False)
        self.user_properties.append(("verdict", got.verdict))
        self.user_properties.extend(got.measurements.items())
        if got.outcome in (Outcome.SKIP, Outcome.NOT_IMPLEMENTED, Outcome.NOT_RUN):
            pytest.skip(f"{got.outcome.value}: {got.reason}")
        if got.outcome is Outcome.XFAIL:
            pytest.xfail(got.reason)
        if got.outcome.bad:
            raise ChatCheckFailedError(got)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, ChatCheckFailedError):
            return _explain(excinfo.value.result, self.config.stash[_RUNNER].runner.report)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.check.id} {self.check.slug}: {self.check.title}"


def _explain(result: Result, report: RunReport) -> str:
    """The failure as the text report shows it."""
    out = io.StringIO()
    one = RunReport(
        implementation=report.implementation,
        target=report.target,
        profiles=report.profiles,
        results=[result],
        deadlock=report.deadlock,
    )
    TextReporter(out, colour=False).details(one)
    return out.getvalue().strip()
