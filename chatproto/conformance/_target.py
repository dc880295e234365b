"""Targets: the server under test, either already running or started by the suite.

Owns: :class:`Target` (what the runner may do with a server: reach it, start
it, stop it, tell whether it died, restart it, ask for an instance with other
settings), :class:`RemoteTarget` (a server already running at
``tcp://HOST:PORT`` or ``tls://HOST:PORT``, and parsing those addresses), and
whether a run keeps flood control on. A server the suite starts is a
:class:`~._command_target.CommandTarget`; ``--backend`` makes one of ours with
:func:`~._backend_target.backend_target`. Never speaks the chat protocol (the
runner and probe do).

Flood control (docs/protocol.md §16.2) delays a client that sends faster
than a person; several tests flood on purpose to check something else. A
target may say how to turn it off (``flood_off``: arguments appended to its
command; ``--flood-rate 0`` for our backends), and :data:`FLOOD_CONTROL` says,
per profile, whether the suite runs it with flood control on.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import Final

from chatproto.tls import describe_error

from ._probe import TargetUnusable

__all__ = [
    "FLOOD_CONTROL",
    "RemoteTarget",
    "Target",
    "flood_control_for",
    "parse_target_url",
    "parse_tcp_url",
]

#: Per profile: whether a server the suite can unthrottle (``flood_off``) runs
#: with its flood control on. Off where the profile's tests pipeline or flood
#: on purpose, to check something else than the flood limit, and would only be
#: delayed by it (by design, §16.2; irctest configures its servers the same
#: way): ``core`` floods a reader that stopped with 8 MB (ROB-51),
#: ``strict`` with 24 MB (ROB-52) and runs the vectors' long pipelines,
#: ``robust`` pipelines 5,000 PINGs (ROB-58). ``load`` runs the server as
#: configured, with its defaults; only its tests that need ``unthrottled``
#: (LOD-51 to LOD-53: backpressure, fairness and output limits, which flood
#: control would hide or spread over minutes) get an instance with flood
#: control off. A run of several profiles has it on only if every one has.
FLOOD_CONTROL: Final = {"core": False, "strict": False, "robust": False, "load": True}


def parse_tcp_url(url: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or plain ``HOST:PORT``) to an address; ``ValueError`` if malformed."""
    rest = url[len("tcp://") :] if url.startswith("tcp://") else url
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a tcp://HOST:PORT address: {url!r}")
    return host, int(port)


def parse_target_url(url: str) -> tuple[bool, str, int]:
    """``tcp://HOST:PORT`` or ``tls://HOST:PORT`` as (TLS?, host, port); ``ValueError`` if not."""
    if url.startswith("tls://"):
        return (True, *parse_tcp_url("tcp://" + url[len("tls://") :]))
    try:
        return (False, *parse_tcp_url(url))
    except ValueError:
        raise ValueError(f"not a tcp://HOST:PORT or tls://HOST:PORT address: {url!r}") from None


def flood_control_for(profiles: Sequence[str]) -> bool:
    """Whether a run of ``profiles`` keeps flood control on (see :data:`FLOOD_CONTROL`)."""
    return all(FLOOD_CONTROL.get(p, True) for p in profiles)


class Target:
    """The server under test. Subclasses say how it is reached and controlled."""

    #: Whether the suite started the server (and may restart or stop it).
    controlled = False
    #: How to reach it over TLS (a client context), or ``None``: plain TCP.
    tls: ssl.SSLContext | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it accepts connections."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """What it is, for reports."""
        raise NotImplementedError

    def start(self) -> None:
        """Make it ready; raise :class:`TargetUnusable` if it cannot be."""

    def stop(self) -> None:
        """Stop it, if the suite started it."""

    def died(self) -> str | None:
        """Why it is no longer running, or ``None`` while it is (or cannot tell)."""
        return None

    def wait_died(self, seconds: float) -> str | None:
        """Like :meth:`died`, but give a dying server ``seconds`` to finish dying."""
        return self.died()

    def restart(self) -> None:
        """Start it again after a death or hang."""
        raise TargetUnusable("the suite did not start this server, so it cannot restart it")

    def output_tail(self, lines: int = 20) -> list[str]:
        """The last lines the server wrote to stderr (empty if unknown)."""
        return []

    def variant(
        self,
        *,
        idle_timeout: float | None = None,
        max_clients: int | None = None,
        flood_control: bool | None = None,
    ) -> Target | None:
        """A separate instance with other settings, or ``None`` if impossible."""
        return None

    def variant_hint(self, setting: str) -> str:
        """Why :meth:`variant` cannot make ``setting``, with a hint."""
        return (
            f"needs control over the server's {setting}: this target is already running; "
            f"run with --server-cmd containing {{{setting}}} (or --backend) instead"
        )


class RemoteTarget(Target):
    """A server that is already running at ``tcp://HOST:PORT`` (``tls://`` with ``tls``)."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self._address = (host, port)
        self.tls = tls

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def description(self) -> str:
        scheme = "tcp" if self.tls is None else "tls"
        return f"{scheme}://{self._address[0]}:{self._address[1]}"

    def start(self) -> None:
        try:
            with socket.create_connection(self._address, timeout=5.0) as sock:
                if self.tls is not None:  # a certificate that does not verify is said now
                    self.tls.wrap_socket(sock, server_hostname=self._address[0]).close()
        except OSError as exc:
            raise TargetUnusable(
                f"cannot connect to {self.description}: {describe_error(exc)}"
            ) from exc
