"""chatproto-conformance: a conformance suite any chat server can be run against.

An I/O tool at the edge of chatproto (the core never imports it): it starts or
connects to a server, fingerprints its dialect, runs a catalogue of tests over
real TCP, and reports PASS, LENIENT(variant), SKIP, XFAIL, FAIL or ERROR per
test. Use it from the command line (``chatproto-conformance``, see
docs/conformance.md) or from Python::

    from chatproto.conformance import CommandTarget, RunOptions, Runner, catalogue, select

    checks = select(catalogue(), ["strict"])
    report = Runner(CommandTarget("python3 server.py {port}"), checks,
                    RunOptions(profiles=("strict",))).run()
    assert report.exit_code == 0

Only the standard library and the chatproto core are used.
"""

from chatproto.adapters import BACKENDS

from ._backend_target import backend_command, backend_target
from ._catalogue import catalogue, find, select
from ._command_target import CommandTarget
from ._conn import Conn
from ._context import Settings, TestContext
from ._dialect import SPEC, VARIANTS, Dialect
from ._expectations import Expectations, ExpectationsError
from ._outcome import Outcome, Result, RunReport
from ._probe import ProbeResult, TargetUnusable, probe
from ._registry import PROFILES, Check
from ._runner import Runner, RunOptions
from ._target import RemoteTarget, Target
from ._verdicts import CheckFailed, SkipTest

__all__ = [
    "BACKENDS",
    "PROFILES",
    "SPEC",
    "VARIANTS",
    "Check",
    "CheckFailed",
    "CommandTarget",
    "Conn",
    "Dialect",
    "Expectations",
    "ExpectationsError",
    "Outcome",
    "ProbeResult",
    "RemoteTarget",
    "Result",
    "RunOptions",
    "RunReport",
    "Runner",
    "Settings",
    "SkipTest",
    "Target",
    "TargetUnusable",
    "TestContext",
    "backend_command",
    "backend_target",
    "catalogue",
    "find",
    "probe",
    "select",
]
