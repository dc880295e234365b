"""A cluster as one target: several servers that are one chat room (docs/cluster.md).

Owns: :class:`ClusterTarget`, whose :attr:`~ClusterTarget.addresses` the
runner hands to each test so that its connections are spread over the nodes
round-robin; starting a Redis and N ``chatproto-serve --cluster`` nodes (mixed
backends) for ``--cluster-backend``/``--cluster-nodes``, or taking the
addresses of running nodes (``--cluster-target``); waiting until every node
answers a LOGIN (its link to Redis is up); variants with other settings on a
database of their own. Never speaks the chat protocol beyond that readiness
LOGIN.
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import socket
import string
import time

from chatproto.adapters import BACKENDS

from ._backend_target import FLOOD_OFF_BACKEND, backend_command
from ._command_target import CommandTarget
from ._probe import TargetUnusable
from ._target import RemoteTarget, Target, flood_control_for, parse_tcp_url

__all__ = ["ClusterTarget", "add_cluster_arguments", "make_cluster_target", "redis_command"]

#: Redis for a test cluster: this host only, nothing written to disk.
_REDIS_ARGS = "--port {port} --bind {host} --save '' --appendonly no"


def redis_command(executable: str = "redis-server") -> str:
    """The shell command that starts a throwaway Redis on ``{host}:{port}``."""
    found = shutil.which(executable)
    if found is None:
        raise TargetUnusable(
            f"{executable} is not installed (Debian: apt-get install redis-server); "
            "a cluster target started by the suite needs it"
        )
    return f"{shlex.quote(found)} {_REDIS_ARGS}"


class ClusterTarget(Target):
    """Several nodes of one cluster; each test spreads its connections over them."""

    def __init__(
        self,
        nodes: list[Target],
        *,
        redis: CommandTarget | None = None,
        backends: list[tuple[str, str | None]] | None = None,
        db: int = 0,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        extra: str = "",
        flood_control: bool = True,
    ) -> None:
        self.nodes = nodes
        #: Whether started nodes keep their flood control (as backend_target decides).
        self.flood_control = flood_control
        self.redis = redis
        #: For a started cluster: each node's backend (and anyio backend).
        self.backends = backends
        self.db = db
        self.host = host
        self.startup_timeout = startup_timeout
        self.extra = extra
        self.controlled = redis is not None

    @classmethod
    def remote(cls, addresses: list[tuple[str, int]]) -> ClusterTarget:
        """Nodes already running (``--cluster-target tcp://HOST:PORT`` each)."""
        return cls([RemoteTarget(host, port) for host, port in addresses])

    @classmethod
    def started(
        cls,
        backends: list[tuple[str, str | None]],
        *,
        host: str = "127.0.0.1",
        redis_server: str = "redis-server",
        startup_timeout: float = 20.0,
        extra: str = "",
        flood_control: bool = True,
    ) -> ClusterTarget:
        """A Redis and one node per ``(backend, anyio backend)``, started by :meth:`start`."""
        redis = CommandTarget(redis_command(redis_server), host=host, name="redis")
        return cls(
            [],
            redis=redis,
            backends=backends,
            host=host,
            startup_timeout=startup_timeout,
            extra=extra,
            flood_control=flood_control,
        )

    # ----------------------------------------------------------- addresses

    @property
    def address(self) -> tuple[str, int]:
        return self.nodes[0].address

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Every node's address: each test's connections go to them in turn.

        Only the first node's for a variant with a chosen ``max_clients``:
        that limit is each node's own (docs/protocol.md §17.1), so the test
        of it sends every client to one node.
        """
        if self._max_clients != ClusterTarget._max_clients:
            return (self.address,)
        return tuple(node.address for node in self.nodes)

    @property
    def description(self) -> str:
        if self.backends is not None:
            names = ", ".join(b + (f"/{a}" if a else "") for b, a in self.backends)
            return f"chatproto cluster of {len(self.backends)} ({names}) on Redis"
        return "cluster " + " ".join(n.description for n in self.nodes)

    # ----------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.redis is not None:
            self.redis.start()
            self.nodes = [self._node(b, a, i) for i, (b, a) in enumerate(self.backends or [])]
        self._start_nodes()

    def _start_nodes(self) -> None:
        """Start every node, and wait until each is linked to Redis."""
        try:
            for node in self.nodes:
                node.start()
            deadline = time.monotonic() + self.startup_timeout
            for node in self.nodes:
                _wait_linked(node.address, deadline)
        except TargetUnusable:
            self.stop()
            raise

    def _node(self, backend: str, anyio_backend: str | None, index: int) -> CommandTarget:
        assert self.redis is not None
        redis_host, redis_port = self.redis.address
        cluster = (
            f"--cluster redis://{redis_host}:{redis_port}/{self.db} "
            f"--node-id n{index}-{_word()} --lease 1"
        )
        extra = f"{cluster} {self.extra}"
        if not self.flood_control:
            extra += f" {FLOOD_OFF_BACKEND}"  # after the user's arguments: it wins
        command = backend_command(backend, anyio_backend=anyio_backend, extra=extra.strip())
        return CommandTarget(
            command,
            host=self.host,
            port_from_output=True,
            startup_timeout=self.startup_timeout,
            name=f"node {index} ({backend})",
            idle_timeout=self._idle_timeout,
            max_clients=self._max_clients,
        )

    _idle_timeout = 60.0
    _max_clients = 10_000

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.redis is not None:
            self.redis.stop()

    def died(self) -> str | None:
        for node in [*self.nodes, *([self.redis] if self.redis else [])]:
            why = node.died()
            if why is not None:
                return f"{node.description}: {why}"
        return None

    def restart(self) -> None:
        if not self.controlled:
            raise TargetUnusable("the suite did not start this cluster, so it cannot restart it")
        self.stop()
        self.start()

    def terminate(self) -> None:
        """Shut every node down gracefully (the suite's shutdown test)."""
        for node in self.nodes:
            if isinstance(node, CommandTarget):
                node.terminate()

    def output_tail(self, lines: int = 20) -> list[str]:
        tail: list[str] = []
        for node in self.nodes:
            tail += [f"[{node.description}] {line}" for line in node.output_tail(lines)]
        return tail[-lines:]

    def has_placeholder(self, name: str) -> bool:
        """Whether the nodes' commands take ``name`` (a started cluster's do)."""
        return self.backends is not None and name in ("idle_timeout", "max_clients")

    def variant(
        self,
        *,
        idle_timeout: float | None = None,
        max_clients: int | None = None,
        flood_control: bool | None = None,
    ) -> Target | None:
        """The same nodes with other settings, on a Redis database of their own."""
        if self.redis is None or self.backends is None:
            return None
        other = _SharedRedisCluster(self, db=self.db + 1 + random.randrange(14))
        if flood_control is not None:
            other.flood_control = flood_control
        other._idle_timeout = self._idle_timeout if idle_timeout is None else idle_timeout
        other._max_clients = self._max_clients if max_clients is None else max_clients
        return other

    def variant_hint(self, setting: str) -> str:
        return (
            f"needs nodes started with a chosen {setting}: run the cluster with "
            "--cluster-backend (the suite starts it) instead of --cluster-target"
        )


class _SharedRedisCluster(ClusterTarget):
    """A variant: its own nodes, the parent's Redis (which it neither starts nor stops)."""

    def __init__(self, parent: ClusterTarget, *, db: int) -> None:
        super().__init__(
            [],
            redis=parent.redis,
            backends=parent.backends,
            db=db,
            host=parent.host,
            startup_timeout=parent.startup_timeout,
            extra=parent.extra,
            flood_control=parent.flood_control,
        )

    def start(self) -> None:
        self.nodes = [self._node(b, a, i) for i, (b, a) in enumerate(self.backends or [])]
        self._start_nodes()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def died(self) -> str | None:
        for node in self.nodes:
            why = node.died()
            if why is not None:
                return f"{node.description}: {why}"
        return None


def _word() -> str:
    return "".join(random.choice(string.ascii_lowercase) for _ in range(4))


def _wait_linked(address: tuple[str, int], deadline: float) -> None:
    """Until the node at ``address`` answers a LOGIN with OK (its link to Redis is up)."""
    name = f"zzready{_word()}"
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(
                address, timeout=max(0.1, deadline - time.monotonic())
            ) as s:
                s.sendall(f"LOGIN {name}\nQUIT\n".encode())
                reply = s.makefile("rb").readline().decode("utf-8", "replace").strip()
        except OSError as exc:
            last = str(exc)
            reply = ""
        if reply == "OK":
            return
        last = reply or last
        time.sleep(0.1)
    raise TargetUnusable(f"node {address[0]}:{address[1]} never joined its cluster: {last}")


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """The options that make a cluster the target (``run`` and ``probe``)."""
    p.add_argument(
        "--cluster-target",
        action="append",
        metavar="tcp://HOST:PORT",
        help="a node of a running cluster; repeat for each: tests spread their clients over them",
    )
    p.add_argument(
        "--cluster-backend",
        action="append",
        metavar="NAME",
        help="start a Redis and one node per --cluster-backend (threading, anyio, anyio/trio, "
        "gevent); tests spread their clients over the nodes",
    )
    p.add_argument(
        "--cluster-nodes",
        type=int,
        metavar="N",
        help="with --backend: start a Redis and N nodes of that backend",
    )
    p.add_argument(
        "--redis-server",
        default="redis-server",
        metavar="PATH",
        help="the redis-server a started cluster uses (default: from PATH)",
    )


def make_cluster_target(args: argparse.Namespace) -> ClusterTarget | None:
    """The cluster the arguments name, ``None`` if none; ``ValueError`` if ill-formed."""
    urls = args.cluster_target or []
    named = args.cluster_backend or []
    if not (urls or named or args.cluster_nodes):
        return None
    if sum(bool(x) for x in (urls, named, args.cluster_nodes)) > 1:
        raise ValueError("give one of --cluster-target, --cluster-backend, --cluster-nodes")
    if args.target or args.server_cmd or (args.backend and not args.cluster_nodes):
        raise ValueError("a cluster is the target: give no other target")
    if urls:
        return ClusterTarget.remote([parse_tcp_url(url) for url in urls])
    if args.cluster_nodes:
        if not args.backend or args.cluster_nodes < 1:
            raise ValueError("--cluster-nodes N needs --backend NAME and N >= 1")
        named = [args.backend + (f"/{args.anyio_backend}" if args.anyio_backend else "")]
        named *= args.cluster_nodes
    backends: list[tuple[str, str | None]] = []
    for name in named:
        backend, _, flavour = name.partition("/")
        if backend not in BACKENDS or (
            flavour and (backend != "anyio" or flavour not in ("asyncio", "trio"))
        ):
            raise ValueError(
                f"unknown cluster backend {name!r}: threading, anyio, anyio/trio, gevent"
            )
        backends.append((backend, flavour or None))
    try:
        return ClusterTarget.started(
            backends,
            host=args.host,
            redis_server=args.redis_server,
            startup_timeout=args.startup_timeout,
            extra=args.serve_args,
            flood_control=flood_control_for(getattr(args, "profile", None) or ["core"]),
        )
    except TargetUnusable as exc:
        raise ValueError(str(exc)) from None
