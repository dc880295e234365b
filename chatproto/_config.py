"""Configuration: every limit in one frozen dataclass, each with a reason."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientConfig", "ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits and timers of a :class:`~chatproto.ChatServer`.

    All values are validated when the config is built, so a server never
    starts with a limit that would make it misbehave.
    """

    #: Longest accepted line, terminator excluded. 4096 holds any sensible chat
    #: message while keeping the per-connection partial-line buffer small: with
    #: 10,000 clients the worst case is 40 MB of partial lines.
    max_line_bytes: int = 4096
    #: Seconds without a complete line before a connection is dropped. 60 s is
    #: the original server's promise; clients keep alive with ``PING``.
    idle_timeout: float = 60.0
    #: Open connections allowed at once. Each costs a socket and a few KiB; the
    #: default is what one process serves comfortably (see docs/performance.md).
    max_clients: int = 10_000
    #: Output queued for one connection before it counts as a slow consumer
    #: and is dropped. 1 MiB is several seconds of a busy room for a reader that
    #: is merely slow, yet 10,000 such backlogs would still fit in memory.
    max_outbound_bytes: int = 1024 * 1024
    #: Seconds a closing connection (QUIT, idle, shutdown, ...) gets to take
    #: what is queued for it before it is cut off. Bounds how long shutdown and
    #: a client that QUITs without reading can hold resources.
    close_timeout: float = 5.0
    #: Lines per second a connection may send, sustained; ``0`` turns flood
    #: control off. A person types a few lines a minute and a chat bot answers
    #: in short bursts: 50/s is far above both, yet it holds a flooder in a
    #: room of 10,000 to 500,000 deliveries/s instead of all the server has.
    #: Lines over the budget are delayed, never dropped (docs/protocol.md §16).
    flood_rate: float = 50.0
    #: Lines a connection may send at once before ``flood_rate`` applies: a
    #: paste of a few hundred lines goes through undelayed.
    flood_burst: int = 500
    #: Queued bytes above which a recipient is *congested*: the senders that
    #: fill it wait while it drains (backpressure), and its slow-consumer clock
    #: runs. ``None`` means a quarter of ``max_outbound_bytes`` (256 KiB by
    #: default): room for a burst, far enough below the cap that a recipient
    #: that keeps up never reaches it.
    outbound_high_water: int | None = None
    #: Longest a congested recipient that takes nothing holds its senders
    #: back; ``0`` turns backpressure off. A reader that keeps up takes its
    #: output within milliseconds; 0.5 s forgives a busy machine while bounding
    #: what a reader that died can cost everyone else, once.
    backpressure_timeout: float = 0.5
    #: A recipient that stays congested this long without taking anything is
    #: dropped as a slow consumer, even below ``max_outbound_bytes`` (the soft
    #: limit; the cap is the hard one). 10 s outlasts any pause of a live
    #: client, and bounds how long a dead one holds its backlog.
    slow_consumer_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_line_bytes < 64:
            raise ValueError(f"max_line_bytes must be at least 64, got {self.max_line_bytes}")
        if not self.idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, got {self.idle_timeout}")
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {self.max_clients}")
        # The cap must hold at least one maximal line plus its prefix, or a
        # single legitimate broadcast would disconnect every recipient.
        if self.max_outbound_bytes < self.max_line_bytes + 64:
            raise ValueError(
                "max_outbound_bytes must exceed max_line_bytes + 64, got "
                f"{self.max_outbound_bytes} with max_line_bytes={self.max_line_bytes}"
            )
        if self.close_timeout < 0:
            raise ValueError(f"close_timeout must not be negative, got {self.close_timeout}")
        if not self.flood_rate >= 0:
            raise ValueError(f"flood_rate must not be negative, got {self.flood_rate}")
        if self.flood_rate and self.flood_burst < 1:
            raise ValueError(f"flood_burst must be at least 1, got {self.flood_burst}")
        high = self.outbound_high_water
        if high is not None and not self.max_line_bytes + 64 <= high <= self.max_outbound_bytes:
            raise ValueError(
                "outbound_high_water must be between max_line_bytes + 64 and "
                f"max_outbound_bytes ({self.max_line_bytes + 64} to "
                f"{self.max_outbound_bytes}), got {high}"
            )
        if not self.backpressure_timeout >= 0:
            raise ValueError(
                f"backpressure_timeout must not be negative, got {self.backpressure_timeout}"
            )
        if not self.slow_consumer_timeout > 0:
            raise ValueError(
                f"slow_consumer_timeout must be positive, got {self.slow_consumer_timeout}"
            )

    @property
    def high_water(self) -> int:
        """The congestion threshold in bytes (``outbound_high_water`` resolved)."""
        if self.outbound_high_water is not None:
            return self.outbound_high_water
        return max(self.max_outbound_bytes // 4, self.max_line_bytes + 64)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Limits of a :class:`~chatproto.ClientSession`."""

    #: Longest server line accepted. Broadcasts are longer than the commands
    #: that caused them (the sender's name is added) and third-party servers
    #: may allow longer lines, so the client is generous: 64 KiB.
    max_line_bytes: int = 65536

    def __post_init__(self) -> None:
        if self.max_line_bytes < 64:
            raise ValueError(f"max_line_bytes must be at least 64, got {self.max_line_bytes}")
