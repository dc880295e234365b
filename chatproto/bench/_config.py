"""What to run: the scenario and its parameters, validated once.

Owns :class:`BenchConfig` and how its clients and senders are shared out
among worker processes. Never does I/O.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

__all__ = ["LINE_COUNTERS", "SCENARIOS", "BenchConfig", "ProcShare"]

#: The scenarios ``chatproto-bench`` knows, in the order the help lists them.
SCENARIOS = ("fanout", "connect", "pingpong", "slowreader", "idle")

#: Scenarios in which some clients send MSG and others receive it.
_BROADCAST = ("fanout", "slowreader")


def _default_prefix() -> str:
    # Names are <prefix><proc>_<index>: letters, digits and '_' only, so that
    # servers stricter than chatproto (3 to 20 alphanumerics) accept them too.
    return "b" + secrets.token_hex(2) + "_"


@dataclass(frozen=True, slots=True)
class ProcShare:
    """The part of the load one worker process runs."""

    #: Worker number, 0-based.
    proc: int
    #: Clients this process opens.
    clients: int
    #: How many of them send MSG (fanout, slowreader).
    senders: int
    #: Whether this process holds the slow reader (slowreader, process 0).
    has_slow: bool
    #: Connections this process opens and holds without taking part (idle).
    idle: int = 0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One run of one scenario against one server.

    Every field has the default the CLI shows; the times are seconds.
    """

    scenario: str
    host: str = "127.0.0.1"
    port: int = 4000
    #: Other nodes of the same cluster (docs/cluster.md): clients go to
    #: ``port`` and these in turn, by client index.
    more_ports: tuple[int, ...] = ()
    #: Clients in total, over all processes (idle: the idle connections).
    clients: int = 10
    #: Clients that send MSG (fanout, slowreader, the idle scenario's room);
    #: ``None``: min(10, all).
    senders: int | None = None
    #: Measured seconds, after the warm-up.
    duration: float = 5.0
    #: Seconds of load before measuring (excluded from every figure).
    warmup: float = 1.0
    #: After the window, how long to wait for messages still in flight.
    drain: float = 2.0
    #: Worker processes; the clients are shared out among them.
    procs: int = 1
    #: Messages each sender keeps unacknowledged (closed loop).
    window: int = 4
    #: ``observer``: a message is acknowledged when its process's observer
    #: client receives it; ``all``: when every other reading client of the
    #: sender's process has.
    ack: str = "observer"
    #: A message unacknowledged this long is released and counted as lost.
    ack_timeout: float = 3.0
    #: Bytes of MSG text (the timestamp is inside; the rest is padding).
    payload: int = 64
    #: After a light loop iteration, sleep this long so that lines coalesce
    #: per read; ``None``: 100 µs for fanout, slowreader and connect, 0 for
    #: pingpong (whose latency it would inflate).
    batch_us: int | None = None
    #: Connects and logins in progress at once.
    conc: int = 256
    #: Seconds for every client to connect and log in.
    login_timeout: float = 30.0
    #: Login names are ``<prefix><proc>_<index>``.
    prefix: str = field(default_factory=_default_prefix)
    #: The server's pid, to read its CPU and memory from /proc (optional).
    server_pid: int | None = None
    #: Receive buffer of the slow reader, small so that it fills fast.
    slow_rcvbuf: int = 8192
    #: Seconds the slow reader drains its backlog at the end.
    slow_drain: float = 2.0
    #: connect: seconds to wait for the PONG of every client in the burst.
    burst_timeout: float = 10.0
    #: Bind each connection to one of this many loopback source addresses,
    #: 127.0.0.2, 127.0.0.3, ... in turn (0: let the kernel choose). Each
    #: source address has its own ~28,000 ephemeral ports.
    source_addrs: int = 0
    #: idle: users of a fan-out room run beside the idle connections (0: none).
    room: int = 0
    #: idle: log the idle connections in too (each then gets every join
    #: notice and every room message: keep the numbers modest).
    idle_login: bool = False
    #: idle: seconds between two probe clients that connect and LOGIN.
    probe_interval: float = 1.0
    #: Free text copied into the result.
    label: str = ""
    #: Speak TLS, verifying the server against ``tls_ca`` (PEM; ``None``: the
    #: system's CAs), or not at all with ``insecure``.
    tls: bool = False
    tls_ca: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose from {SCENARIOS}")
        for port in (self.port, *self.more_ports):
            if not 0 < port < 65536:
                raise ValueError(f"port must be 1 to 65535, got {port}")
        if self.procs < 1:
            raise ValueError(f"--procs must be at least 1, got {self.procs}")
        self._check_sizes()
        self._check_source_addrs()
        for share in self.shares():
            readers = share.clients - (1 if share.has_slow else 0)
            if share.senders > readers:
                raise ValueError(
                    f"process {share.proc} would get {share.senders} senders for "
                    f"{readers} reading clients: use fewer --senders or --procs"
                )
        if self.duration <= 0 or self.warmup < 0 or self.drain < 0:
            raise ValueError("--duration must be positive; --warmup and --drain not negative")
        if self.window < 1:
            raise ValueError(f"--window must be at least 1, got {self.window}")
        if self.ack not in ("observer", "all"):
            raise ValueError(f"--ack must be observer or all, got {self.ack!r}")
        if self.payload < 16 or self.payload > 4000:
            raise ValueError(f"--payload must be 16 to 4000 bytes, got {self.payload}")
        if self.conc < 1:
            raise ValueError(f"--conc must be at least 1, got {self.conc}")
        if (self.tls_ca or self.insecure) and not self.tls:
            raise ValueError("--tls-ca and --insecure go with --tls")
        if self.tls_ca and self.insecure:
            raise ValueError("give --tls-ca or --insecure, not both")
        allowed = all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in self.prefix)
        if not self.prefix or not allowed:
            raise ValueError(f"--prefix must be ASCII letters, digits or _, got {self.prefix!r}")
        if len(self.prefix) + 12 > 32:
            raise ValueError("--prefix is too long for a 32-character username")
        if self.probe_interval <= 0:
            raise ValueError(f"--probe-interval must be positive, got {self.probe_interval}")

    def _check_sizes(self) -> None:
        if self.scenario == "idle":
            if self.clients < 0 or self.room < 0:
                raise ValueError("--clients and --room must not be negative")
            if self.room and self.room < 2 * self.procs:
                raise ValueError(
                    f"a room with --procs {self.procs} needs at least {2 * self.procs} "
                    f"users, got --room {self.room}"
                )
        else:
            minimum = self.procs * (2 if self.scenario in _BROADCAST else 1)
            if self.scenario == "slowreader":
                minimum += 1
            if self.clients < minimum:
                raise ValueError(
                    f"{self.scenario} with --procs {self.procs} needs at least {minimum} "
                    f"clients, got {self.clients}"
                )
        k = self.sender_count
        readers = self._members()
        if readers and not self.procs <= k <= readers:
            raise ValueError(
                f"--senders must be between --procs ({self.procs}) and {readers}, got {k}"
            )

    def _check_source_addrs(self) -> None:
        if not 0 <= self.source_addrs <= 250:
            raise ValueError(f"--source-addrs must be 0 to 250, got {self.source_addrs}")
        if not self.source_addrs:
            return
        try:
            target = ipaddress.ip_address(self.host)
        except ValueError:
            target = None
        if target is None or target.version != 4 or not target.is_loopback:
            raise ValueError(
                f"--source-addrs needs an IPv4 loopback --host (127.x.x.x), got {self.host!r}"
            )

    def _members(self) -> int:
        """Clients that read broadcasts: every one but the slow reader (0: no broadcast)."""
        if self.scenario == "idle":
            return self.room
        if self.scenario not in _BROADCAST:
            return 0
        return self.clients - (1 if self.scenario == "slowreader" else 0)

    @property
    def sender_count(self) -> int:
        """Senders in total (0 outside fanout, slowreader and the idle scenario's room)."""
        readers = self._members()
        if not readers:
            return 0
        if self.senders is not None:
            return self.senders
        return max(self.procs, min(10, readers))

    def source_address(self, proc: int, index: int) -> str | None:
        """The local address client ``index`` of process ``proc`` binds, if any."""
        if not self.source_addrs:
            return None
        return f"127.0.0.{2 + (proc + index * self.procs) % self.source_addrs}"

    @property
    def batch_seconds(self) -> float:
        """The coalescing nap, resolved per scenario."""
        if self.batch_us is not None:
            return max(0, self.batch_us) / 1e6
        return 0.0 if self.scenario == "pingpong" else 100e-6

    def shares(self) -> list[ProcShare]:
        """How the clients and senders are split among the processes.

        As evenly as possible; the first processes take the remainders. The
        slow reader (slowreader) is the first client of process 0 and is
        never a sender.
        """
        idle = self.scenario == "idle"
        n, k, p = (self.room if idle else self.clients), self.sender_count, self.procs
        return [
            ProcShare(
                proc=i,
                clients=_part(n, p, i),
                senders=_part(k, p, i),
                has_slow=self.scenario == "slowreader" and i == 0,
                idle=_part(self.clients, p, i) if idle else 0,
            )
            for i in range(p)
        ]

    def username(self, proc: int, index: int) -> str:
        """The login name of client ``index`` of process ``proc``."""
        return f"{self.prefix}{proc}_{index}"


def _part(total: int, parts: int, i: int) -> int:
    """Part ``i`` of ``total`` shared out as evenly as possible; the first take the rest."""
    return total // parts + (1 if i < total % parts else 0)


#: What every worker counts about the lines and connections it saw; the
#: report prints them for every scenario.
LINE_COUNTERS: tuple[str, ...] = (
    "logins_ok",
    "login_err",
    "login_timeout",
    "login_disconnect",
    "connect_fail",
    "banner_lines",
    "info_lines",
    "err_lines",
    "ok_lines",
    "other_lines",
    "foreign_msg",
    "stray_pongs",
    "disconnects",
    "echoes",
    "idle_open",
    "idle_dropped",
)
