"""How a node of a cluster reaches Redis, and the clocks of its lease (docs/cluster.md).

Owns: :class:`ClusterConfig`, every knob of cluster mode with the reason for
its default, and the ``redis://HOST:PORT/DB`` form ``chatproto-serve
--cluster`` takes. Never connects to anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = ["ClusterConfig"]

#: A node id goes into Redis keys and into every claim token (``node/serial``):
#: no ``/``, no space, short.
_NODE_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One node's view of the cluster: where Redis is, who this node is, its clocks.

    ``node_id`` names the node in Redis (two live processes may not share
    one: the second waits until the first's lease is over). ``incarnation``
    tells this process from an earlier one with the same id (the embedding
    program passes something random: the core has no randomness of its own).
    """

    node_id: str
    incarnation: str
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    #: Every key and the channel start with this: several clusters can share
    #: one Redis.
    prefix: str = "chatproto:"
    #: A node that has not renewed its lease for this long is dead: the
    #: others release its users, one notice each. Renewed every third of it,
    #: so a node survives two lost renewals; 3 s tells users within about
    #: 4 s that a node died.
    lease: float = 3.0
    #: The longest a LOGIN waits for Redis to decide its claim before it gets
    #: ``ERR cluster-unavailable``. Longer than a lease, so that a node that
    #: reconnects after a short outage still answers the logins that waited.
    claim_timeout: float = 5.0
    #: A PING waits for Redis (a barrier: docs/protocol.md §17.3) at most
    #: this long; then it is answered anyway (Redis stalled: see link_timeout).
    barrier_timeout: float = 0.5
    #: A command Redis has not answered for this long means the link is dead
    #: (a half-open TCP connection): drop it and reconnect. Longer than a
    #: short Redis stall (a fork, a SIGSTOP), which should cost nothing.
    link_timeout: float = 10.0
    #: Connecting to Redis gives up after this long (then backs off).
    connect_timeout: float = 3.0
    #: Reconnecting backs off from the first delay, doubling, to the last.
    retry_first: float = 0.1
    retry_last: float = 2.0
    #: A node shutting down tells its own users first; the other nodes hear
    #: that its users left this much later. When the whole cluster stops at
    #: once, every user thus gets INFO server-shutdown before any notice from
    #: another node (docs/protocol.md §17.6).
    leave_delay: float = 0.25
    #: Bytes waiting for Redis past which the link is dropped (Redis stopped
    #: reading): at 16 MiB, about 100,000 queued lines, seconds of a busy room.
    max_bus_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if not _NODE_ID.fullmatch(self.node_id):
            raise ValueError(
                f"node id {self.node_id!r}: use 1 to 64 letters, digits, '_', '.', ':' or '-'"
            )
        if not self.incarnation or " " in self.incarnation:
            raise ValueError("incarnation must be a non-empty word")
        if not 0 < self.port < 65536:
            raise ValueError(f"Redis port must be 1 to 65535, got {self.port}")
        if self.db < 0:
            raise ValueError(f"Redis db must be 0 or more, got {self.db}")
        if self.lease <= 0 or self.claim_timeout <= 0 or self.link_timeout <= 0:
            raise ValueError("lease, claim_timeout and link_timeout must be positive")
        if not 0 < self.retry_first <= self.retry_last:
            raise ValueError("need 0 < retry_first <= retry_last")

    @classmethod
    def from_url(
        cls, url: str, *, node_id: str, incarnation: str, **options: float | int | str
    ) -> ClusterConfig:
        """Read ``redis://HOST[:PORT][/DB]`` (port 6379 and db 0 by default)."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"{url!r}: expected redis://HOST[:PORT][/DB]")
        if parts.username or parts.password or parts.query:
            raise ValueError(f"{url!r}: users, passwords and options are not supported")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"{url!r}: the database must be a number")
        try:
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"{url!r}: {exc}") from None
        return cls(
            node_id=node_id,
            incarnation=incarnation,
            host=parts.hostname,
            port=port,
            db=int(path) if path else 0,
            **options,  # type: ignore[arg-type]
        )
