"""``chatproto-bench``: the command line of the load generator.

Owns the arguments, their help, and where the output goes: live progress on
stderr, the summary table (or with ``--json`` one JSON object) on stdout.
Exit status: 0 measured, 1 the server failed (nobody could log in, a worker
gave up), 2 bad arguments, 130 interrupted (Ctrl-C: one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from chatproto.cli._version import add_version_option

from ._config import SCENARIOS, BenchConfig
from ._report import render_table
from ._runner import run_bench

__all__ = ["main"]

_EPILOG = """\
scenarios:
  fanout      N clients log in, K of them send MSG in a closed loop (each keeps
              --window messages unacknowledged); deliveries/s and end-to-end
              latency (p50/p99/max) from a timestamp carried in the text.
  connect     opens N clients (--conc at a time), logins/s and login latency,
              holds them --duration s reading everything, then every client
              PINGs at once: how many a server holds, and how well.
  pingpong    N clients, each with one PING outstanding: replies/s, latency.
  slowreader  like fanout, but one of the N clients logs in and never reads:
              what happens to it, to the others' delivery rate, and (with
              --server-pid) to the server's memory.
  idle        opens N connections that stay idle (each answers one PING, so
              the server has really taken it; --idle-login: they log in) and
              holds them for --warmup + --duration s. In the measured window
              a probe client connects and logs in every --probe-interval s
              (connect to OK, p50/max), and --room R users run a fanout
              beside them (from the start of the warm-up). With
              --server-pid: the server's RSS before, with N open, and per
              connection. Run the same with --clients 0 for the room's rate
              without them.

A message is acknowledged (the sender may send another) when the observer
client of the sender's own process receives it (--ack observer), or every
other reading client of that process (--ack all). The first --warmup seconds
are excluded; messages sent in the window count, even if delivered while
draining. When a worker used more than 90% of a core the figures are a lower
bound of the server's capacity: the result says so.

Many connections from one machine: each process raises its open-files limit
to the hard limit; share the connections among processes (--procs) so each
stays under it, and spread them over loopback source addresses
(--source-addrs K binds to 127.0.0.2 .. 127.0.0.K+1, each with its own
ephemeral ports; Linux routes all of 127.0.0.0/8 to the loopback). Run the
server with an --idle-timeout longer than the run.
For example, 19,000 idle connections and a 100-user room beside them:

  chatproto-serve --port 4000 --idle-timeout 3600 --max-clients 30000 &
  chatproto-bench idle --port 4000 --server-pid $! --clients 19000 \\
      --procs 2 --source-addrs 4 --room 100 --duration 10
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public for the docs and the tests)."""
    p = argparse.ArgumentParser(
        prog="chatproto-bench",
        description="Load generator for chatproto servers (and third-party ones).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = BenchConfig("fanout")
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--more-ports",
        default="",
        metavar="P,P",
        help="other nodes of the same cluster: clients go to --port and these in turn",
    )
    p.add_argument("--clients", type=int, default=d.clients, help="clients in all (%(default)s)")
    p.add_argument("--senders", type=int, help="senders (fanout, slowreader; default min(10, N))")
    p.add_argument("--duration", type=float, default=d.duration, help="measured seconds")
    p.add_argument("--warmup", type=float, default=d.warmup, help="seconds before measuring")
    p.add_argument(
        "--drain", type=float, default=d.drain, help="max seconds to wait for stragglers"
    )
    p.add_argument("--procs", type=int, default=d.procs, help="worker processes (%(default)s)")
    p.add_argument("--window", type=int, default=d.window, help="messages in flight per sender")
    p.add_argument("--ack", choices=("observer", "all"), default=d.ack)
    p.add_argument("--ack-timeout", type=float, default=d.ack_timeout)
    p.add_argument("--payload", type=int, default=d.payload, help="bytes of MSG text")
    p.add_argument(
        "--batch-us",
        type=int,
        help="nap after light loop iterations so lines coalesce (default 100, pingpong 0)",
    )
    p.add_argument("--conc", type=int, default=d.conc, help="connects in progress at once")
    p.add_argument("--login-timeout", type=float, default=d.login_timeout)
    p.add_argument("--prefix", help="login names are <prefix><proc>_<index> (default random)")
    p.add_argument("--server-pid", type=int, help="read the server's RSS and CPU from /proc")
    p.add_argument("--slow-rcvbuf", type=int, default=d.slow_rcvbuf)
    p.add_argument("--slow-drain", type=float, default=d.slow_drain)
    p.add_argument("--burst-timeout", type=float, default=d.burst_timeout)
    p.add_argument(
        "--source-addrs",
        type=int,
        default=d.source_addrs,
        metavar="K",
        help="bind to loopback source addresses 127.0.0.2 .. 127.0.0.K+1 in turn (0: no)",
    )
    p.add_argument("--room", type=int, default=d.room, help="idle: users of a fanout beside them")
    p.add_argument("--idle-login", action="store_true", help="idle: log the idle ones in too")
    p.add_argument(
        "--probe-interval",
        type=float,
        default=d.probe_interval,
        help="idle: seconds between two probe logins (%(default)s)",
    )
    p.add_argument("--label", default="", help="free text copied into the result")
    p.add_argument("--tls", action="store_true", help="speak TLS (the certificate is verified)")
    p.add_argument("--tls-ca", metavar="FILE", help="with --tls: trust this CA (PEM)")
    p.add_argument(
        "--insecure", action="store_true", help="with --tls: do not verify the certificate"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--quiet", "-q", action="store_true", help="no live progress")
    add_version_option(p)
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A validated :class:`BenchConfig` from parsed arguments."""
    extra = {} if args.prefix is None else {"prefix": args.prefix}
    return BenchConfig(
        scenario=args.scenario,
        host=args.host,
        port=args.port,
        more_ports=tuple(int(p) for p in args.more_ports.split(",") if p),
        clients=args.clients,
        senders=args.senders,
        duration=args.duration,
        warmup=args.warmup,
        drain=args.drain,
        procs=args.procs,
        window=args.window,
        ack=args.ack,
        ack_timeout=args.ack_timeout,
        payload=args.payload,
        batch_us=args.batch_us,
        conc=args.conc,
        login_timeout=args.login_timeout,
        server_pid=args.server_pid,
        slow_rcvbuf=args.slow_rcvbuf,
        slow_drain=args.slow_drain,
        burst_timeout=args.burst_timeout,
        source_addrs=args.source_addrs,
        room=args.room,
        idle_login=args.idle_login,
        probe_interval=args.probe_interval,
        label=args.label,
        tls=args.tls,
        tls_ca=args.tls_ca,
        insecure=args.insecure,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one scenario; see ``chatproto-bench --help``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = run_bench(cfg, progress=None if args.quiet else sys.stderr)
    except KeyboardInterrupt:
        print("chatproto-bench: interrupted", file=sys.stderr, flush=True)
        return 130
    if args.json:
        print(json.dumps(result, separators=(",", ":")), flush=True)
    else:
        print(render_table(result), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
