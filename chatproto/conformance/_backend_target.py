"""Our own servers as targets: what ``--backend NAME`` starts.

Owns: the shell command that runs ``chatproto-serve`` on one of our backends
(with the placeholders a :class:`~._command_target.CommandTarget` fills in),
what turns its flood control off, and the target ``--backend`` makes for a
run of some profiles. Never starts anything itself.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from chatproto.adapters import BACKENDS
from chatproto.tls import ThrowawayCertificate

from ._command_target import CommandTarget
from ._target import flood_control_for

__all__ = ["FLOOD_OFF_BACKEND", "backend_command", "backend_target"]

#: What turns flood control off in ``chatproto-serve``.
FLOOD_OFF_BACKEND: Final = "--flood-rate 0"


def backend_command(
    backend: str, *, anyio_backend: str | None = None, extra: str = "", tls: bool = False
) -> str:
    """The shell command that runs ``chatproto-serve`` on ``backend``, with its defaults.

    Prefers the installed ``chatproto-serve`` script next to this Python (the
    very command a user runs), falling back to running its ``main``. It listens
    on port 0 and the suite reads the port from its startup line. Flood
    control is left to the target (see :func:`backend_target`). ``tls``: it
    serves TLS with the suite's certificate (``{tls_cert}``, ``{tls_key}``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    script = Path(sys.executable).with_name("chatproto-serve")
    if script.exists():
        base = shlex.quote(str(script))
    else:
        code = "import sys; from chatproto.cli.serve import main; sys.exit(main())"
        base = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    parts = [
        base,
        f"--backend {backend}",
        "--host {host} --port 0",
        "--idle-timeout {idle_timeout} --max-clients {max_clients}",
        "--log-level warning",
    ]
    if anyio_backend:
        parts.append(f"--anyio-backend {shlex.quote(anyio_backend)}")
    if tls:
        parts.append("--tls-cert {tls_cert} --tls-key {tls_key}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def backend_target(
    backend: str,
    *,
    profiles: Sequence[str],
    anyio_backend: str | None = None,
    extra: str = "",
    host: str = "127.0.0.1",
    startup_timeout: float = 20.0,
    name: str | None = None,
    certificate: ThrowawayCertificate | None = None,
) -> CommandTarget:
    """One of our own servers, as ``--backend`` starts it for a run of ``profiles``.

    Its flood control is on or off as :data:`~._target.FLOOD_CONTROL` says for the
    profiles (``--flood-rate 0`` comes after ``extra``, so it wins where it
    applies), and tests that need ``unthrottled`` get it off. With a
    ``certificate`` it serves TLS (``--tls``).
    """
    tls = certificate is not None
    default_name = f"chatproto {backend}" + (f"/{anyio_backend}" if anyio_backend else "")
    return CommandTarget(
        backend_command(backend, anyio_backend=anyio_backend, extra=extra, tls=tls),
        host=host,
        port_from_output=True,
        startup_timeout=startup_timeout,
        name=name or default_name + (" over TLS" if tls else ""),
        flood_off=FLOOD_OFF_BACKEND,
        flood_control=flood_control_for(profiles),
        certificate=certificate,
    )
