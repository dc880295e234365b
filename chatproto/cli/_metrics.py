"""``chatproto-serve --metrics HOST:PORT``: a Prometheus endpoint for the server.

Owns the metrics: what is counted, where it comes from, and how a scrape
reads it. Nothing is parsed from the wire and the adapters count nothing:

* the core's totals and sizes (:meth:`chatproto.ChatServer.counters`: lines
  in by command, lines and bytes out, connections, users, queued bytes,
  inputs paused by cause), read when a scrape asks;
* the events the core reports and the adapter's hooks, counted by
  :class:`MetricsObserver`, which passes every one on to the logging
  observer it wraps (connections accepted, refusals, logins, errors by token,
  disconnects by reason, flood episodes, input pauses, accept back-offs).

Without ``--metrics`` none of this exists: the server runs the logging
observer alone, and ``prometheus_client`` is never imported. With it, the
endpoint runs in prometheus_client's own HTTP thread; a scrape reads plain
integers (and copies of small dicts), each an atomic read for the
interpreter, so it never takes a lock the server's loop would wait on.
docs/operations.md shows a scrape and what each metric means.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatproto import (
    COMMAND_LABELS,
    CloseReason,
    CommandRejected,
    ConnectionClosed,
    ConnectionRefused,
    ConnId,
    ErrorCode,
    FloodLimited,
    InputPaused,
    PauseCause,
    ServerCounters,
    ServerEvent,
    UserLoggedIn,
)

if TYPE_CHECKING:
    from chatproto.adapters import ServerObserver

__all__ = [
    "MetricsEndpoint",
    "MetricsObserver",
    "MetricsUnavailableError",
    "add_metrics_option",
    "parse_address",
    "start_metrics",
]

#: How a connection can be turned away (``chatproto_connections_refused_total``).
_REFUSALS = (CloseReason.SERVER_FULL.value, CloseReason.SHUTDOWN.value)
#: How a served connection can end (a refusal is not a disconnect).
_DISCONNECTS = tuple(r.value for r in CloseReason if r is not CloseReason.SERVER_FULL)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as an address; for ``--metrics``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics HOST:PORT`` to ``parser``."""
    parser.add_argument(
        "--metrics",
        type=_address_option,
        metavar="HOST:PORT",
        default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off; "
        "needs chatproto[metrics])",
    )


def _address_option(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def start_metrics(
    address: tuple[str, int], inner: ServerObserver, info: dict[str, str]
) -> tuple[MetricsObserver, MetricsEndpoint]:
    """The counting observer around ``inner``, and its endpoint, serving.

    Prints one line and raises ``SystemExit(1)`` when prometheus_client is
    missing or the address cannot be bound.
    """
    observer = MetricsObserver(inner)
    host, port = address
    try:
        return observer, MetricsEndpoint.start(observer, host, port, info)
    except MetricsUnavailableError as exc:
        print(f"chatproto-serve: {exc}", file=sys.stderr)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(
            f"chatproto-serve: cannot serve metrics on {shown}: {exc.strerror or exc}",
            file=sys.stderr,
        )
    raise SystemExit(1)


class MetricsObserver:
    """A :class:`~chatproto.adapters.ServerObserver` that counts, then passes on to ``inner``.

    Every count is a plain integer, incremented on the adapter's own thread;
    a scrape reads them from another (see the module's docstring).
    """

    def __init__(self, inner: ServerObserver) -> None:
        self.inner = inner
        #: The inner observer decides whether the core reports every chat line.
        self.message_events = inner.message_events
        #: The core's counters, once the adapter built it.
        self.counters: Callable[[], ServerCounters] | None = None
        self.accepted = 0
        self.refusals = dict.fromkeys(_REFUSALS, 0)
        self.disconnects = dict.fromkeys(_DISCONNECTS, 0)
        # server-full is a refusal, never the answer to a command.
        self.errors = {c.value: 0 for c in ErrorCode if c is not ErrorCode.SERVER_FULL}
        self.logins = 0
        self.pauses = {cause.value: 0 for cause in PauseCause}
        self.flood_episodes = 0
        self.accept_backoffs = 0

    # ------------------------------------------------------- the observer

    def listening(self, host: str, port: int) -> None:
        self.inner.listening(host, port)

    def serving(self, counters: Callable[[], ServerCounters]) -> None:
        self.counters = counters
        self.inner.serving(counters)

    def connected(self, conn: ConnId, peer: str) -> None:
        self.accepted += 1
        self.inner.connected(conn, peer)

    def refused(self, refusal: ConnectionRefused, peer: str) -> None:
        self.refusals[refusal.reason.value] += 1
        self.inner.refused(refusal, peer)

    def accept_paused(self, error: OSError) -> None:
        self.accept_backoffs += 1
        self.inner.accept_paused(error)

    def accept_resumed(self, failures: int) -> None:
        self.inner.accept_resumed(failures)

    def events(self, events: list[ServerEvent]) -> None:
        for event in events:
            kind = type(event)
            if kind is CommandRejected:
                self.errors[event.code.value] += 1  # type: ignore[union-attr]
            elif kind is ConnectionClosed:
                reason = event.reason  # type: ignore[union-attr]
                # A refusal carried over TLS closes like a connection: it
                # was counted as refused.
                if reason is not CloseReason.SERVER_FULL:
                    self.disconnects[reason.value] += 1
            elif kind is UserLoggedIn:
                self.logins += 1
            elif kind is InputPaused:
                self.pauses[event.cause.value] += 1  # type: ignore[union-attr]
            elif kind is FloodLimited:
                self.flood_episodes += 1
        self.inner.events(events)

    def signal_received(self, signum: int) -> None:
        self.inner.signal_received(signum)

    def stopping(self, connections: int) -> None:
        self.inner.stopping(connections)

    # ------------------------------------------------------------ a scrape

    def families(self, info: dict[str, str]) -> Iterator[Any]:
        """The metrics as prometheus_client metric families (called by a scrape)."""
        from prometheus_client.core import (  # noqa: PLC0415 - optional extra
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        def counter(name: str, text: str, value: int) -> Any:
            return CounterMetricFamily(f"chatproto_{name}", text, value=value)

        def counters_by(name: str, text: str, label: str, values: dict[str, int]) -> Any:
            family = CounterMetricFamily(f"chatproto_{name}", text, labels=[label])
            for key, value in dict(values).items():  # a copy: the server goes on counting
                family.add_metric([key], value)
            return family

        def gauge(name: str, text: str, value: int) -> Any:
            return GaugeMetricFamily(f"chatproto_{name}", text, value=value)

        yield InfoMetricFamily("chatproto_server", "What this server runs.", value=info)
        yield counter(
            "connections_accepted", "Connections accepted and served, since start.", self.accepted
        )
        yield counters_by(
            "connections_refused",
            "Connections turned away: the server was full, or shutting down.",
            "reason",
            self.refusals,
        )
        yield counters_by(
            "disconnects", "Served connections that ended, by reason.", "reason", self.disconnects
        )
        yield counter("logins", "Successful LOGINs.", self.logins)
        yield counters_by(
            "errors", "ERR replies, by token (docs/protocol.md §9).", "token", self.errors
        )
        yield counters_by(
            "input_pauses",
            "Times the server stopped reading a connection, by cause (flow control).",
            "cause",
            self.pauses,
        )
        yield counter(
            "flood_episodes",
            "Episodes of a connection sending faster than --flood-rate (its lines delayed).",
            self.flood_episodes,
        )
        yield counter(
            "accept_backoffs",
            "Episodes of accept failing for lack of descriptors or memory.",
            self.accept_backoffs,
        )
        if self.counters is None:
            return  # no core yet (a scrape in the first instant)
        now = self.counters()
        yield counters_by(
            "lines_in",
            "Lines executed, by command; invalid: refused before they meant anything.",
            "command",
            {label: now.lines_in[label] for label in COMMAND_LABELS},
        )
        yield counter(
            "lines_out", "Lines queued for clients: replies, deliveries, notices.", now.lines_out
        )
        yield counter("bytes_out", "Bytes handed to the network.", now.bytes_out)
        yield gauge(
            "connections_open", "Connections open now (closing ones included).", now.connections
        )
        yield gauge("users", "Users logged in now.", now.users)
        yield gauge(
            "queued_bytes",
            "Bytes queued for clients, not yet taken by the network.",
            now.queued_bytes,
        )
        paused = GaugeMetricFamily(
            "chatproto_inputs_paused",
            "Connections whose input the server does not read now, by cause.",
            labels=["cause"],
        )
        for cause, value in now.paused.items():
            paused.add_metric([cause], value)
        yield paused


class MetricsUnavailableError(RuntimeError):
    """prometheus_client is not installed."""


@dataclass(frozen=True)
class MetricsEndpoint:
    """The running endpoint: its address, and how to stop it."""

    host: str
    port: int
    _server: Any

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @classmethod
    def start(
        cls, observer: MetricsObserver, host: str, port: int, info: dict[str, str]
    ) -> MetricsEndpoint:
        """Serve ``observer``'s metrics (and the process's) on ``host:port``, in a thread.

        Raises :class:`MetricsUnavailableError` without prometheus_client and
        ``OSError`` when the address cannot be bound.
        """
        try:
            from prometheus_client import (  # noqa: PLC0415 - optional extra
                CollectorRegistry,
                GCCollector,
                PlatformCollector,
                ProcessCollector,
                start_http_server,
            )
        except ImportError:
            raise MetricsUnavailableError(
                "--metrics needs prometheus-client, which is not installed; "
                "install it with: pip install 'chatproto[metrics]'"
            ) from None
        # A registry of our own, not prometheus_client's global one.
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(observer, info))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        server, _thread = start_http_server(port, addr=host, registry=registry)
        return cls(host, int(server.server_port), server)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class _Collector:
    """What prometheus_client's registry asks at each scrape."""

    def __init__(self, observer: MetricsObserver, info: dict[str, str]) -> None:
        self.observer = observer
        self.info = info

    def collect(self) -> Iterator[Any]:
        return self.observer.families(self.info)
