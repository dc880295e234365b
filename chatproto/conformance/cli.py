"""``chatproto-conformance``: the command line of the conformance suite.

Subcommands: ``run`` (test a server), ``probe`` (fingerprint its dialect),
``list`` (the catalogue), ``explain ID`` (what a test checks, with a live
example transcript against our reference server) and ``matrix`` (compare JSON
reports on one HTML page). Owns argument parsing and wiring; the work is done
by the runner, the probe and the reporters.

Exit codes: 0 conformant for the profile, 1 failures, 2 usage error, 3 target
unusable. A server the suite started never outlives it: SIGTERM, SIGINT and
SIGHUP end the run through the same clean-up as a normal end, and output into
a closed pipe (``| head``) ends it quietly (see :mod:`._signals`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chatproto.adapters import BACKENDS
from chatproto.cli._version import add_version_option

from ._backend_target import backend_target
from ._catalogue import catalogue, find, select
from ._cluster_target import add_cluster_arguments, make_cluster_target
from ._command_target import CommandTarget
from ._dialect import VARIANTS
from ._expectations import Expectations, ExpectationsError
from ._matrix import render_matrix
from ._outcome import EXIT_FAILURES, EXIT_OK, EXIT_UNUSABLE, EXIT_USAGE, Result, RunReport
from ._probe import ProbeResult, TargetUnusable, probe
from ._registry import PROFILES
from ._report_json import read_json, write_json
from ._report_junit import write_junit
from ._report_markdown import write_markdown
from ._report_text import TextReporter, format_catalogue, format_dialect
from ._runner import Runner, RunOptions
from ._signals import EXIT_PIPE, Stopped, quiet_broken_pipe, stop_on_signals
from ._target import RemoteTarget, Target, flood_control_for, parse_target_url
from ._tls_options import TlsOptionError, add_tls_options, remote_tls, suite_certificate

__all__ = ["build_parser", "glue_command_lines", "main"]

#: Options whose value is itself (part of) a command line, so often starts with "-".
_COMMAND_LINE_OPTIONS = frozenset({"--serve-args", "--server-cmd", "--flood-off"})

EPILOG = """\
targets (give exactly one):
  tcp://HOST:PORT           a server that is already running (tls://HOST:PORT: over TLS,
                            verified with --tls-ca FILE, the system's CAs, or --insecure)
  --server-cmd 'CMD'        a command the suite runs through the shell; placeholders
                            {port} {host} {idle_timeout} {max_clients}; PORT and HOST
                            are set in its environment; with --tls, {tls_cert} {tls_key}
  --backend NAME            one of our own backends (threading, anyio, gevent); with
                            --tls it serves TLS with a certificate the suite makes
                            (flood control: off for core, strict and robust, whose
                            tests flood on purpose; load keeps the defaults and turns
                            it off only for the tests that need it; see --flood-off)

exit codes: 0 conformant, 1 failures, 2 usage error, 3 target unusable
"""


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", help="tcp://HOST:PORT or tls://HOST:PORT of a server")
    p.add_argument("--server-cmd", metavar="CMD", help="shell command that starts the server")
    p.add_argument("--backend", choices=BACKENDS, help="start chatproto-serve with this backend")
    p.add_argument("--anyio-backend", choices=("asyncio", "trio"), help="with --backend anyio")
    p.add_argument(
        "--serve-args", default="", metavar="ARGS", help="extra arguments for chatproto-serve"
    )
    p.add_argument("--cwd", help="working directory for --server-cmd")
    p.add_argument(
        "--flood-off",
        default="",
        metavar="ARGS",
        help="arguments that turn the --server-cmd server's flood control off; appended to "
        "its command where the profile or test floods on purpose (our backends: --flood-rate 0)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address the started server binds (default 127.0.0.1)"
    )
    p.add_argument(
        "--port-from-output",
        action="store_true",
        help="the server picks its port and prints HOST:PORT (the suite does not choose {port})",
    )
    p.add_argument("--startup-timeout", type=float, default=20.0, metavar="S", help="default 20")
    add_cluster_arguments(p)
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="longest wait for an expected line (default 5)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        metavar="S",
        help="a late line is judged after S seconds if a fresh connection is answered (default 1)",
    )
    add_tls_options(p)


def glue_command_lines(argv: Sequence[str]) -> list[str]:
    """``--serve-args '--uvloop'`` as ``--serve-args=--uvloop``, so argparse takes it.

    argparse reads a value that starts with ``-`` as an option of its own and
    refuses ``--serve-args --uvloop`` ("expected one argument") unless the two
    are glued with ``=``. The values of :data:`_COMMAND_LINE_OPTIONS` are
    command lines, which usually start so; the word after them is always
    their value. Nothing after ``--`` is touched.
    """
    glued: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            glued += [word, *words]
            break
        value = next(words, None) if word in _COMMAND_LINE_OPTIONS else None
        glued.append(word if value is None else f"{word}={value}")
    return glued


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="chatproto-conformance",
        description="Test a chat server against the chatproto protocol (docs/protocol.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the suite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    _add_target(run)
    run.add_argument(
        "--profile",
        action="append",
        choices=PROFILES,
        help="core (default), strict, robust, load; repeatable",
    )
    run.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="run only tests matching (ID or slug)",
    )
    run.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB", help="skip tests matching"
    )
    run.add_argument(
        "--expectations", metavar="FILE", help="known failures: 'ID-GLOB reason' per line"
    )
    run.add_argument(
        "--allow-slow", action="store_true", help="run idle tests against the server's own timeout"
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="the server's own idle timeout, for --allow-slow (default 60)",
    )
    run.add_argument(
        "--short-idle-timeout",
        type=float,
        default=1.0,
        metavar="S",
        help="{idle_timeout} for idle tests (default 1)",
    )
    run.add_argument(
        "--max-line-bytes",
        type=int,
        default=4096,
        metavar="N",
        help="the server's line limit (default 4096)",
    )
    run.add_argument(
        "--absence",
        type=float,
        default=0.3,
        metavar="S",
        help="labelled absence waits (default 0.3)",
    )
    run.add_argument(
        "--budget-factor",
        type=float,
        default=1.0,
        metavar="X",
        help="scale every test's overall deadline",
    )
    run.add_argument("--name", help="implementation name in reports")
    run.add_argument("--json", metavar="FILE", help="write a JSON report")
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--markdown", metavar="FILE", help="write a Markdown report")
    run.add_argument("-v", "--verbose", action="store_true", help="print every transcript")
    run.add_argument(
        "-q", "--quiet", action="store_true", help="print only failures and the summary"
    )
    run.add_argument("--colour", choices=("auto", "always", "never"), default="auto")

    pr = sub.add_parser(
        "probe",
        help="fingerprint a server's dialect",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(pr)
    pr.add_argument("-v", "--verbose", action="store_true", help="print the probe's transcript")

    ls = sub.add_parser("list", help="print the catalogue")
    ls.add_argument("--profile", action="append", choices=PROFILES, help="only these profiles")
    ls.add_argument(
        "--variants", action="store_true", help="also list the lenient dialect variants"
    )

    ex = sub.add_parser("explain", help="what a test checks, with an example transcript")
    ex.add_argument("test_id", metavar="ID")
    ex.add_argument(
        "--no-example", action="store_true", help="do not run it against the reference server"
    )

    mx = sub.add_parser("matrix", help="compare JSON reports on one HTML page")
    mx.add_argument("reports", nargs="+", metavar="REPORT.json")
    mx.add_argument("-o", "--output", required=True, metavar="FILE.html")
    mx.add_argument("--title", default="chatproto conformance matrix")
    add_version_option(parser)
    return parser


class UsageError(Exception):
    """Bad arguments (exit code 2)."""


def make_target(args: argparse.Namespace) -> Target:
    """The target the arguments name; :class:`UsageError` unless exactly one."""
    try:
        cluster = make_cluster_target(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if cluster is not None:
        return cluster
    given = [x for x in (args.target, args.server_cmd, args.backend) if x]
    if len(given) != 1:
        raise UsageError(
            "give exactly one target: tcp://HOST:PORT, --server-cmd CMD or --backend NAME"
        )
    if args.anyio_backend and args.backend != "anyio":
        raise UsageError("--anyio-backend goes with --backend anyio")
    try:
        if args.target:
            try:
                url_tls, host, port = parse_target_url(args.target)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            return RemoteTarget(host, port, tls=remote_tls(args, url_tls))
        certificate = suite_certificate(args, args.server_cmd)
    except TlsOptionError as exc:
        raise UsageError(str(exc)) from None
    profiles = getattr(args, "profile", None) or ["core"]
    if args.backend:
        return backend_target(
            args.backend,
            profiles=profiles,
            anyio_backend=args.anyio_backend,
            extra=args.serve_args,
            host=args.host,
            startup_timeout=args.startup_timeout,
            certificate=certificate,
        )
    return CommandTarget(
        args.server_cmd,
        host=args.host,
        cwd=args.cwd,
        port_from_output=args.port_from_output,
        startup_timeout=args.startup_timeout,
        flood_off=args.flood_off,
        flood_control=flood_control_for(profiles),
        certificate=certificate,
    )


def _run(args: argparse.Namespace) -> int:
    profiles = tuple(dict.fromkeys(args.profile or ["core"]))
    try:
        expectations = Expectations.load(args.expectations) if args.expectations else Expectations()
        expectations.check_known([c.id for c in catalogue()])
    except ExpectationsError as exc:
        raise UsageError(str(exc)) from None
    target = make_target(args)
    checks = select(catalogue(), profiles, args.only, args.exclude)
    if not checks:
        raise UsageError("no test matches the profile and --only/--exclude given")
    colour = {"auto": None, "always": True, "never": False}[args.colour]
    out = TextReporter(sys.stdout, colour=colour, verbose=args.verbose)
    options = RunOptions(
        profiles=profiles,
        expectations=expectations,
        allow_slow=args.allow_slow,
        assumed_idle_timeout=args.idle_timeout,
        short_idle_timeout=args.short_idle_timeout,
        line_timeout=args.timeout,
        settle=args.settle,
        absence=args.absence,
        max_line_bytes=args.max_line_bytes,
        implementation=args.name or "",
        budget_factor=args.budget_factor,
    )
    out.header(target.description, list(profiles), len(checks))

    def on_probe(found: ProbeResult) -> None:
        if not args.quiet:
            out.probe(found.dialect, found.seconds)

    def on_result(result: Result) -> None:
        if not args.quiet or result.outcome.bad:
            out.result(result)

    report = Runner(target, checks, options, on_probe=on_probe, on_result=on_result).run()
    out.details(report)
    out.summary(report)
    for path, writer in (
        (args.json, write_json),
        (args.junit, write_junit),
        (args.markdown, write_markdown),
    ):
        if path:
            writer(report, path)
    return report.exit_code


def _probe(args: argparse.Namespace) -> int:
    target = make_target(args)
    try:
        target.start()
        found = probe(target.address, timeout=args.timeout, settle=args.settle, tls=target.tls)
    except TargetUnusable as exc:
        print(f"target unusable: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        target.stop()
    print(f"dialect of {target.description} ({found.seconds:.2f} s):")
    for line in format_dialect(found.dialect):
        print(line)
    if found.deadlock is not None:
        print(f"DEADLOCK: {found.deadlock}")
    if args.verbose:
        print("\ntranscript:")
        for line in found.transcript.lines():
            print(f"  {line}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    checks = catalogue()
    if args.profile:
        checks = select(checks, args.profile)
    for line in format_catalogue(checks):
        print(line)
    print(f"\n{len(checks)} tests")
    if args.variants:
        print("\nlenient dialect variants (core and robust profiles):")
        for name, meaning in VARIANTS.items():
            print(f"  {name:<28} {meaning}")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    check = find(catalogue(), args.test_id)
    if check is None:
        raise UsageError(f"no test {args.test_id!r}; see 'chatproto-conformance list'")
    print(f"{check.label}  (§{check.section}, area {check.area_name})")
    print(
        f"profiles: {', '.join(p for p in PROFILES if p in check.profiles)}"
        + (f"; needs: {', '.join(sorted(check.needs))}" if check.needs else "")
    )
    print()
    print(check.title)
    if check.doc:
        print()
        print(check.doc)
    if args.no_example:
        return EXIT_OK
    # A live example: the test itself, against our own threading backend.
    profile = "core" if "core" in check.profiles else sorted(check.profiles)[0]
    target = backend_target("threading", profiles=(profile,))
    report = Runner(target, [check], RunOptions(profiles=(profile,))).run()
    print()
    if report.unusable is not None or not report.results:
        print(f"(no example: the reference server could not be started: {report.unusable})")
        return EXIT_OK
    result = report.results[0]
    print(f"example transcript (against chatproto's threading server, {result.verdict}):")
    print("  t seconds, client, > sent / < received / * note")
    for line in result.transcript:
        print(f"  {line}")
    return EXIT_OK


def _matrix(args: argparse.Namespace) -> int:
    reports: list[RunReport] = []
    for path in args.reports:
        try:
            reports.append(read_json(path))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    Path(args.output).write_text(render_matrix(reports, args.title), "utf-8")
    print(f"wrote {args.output}: {len(reports)} implementations")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(glue_command_lines(sys.argv[1:] if argv is None else argv))
    handlers = {"run": _run, "probe": _probe, "list": _list, "explain": _explain, "matrix": _matrix}
    try:
        with stop_on_signals():
            code = handlers[args.command](args)
            sys.stdout.flush()
            return code
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"chatproto-conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        quiet_broken_pipe()
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURES
    except Stopped as stopped:
        print(f"stopped by {stopped}", file=sys.stderr)
        return 128 + stopped.signum


if __name__ == "__main__":
    sys.exit(main())
