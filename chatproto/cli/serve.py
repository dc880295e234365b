"""``chatproto-serve``: run a chat server on one of the three backends.

Parses arguments, binds the listening socket (so that a port in use is one
clear error line for every backend), logs what the core reports, and hands the
socket to the chosen adapter. Owns no protocol logic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import socket
import sys

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]
from collections.abc import Sequence

from chatproto import (
    CloseReason,
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
    ServerEvent,
    UserLeft,
    UserLoggedIn,
)

__all__ = ["LoggingObserver", "main"]

log = logging.getLogger("chatproto.serve")

_EXTRAS = {
    "anyio": ("anyio", "chatproto[anyio]"),
    "trio": ("trio", "chatproto[trio]"),
    "gevent": ("gevent", "chatproto[gevent]"),
    "uvloop": ("uvloop", "chatproto[uvloop]"),
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

    def __init__(self) -> None:
        #: Messages are logged at DEBUG only: below it, the core need not report them.
        self.message_events = log.isEnabledFor(logging.DEBUG)
        self._peers: dict[ConnId, str] = {}
        self._users: dict[ConnId, str] = {}
        #: Connections refused since the last one admitted (an episode).
        self._refused = 0

    def listening(self, host: str, port: int) -> None:
        log.debug("accepting on %s", _address(host, port))

    def connected(self, conn: ConnId, peer: str) -> None:
        if self._refused:
            log.info("accepting again after refusing %d connections", self._refused)
            self._refused = 0
        self._peers[conn] = peer
        log.info("connect conn=%d peer=%s", conn, peer)

    def refused(self, refusal: ConnectionRefused, peer: str) -> None:
        self._refused += 1
        if self._refused == 1 and refusal.reason is CloseReason.SERVER_FULL:
            log.warning("server full: refusing connections (first: peer=%s)", peer)

    def accept_paused(self, error: OSError) -> None:
        log.warning(
            "cannot accept connections: %s; backing off and retrying",
            error.strerror or error,
        )

    def accept_resumed(self, failures: int) -> None:
        log.info("accepting connections again after %d failed attempts", failures)

    def stopping(self, connections: int) -> None:
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
                self._peers.pop(event.conn, None)
                self._users.pop(event.conn, None)
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
                log.warning(
                    "flood: delaying lines of conn=%d peer=%s user=%s", event.conn, peer, user
                )
            elif isinstance(event, InputPaused):
                log.debug("input paused conn=%d cause=%s", event.conn, event.cause.value)
            elif isinstance(event, InputResumed):
                log.debug("input resumed conn=%d", event.conn)
            elif isinstance(event, DirectMessageSent):
                log.debug("dm conn=%d user=%s to=%s", event.conn, event.sender, event.recipient)


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    p = argparse.ArgumentParser(
        prog="chatproto-serve",
        description="Run a chatproto chat server (docs/protocol.md) on a TCP port.",
    )
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="port (like --port)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port; 0 picks a free one (default 4000)")
    p.add_argument(
        "--backend", choices=("threading", "anyio", "gevent"), default="anyio", help="default anyio"
    )
    p.add_argument(
        "--anyio-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="for --backend anyio",
    )
    p.add_argument("--uvloop", action="store_true", help="run anyio's asyncio on uvloop")
    p.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout, metavar="S")
    p.add_argument("--max-clients", type=int, default=defaults.max_clients, metavar="N")
    p.add_argument("--max-line-bytes", type=int, default=defaults.max_line_bytes, metavar="N")
    p.add_argument(
        "--max-outbound-bytes", type=int, default=defaults.max_outbound_bytes, metavar="N"
    )
    p.add_argument("--close-timeout", type=float, default=defaults.close_timeout, metavar="S")
    p.add_argument(
        "--flood-rate",
        type=float,
        default=defaults.flood_rate,
        metavar="N",
        help="lines per second a connection may send, sustained; more are delayed, "
        "never dropped; 0 turns flood control off",
    )
    p.add_argument(
        "--flood-burst",
        type=int,
        default=defaults.flood_burst,
        metavar="N",
        help="lines a connection may send at once before --flood-rate applies",
    )
    p.add_argument(
        "--backpressure-timeout",
        type=float,
        default=defaults.backpressure_timeout,
        metavar="S",
        help="longest a congested reader that takes nothing holds its senders back; "
        "0 turns backpressure off",
    )
    p.add_argument(
        "--slow-consumer-timeout",
        type=float,
        default=defaults.slow_consumer_timeout,
        metavar="S",
        help="a congested reader that takes nothing for this long is dropped",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="default info: one line per connect, login, disconnect and error; "
        "debug adds one per message (and costs a little speed)",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is not None and args.port_arg is not None and args.port != args.port_arg:
        parser.error("give the port once: either PORT or --port")
    port = args.port if args.port is not None else args.port_arg
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
        parser.error(str(exc))
    if args.backend != "anyio" and (args.uvloop or args.anyio_backend != "asyncio"):
        parser.error("--uvloop and --anyio-backend go with --backend anyio")
    needed = [args.backend] if args.backend != "threading" else []
    if args.backend == "anyio" and args.anyio_backend == "trio":
        needed.append("trio")
    if args.uvloop:
        needed.append("uvloop")
    if not all(_require(extra) for extra in needed):
        return 1

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        sock = socket.create_server(
            (args.host, port), backlog=4096, family=_family(args.host), reuse_port=False
        )
    except OSError as exc:
        print(
            f"chatproto-serve: cannot listen on {args.host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    _raise_fd_limit()
    bound_host, bound_port = sock.getsockname()[:2]
    flavour = args.backend
    if args.backend == "anyio":
        flavour += f"/{args.anyio_backend}" + ("+uvloop" if args.uvloop else "")
    print(f"chatproto-serve listening on {bound_host}:{bound_port} (backend {flavour})", flush=True)
    observer = LoggingObserver()
    adapter = importlib.import_module(f"chatproto.adapters.{args.backend}")
    if args.backend == "anyio":
        adapter.run(
            sock,
            config,
            observer=observer,
            anyio_backend=args.anyio_backend,
            use_uvloop=args.uvloop,
        )
    else:
        adapter.run(sock, config, observer=observer)
    log.info("stopped")
    return 0


def _address(host: str, port: int) -> str:
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
