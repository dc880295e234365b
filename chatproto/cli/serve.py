"""``chatproto-serve``: run a chat server on one of the three backends.

Parses arguments (flags, or ``CHATPROTO_*`` environment variables), binds the
listening socket (so that a port in use is one clear error line for every
backend), logs what the core reports, and hands the socket to the chosen
adapter. Owns no protocol logic. docs/operations.md is the operator's guide.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import secrets
import socket
import sys

import chatproto

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]
from collections.abc import Callable, Mapping, Sequence

# The public names it uses, in the package's own (alphabetical) order.
from chatproto import (
    CloseReason,
    ClusterConfig,
    ClusterLinkChanged,
    CommandRejected,
    ConnectionClosed,
    ConnectionRefused,
    ConnId,
    DirectMessageSent,
    FloodLimited,
    InputPaused,
    InputResumed,
    MessageBroadcast,
    ServerConfig,
    ServerCounters,
    ServerEvent,
    UserLeft,
    UserLoggedIn,
)
from chatproto.adapters import BACKENDS, ServerObserver  # names only: no runtime is imported

from ._env import apply_environment
from ._logging import LOG_FORMATS, LOG_LEVELS, configure_logging
from ._metrics import add_metrics_option, start_metrics
from ._serve_tls import add_tls_options, server_tls
from ._shutdown import ShutdownSignals
from ._version import add_version_option

__all__ = ["LoggingObserver", "main"]

log = logging.getLogger("chatproto.serve")

_EXTRAS = {
    # anyio is a dependency of chatproto itself: missing, the install is broken.
    "anyio": ("anyio", "anyio>=4.0"),
    "trio": ("trio", "chatproto[trio]"),
    "gevent": ("gevent", "chatproto[gevent]"),
    "uvloop": ("uvloop", "chatproto[uvloop]"),
    "cluster": ("hiredis", "chatproto[cluster]"),
}


class LoggingObserver:
    """Logs what happens to connections, at a level that no input can amplify.

    INFO: one line per connect, login, leave and disconnect. WARNING:
    operational events, once per connection per episode (a flood being
    delayed, a slow consumer dropped) or once per episode for the whole
    server (refusing connections, accept backing off). DEBUG: every refused
    command, every message, every pause and resume of a connection's input.
    So the log a client can cause is bounded by its connections, not by the
    lines it sends (docs/limits.md).
    """

    def __init__(self, shutdown: ShutdownSignals | None = None) -> None:
        #: Messages are logged at DEBUG only: below it, the core need not report them.
        self.message_events = log.isEnabledFor(logging.DEBUG)
        self._peers: dict[ConnId, str] = {}
        self._users: dict[ConnId, str] = {}
        #: Connections refused since the last one admitted (an episode).
        self._refused = 0
        self._shutdown = shutdown

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet reported closed."""
        return len(self._peers)

    def listening(self, host: str, port: int) -> None:
        log.debug("accepting on %s", format_address(host, port))

    def serving(self, counters: Callable[[], ServerCounters]) -> None:
        """The core's counters are for --metrics (chatproto/cli/_metrics.py), not the log."""

    def signal_received(self, signum: int) -> None:
        """A SIGINT or SIGTERM arrived (the adapter's handler calls this first)."""
        if self._shutdown is not None:
            self._shutdown.signalled(signum)

    def connected(self, conn: ConnId, peer: str) -> None:
        if self._refused:
            log.info("server-full-over refused=%d", self._refused)
            self._refused = 0
        self._peers[conn] = peer
        log.info("connect conn=%d peer=%s", conn, peer)

    def refused(self, refusal: ConnectionRefused, peer: str) -> None:
        self._refused += 1
        if self._refused == 1 and refusal.reason is CloseReason.SERVER_FULL:
            log.warning("server-full refusing=yes first_peer=%s", peer)

    def accept_paused(self, error: OSError) -> None:
        # errno's name: one word, for the logfmt form (the JSON log's fields).
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        log.warning("accept-paused errno=%s retrying=yes", name)

    def accept_resumed(self, failures: int) -> None:
        log.info("accept-resumed failures=%d", failures)

    def stopping(self, connections: int) -> None:
        if self._shutdown is not None:
            self._shutdown.announce(connections)
        else:
            log.info("shutting down: closing %d connections", connections)

    def events(self, events: list[ServerEvent]) -> None:
        for event in events:
            peer = self._peers.get(event.conn, "?")
            user = self._users.get(event.conn, "-")
            if isinstance(event, MessageBroadcast):
                log.debug(
                    "msg conn=%d user=%s recipients=%d", event.conn, event.sender, event.recipients
                )
            elif isinstance(event, UserLoggedIn):
                self._users[event.conn] = event.name
                log.info("login conn=%d peer=%s user=%s", event.conn, peer, event.name)
            elif isinstance(event, CommandRejected):
                log.debug(
                    "error conn=%d peer=%s user=%s err=%s", event.conn, peer, user, event.code.value
                )
            elif isinstance(event, UserLeft):
                log.info(
                    "leave conn=%d peer=%s user=%s reason=%s",
                    event.conn,
                    peer,
                    event.name,
                    event.reason.value,
                )
            elif isinstance(event, ConnectionClosed):
                known = self._peers.pop(event.conn, None)
                self._users.pop(event.conn, None)
                if known is None and event.reason is CloseReason.SERVER_FULL:
                    continue  # a refusal carried over TLS: it was logged as refused
                level = (
                    logging.WARNING if event.reason is CloseReason.SLOW_CONSUMER else logging.INFO
                )
                log.log(
                    level,
                    "disconnect conn=%d peer=%s user=%s reason=%s",
                    event.conn,
                    peer,
                    user,
                    event.reason.value,
                )
            elif isinstance(event, FloodLimited):
                log.warning("flood-delayed conn=%d peer=%s user=%s", event.conn, peer, user)
            elif isinstance(event, InputPaused):
                log.debug("input-paused conn=%d cause=%s", event.conn, event.cause.value)
            elif isinstance(event, InputResumed):
                log.debug("input-resumed conn=%d", event.conn)
            elif isinstance(event, DirectMessageSent):
                log.debug("dm conn=%d user=%s to=%s", event.conn, event.sender, event.recipient)
            elif isinstance(event, ClusterLinkChanged):
                level = logging.WARNING if event.state in ("down", "waiting") else logging.INFO
                log.log(level, "cluster-link state=%s detail=%s", event.state, event.detail)


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    p = argparse.ArgumentParser(
        prog="chatproto-serve",
        description="Run a chatproto chat server (docs/protocol.md) on a TCP port.",
        epilog="Every option can also be set in the environment, as CHATPROTO_ and its "
        "name in capitals (--max-clients: CHATPROTO_MAX_CLIENTS=500, --uvloop: "
        "CHATPROTO_UVLOOP=1); a flag on the command line wins. SIGINT or SIGTERM shuts "
        "down gracefully; a second one exits at once. See docs/operations.md.",
    )
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="port (like --port)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port; 0 picks a free one (default 4000)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="anyio",
        help="runtime (default anyio; gevent needs chatproto[gevent])",
    )
    p.add_argument(
        "--anyio-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop for --backend anyio (default asyncio; trio needs chatproto[trio])",
    )
    p.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run anyio's asyncio on uvloop (default off; needs chatproto[uvloop])",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        metavar="S",
        help=f"close a connection silent for S seconds (default {defaults.idle_timeout:g})",
    )
    p.add_argument(
        "--max-clients",
        type=int,
        default=defaults.max_clients,
        metavar="N",
        help=f"refuse connections beyond N with ERR server-full (default {defaults.max_clients})",
    )
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=defaults.max_line_bytes,
        metavar="N",
        help=f"longest line accepted, newline included (default {defaults.max_line_bytes})",
    )
    p.add_argument(
        "--max-outbound-bytes",
        type=int,
        default=defaults.max_outbound_bytes,
        metavar="N",
        help="drop a client with more than N bytes queued for it "
        f"(default {defaults.max_outbound_bytes})",
    )
    p.add_argument(
        "--close-timeout",
        type=float,
        default=defaults.close_timeout,
        metavar="S",
        help="seconds a closing connection gets to take its last lines "
        f"(default {defaults.close_timeout:g})",
    )
    p.add_argument(
        "--flood-rate",
        type=float,
        default=defaults.flood_rate,
        metavar="N",
        help="lines per second a connection may send, sustained; more are delayed, "
        f"never dropped; 0 turns flood control off (default {defaults.flood_rate:g})",
    )
    p.add_argument(
        "--flood-burst",
        type=int,
        default=defaults.flood_burst,
        metavar="N",
        help="lines a connection may send at once before --flood-rate applies "
        f"(default {defaults.flood_burst})",
    )
    p.add_argument(
        "--backpressure-timeout",
        type=float,
        default=defaults.backpressure_timeout,
        metavar="S",
        help="longest a congested reader that takes nothing holds its senders back; "
        f"0 turns backpressure off (default {defaults.backpressure_timeout:g})",
    )
    p.add_argument(
        "--slow-consumer-timeout",
        type=float,
        default=defaults.slow_consumer_timeout,
        metavar="S",
        help="a congested reader that takes nothing for this long is dropped "
        f"(default {defaults.slow_consumer_timeout:g})",
    )
    p.add_argument(
        "--cluster",
        metavar="redis://HOST:PORT/DB",
        help="be one node of a cluster whose users meet through this Redis (docs/cluster.md); "
        "default: none, a server alone",
    )
    p.add_argument(
        "--node-id",
        metavar="ID",
        help="this node's name in the cluster, with --cluster (default: host name and process id)",
    )
    p.add_argument(
        "--lease",
        type=float,
        default=3.0,
        metavar="S",
        help="with --cluster: a node silent this long is dead and its users leave (default 3)",
    )
    p.add_argument(
        "--log-level",
        type=str.lower,
        default="info",
        choices=LOG_LEVELS,
        help="default info: one line per connect, login, disconnect and error; "
        "debug adds one per message (and costs a little speed)",
    )
    p.add_argument(
        "--log-format",
        type=str.lower,
        default="text",
        choices=LOG_FORMATS,
        help="text (default): time, level, logger, message; json: one object per line",
    )
    add_tls_options(p)
    add_metrics_option(p)
    add_version_option(p)
    return p


def _require(extra: str) -> bool:
    module, install = _EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError:
        print(
            f"chatproto-serve: this backend needs {module}, which is not installed; "
            f"install it with: pip install '{install}'",
            file=sys.stderr,
        )
        return False
    return True


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    from_env = apply_environment(parser, os.environ if environ is None else environ)
    args = parser.parse_args(argv)
    port_flag = args.port is not None and args.port != from_env.get("port")
    if port_flag and args.port_arg is not None and args.port != args.port_arg:
        parser.error("give the port once: either PORT or --port")
    # PORT on the command line wins over CHATPROTO_PORT, as any flag does.
    port = args.port_arg if args.port_arg is not None else args.port
    port = 4000 if port is None else port
    if not 0 <= port <= 65535:
        parser.error(f"port must be 0 to 65535, got {port}")
    try:
        config = ServerConfig(
            max_line_bytes=args.max_line_bytes,
            idle_timeout=args.idle_timeout,
            max_clients=args.max_clients,
            max_outbound_bytes=args.max_outbound_bytes,
            close_timeout=args.close_timeout,
            flood_rate=args.flood_rate,
            flood_burst=args.flood_burst,
            backpressure_timeout=args.backpressure_timeout,
            slow_consumer_timeout=args.slow_consumer_timeout,
        )
    except ValueError as exc:
        sources = [f"CHATPROTO_{d.upper()}" for d in from_env if str(exc).startswith(d)]
        parser.error(str(exc) + (f" (from {sources[0]})" if sources else ""))
    if args.backend != "anyio" and (args.uvloop or args.anyio_backend != "asyncio"):
        parser.error("--uvloop and --anyio-backend go with --backend anyio")
    if args.uvloop and args.anyio_backend != "asyncio":
        parser.error("--uvloop applies to --anyio-backend asyncio only, not to trio")
    needed = [args.backend] if args.backend != "threading" else []
    if args.backend == "anyio" and args.anyio_backend == "trio":
        needed.append("trio")
    if args.uvloop:
        needed.append("uvloop")
    if args.cluster is not None:
        needed.append("cluster")
    elif args.node_id is not None:
        parser.error("--node-id goes with --cluster")
    if not all(_require(extra) for extra in needed):
        return 1
    cluster = None
    if args.cluster is not None:
        try:
            cluster = ClusterConfig.from_url(
                args.cluster,
                node_id=args.node_id or _default_node_id(),
                incarnation=secrets.token_hex(8),
                lease=args.lease,
                claim_timeout=max(5.0, args.lease * 5 / 3),
            )
        except ValueError as exc:
            parser.error(str(exc))
    tls = server_tls(args, parser)

    configure_logging(args.log_level, args.log_format)
    try:
        sock = socket.create_server(
            (args.host, port), backlog=4096, family=_family(args.host), reuse_port=False
        )
    except OSError as exc:
        print(
            f"chatproto-serve: cannot listen on {format_address(args.host, port)}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    _raise_fd_limit()
    bound_host, bound_port = sock.getsockname()[:2]
    flavour = args.backend
    if args.backend == "anyio":
        flavour += f"/{args.anyio_backend}" + ("+uvloop" if args.uvloop else "")
    node = "" if cluster is None else f", cluster node {cluster.node_id}"
    # Imported before the banner: a broken install fails before it claims to serve.
    adapter = importlib.import_module(f"chatproto.adapters.{args.backend}")
    address = format_address(bound_host, bound_port)
    shutdown = ShutdownSignals(lambda: observer.open_connections)
    observer = LoggingObserver(shutdown)
    watcher: ServerObserver = observer
    about = [f"backend {flavour}{node}"] + ([] if tls is None else ["TLS"])
    metrics = None
    if args.metrics is not None:
        tls_on = str(tls is not None).lower()
        info = {"version": chatproto.__version__, "backend": flavour, "tls": tls_on}
        watcher, metrics = start_metrics(args.metrics, observer, info)
        about.append(f"metrics {metrics.url}")
    print(f"chatproto-serve listening on {address} ({', '.join(about)})", flush=True)
    if args.backend == "anyio":
        adapter.run(
            sock,
            config,
            observer=watcher,
            anyio_backend=args.anyio_backend,
            use_uvloop=args.uvloop,
            cluster=cluster,
            tls=tls,
        )
    else:
        adapter.run(sock, config, observer=watcher, cluster=cluster, tls=tls)
    if metrics is not None:
        metrics.stop()
    log.info("stopped")
    return 0


def _default_node_id() -> str:
    """``<host>-<pid>``: unique among the processes of one cluster, readable in Redis."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "node"
    return f"{host}-{os.getpid()}"


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::]:4000``), as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _raise_fd_limit() -> None:
    """Take all the file descriptors the hard limit allows: one per connection."""
    if resource is None:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return
        log.debug("file descriptor limit raised from %d to %d", soft, hard)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


if __name__ == "__main__":
    sys.exit(main())
