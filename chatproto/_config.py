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
