"""Targets: the server under test, either already running or started by the suite.

Owns: turning ``tcp://HOST:PORT``, ``--server-cmd`` or ``--backend`` into
something with an address; for commands, starting the server through the
shell in its own process group, waiting until it accepts connections, keeping
the tail of its output, noticing when it dies, restarting it, and stopping the
whole group at the end. Never speaks the chat protocol (the runner and probe
do).

Placeholders in a server command: ``{port}``, ``{host}``, ``{idle_timeout}``
and ``{max_clients}``; with ``--tls``, ``{tls_cert}`` and ``{tls_key}`` (the
files of a certificate the suite made for this run, which it then trusts).
They are replaced as plain text (not ``str.format``), so shell syntax such as
``${PORT}`` is left alone. ``PORT`` and ``HOST`` are also set in the server's
environment.

Flood control (docs/protocol.md §16.2) delays a client that sends faster
than a person; several tests flood on purpose to check something else. A
target may say how to turn it off (``flood_off``: arguments appended to its
command; ``--flood-rate 0`` for our backends), and :data:`FLOOD_CONTROL` says,
per profile, whether the suite runs it with flood control on.

A started server dies with the suite: it is stopped (its whole process group)
at the end, on SIGTERM/SIGINT/SIGHUP to the suite (see the CLI), and on Linux
the kernel sends it SIGTERM if the suite itself is killed (``PR_SET_PDEATHSIG``;
this reaches the shell and what it ``exec``s, not grandchildren).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

from chatproto.adapters import BACKENDS
from chatproto.tls import ThrowawayCertificate, describe_error

from ._probe import TargetUnusable

__all__ = [
    "BACKENDS",
    "FLOOD_CONTROL",
    "FLOOD_OFF_BACKEND",
    "CommandTarget",
    "RemoteTarget",
    "Target",
    "backend_command",
    "backend_target",
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
#: What turns flood control off in ``chatproto-serve``.
FLOOD_OFF_BACKEND: Final = "--flood-rate 0"

#: ``HOST:PORT`` in a startup line such as ``listening on 127.0.0.1:4000``.
_ADDRESS_RE = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9a-fA-F:]+\]|::1?):(\d{1,5})\b")
#: Lines of server output kept for reports.
OUTPUT_LINES = 200
#: Seconds to wait for a command without ``{port}`` (that does not mention
#: ``PORT`` either) to listen on the port the suite chose, before saying so.
NO_PORT_PATIENCE = 3.0
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved in the parent (the child must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(
            ctypes.util.find_library("c") or "libc.so.6", use_errno=True
        ).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the suite dies, however it dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


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


def free_port(host: str) -> int:
    """A port that was free a moment ago on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def flood_control_for(profiles: Sequence[str]) -> bool:
    """Whether a run of ``profiles`` keeps flood control on (see :data:`FLOOD_CONTROL`)."""
    return all(FLOOD_CONTROL.get(p, True) for p in profiles)


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

    Its flood control is on or off as :data:`FLOOD_CONTROL` says for the
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


class CommandTarget(Target):
    """A server the suite starts with a shell command, and watches."""

    controlled = True

    def __init__(
        self,
        command: str,
        *,
        host: str = "127.0.0.1",
        cwd: str | None = None,
        idle_timeout: float = 60.0,
        max_clients: int = 10_000,
        port_from_output: bool = False,
        startup_timeout: float = 20.0,
        name: str | None = None,
        flood_off: str = "",
        flood_control: bool = True,
        certificate: ThrowawayCertificate | None = None,
    ) -> None:
        self.command = command
        #: The certificate it serves TLS with (``{tls_cert}``, ``{tls_key}``),
        #: made by the suite, which trusts it; ``None``: plain TCP.
        self.certificate = certificate
        self.tls = None if certificate is None else certificate.client_context()
        self.host = host
        self.cwd = cwd
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        #: Whether the server picks its port (``--port 0``) and prints it.
        self.port_from_output = port_from_output
        self.startup_timeout = startup_timeout
        self.name = name
        #: Arguments appended to the command to turn the server's flood
        #: control off (``""``: the suite does not know how).
        self.flood_off = flood_off
        #: Whether to leave flood control on (``False`` appends ``flood_off``).
        self.flood_control = flood_control
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._stdout: deque[str] = deque(maxlen=OUTPUT_LINES)
        self._stderr: deque[str] = deque(maxlen=OUTPUT_LINES)
        #: Both streams in arrival order, each line marked ``out|`` or ``err|``.
        self._output: deque[str] = deque(maxlen=OUTPUT_LINES)
        self._readers: list[threading.Thread] = []
        self._announced = threading.Event()
        self._announced_port = 0
        #: How many times it was started.
        self.starts = 0
        self._exited_early = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self._port)

    @property
    def description(self) -> str:
        return self.name or self.command

    def has_placeholder(self, name: str) -> bool:
        """Whether the command has ``{name}``."""
        return "{" + name + "}" in self.command

    def rendered(self) -> str:
        """The command with its placeholders filled in."""
        out = self.command
        for key, value in (
            ("port", str(self._port)),
            ("host", self.host),
            ("idle_timeout", _number(self.idle_timeout)),
            ("max_clients", str(self.max_clients)),
        ):
            out = out.replace("{" + key + "}", value)
        if self.certificate is not None:
            out = out.replace("{tls_cert}", shlex.quote(self.certificate.cert_file))
            out = out.replace("{tls_key}", shlex.quote(self.certificate.key_file))
        if self.flood_off and not self.flood_control:
            out = f"{out} {self.flood_off}"
        return out

    @property
    def unthrottled(self) -> bool:
        """Whether it runs with its flood control off (the suite appended ``flood_off``)."""
        return bool(self.flood_off) and not self.flood_control

    # ------------------------------------------------------------ lifecycle

    @property
    def tells_port(self) -> bool:
        """Whether the command can know the port the suite chose (or prints its own)."""
        return self.port_from_output or self.has_placeholder("port") or "PORT" in self.command

    def start(self) -> None:
        """Start it; if it exits before accepting connections, try once more on a new port.

        The usual cause is a port taken by someone else between the suite
        choosing it and the server binding it.
        """
        try:
            self._start_once()
        except TargetUnusable as first:
            if not self._exited_early:
                raise
            self._start_once(retry_of=str(first))

    def _start_once(self, retry_of: str | None = None) -> None:
        self._exited_early = False
        self._port = 0 if self.port_from_output else free_port(self.host)
        self._stdout.clear()
        self._stderr.clear()
        self._output.clear()
        self._announced.clear()
        env = dict(os.environ, PORT=str(self._port), HOST=self.host, PYTHONUNBUFFERED="1")
        self.starts += 1
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", self.rendered()],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                # Only a pre-resolved prctl call runs in the child: no lock, no import.
                preexec_fn=_die_with_parent if _PRCTL is not None else None,  # noqa: PLW1509
            )
        except OSError as exc:
            raise TargetUnusable(f"cannot start the server: {exc}") from exc
        self._readers = [
            threading.Thread(
                target=self._pump, args=(self._proc.stdout, self._stdout, "out"), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self._proc.stderr, self._stderr, "err"), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_ready()
        except TargetUnusable as exc:
            self.stop()
            if retry_of is not None:
                raise TargetUnusable(
                    f"{exc} (and before that, on another port: {retry_of})"
                ) from None
            raise

    def _pump(self, stream: IO[bytes] | None, sink: deque[str], label: str) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            sink.append(text)
            self._output.append(f"{label}| {text}")
            if self.port_from_output and not self._announced.is_set():
                m = _ADDRESS_RE.search(text)
                if m:
                    self._announced_port = int(m.group(2))
                    self._announced.set()
        stream.close()

    def _wait_ready(self) -> None:
        """Until it accepts a connection; polls with a deadline."""
        started = time.monotonic()
        deadline = started + self.startup_timeout
        pause = threading.Event()
        while True:
            why = self.died()
            if why is not None:
                self._exited_early = True
                self.wait_for_output()
                raise TargetUnusable(f"{why} before accepting connections" + self._tail_text())
            if not self.tells_port and time.monotonic() - started > NO_PORT_PATIENCE:
                raise TargetUnusable(
                    f"nothing listens on {self.host}:{self._port} after {NO_PORT_PATIENCE:.0f} s, "
                    "and the command has no {port} and does not mention PORT: the server cannot "
                    "know which port to use. Put {port} where it takes its port (or read the PORT "
                    "environment variable), or pass --port-from-output if it prints HOST:PORT"
                    + self._tail_text()
                )
            if time.monotonic() > deadline:
                what = (
                    "print its address"
                    if self.port_from_output and not self._port
                    else "accept connections"
                )
                raise TargetUnusable(
                    f"the server did not {what} within {self.startup_timeout:.0f} s"
                    + self._tail_text()
                )
            if self.port_from_output and not self._port:
                if self._announced.wait(0.05):
                    self._port = self._announced_port
                continue
            try:
                socket.create_connection(self.address, timeout=0.5).close()
                return
            except OSError:
                pause.wait(0.05)

    def _tail_text(self) -> str:
        tail = self.output_tail(10)
        return ("; last lines of its output:\n  " + "\n  ".join(tail)) if tail else ""

    def wait_for_output(self, seconds: float = 1.0) -> None:
        """Let the output readers catch up with a process that has exited."""
        for reader in self._readers:
            reader.join(timeout=seconds)

    def died(self) -> str | None:
        proc = self._proc
        if proc is None:
            return "the server is not running"
        code = proc.poll()
        if code is None:
            return None
        if code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = str(-code)
            return f"the server was killed by {sig}"
        return f"the server exited with code {code}"

    def wait_died(self, seconds: float) -> str | None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pass
        return self.died()

    def terminate(self) -> None:
        """SIGTERM to the whole process group (graceful shutdown), no waiting."""
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # SIGTERM first so a well-behaved server exits cleanly; the group,
        # because sh -c may have children (node, a cd && ... chain).
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            pass
        for reader in self._readers:
            reader.join(timeout=1.0)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def output_tail(self, lines: int = 20) -> list[str]:
        """The last lines of stdout and stderr, in arrival order, marked ``out|``/``err|``."""
        return list(self._output)[-lines:]

    def stdout_tail(self, lines: int = 20) -> list[str]:
        """The last lines the server wrote to stdout."""
        return list(self._stdout)[-lines:]

    def variant(
        self,
        *,
        idle_timeout: float | None = None,
        max_clients: int | None = None,
        flood_control: bool | None = None,
    ) -> Target | None:
        if idle_timeout is not None and not self.has_placeholder("idle_timeout"):
            return None
        if max_clients is not None and not self.has_placeholder("max_clients"):
            return None
        if flood_control is False and not self.flood_off:
            return None
        return CommandTarget(
            self.command,
            host=self.host,
            cwd=self.cwd,
            idle_timeout=self.idle_timeout if idle_timeout is None else idle_timeout,
            max_clients=self.max_clients if max_clients is None else max_clients,
            port_from_output=self.port_from_output,
            startup_timeout=self.startup_timeout,
            name=self.name,
            flood_off=self.flood_off,
            flood_control=self.flood_control if flood_control is None else flood_control,
            certificate=self.certificate,
        )

    def variant_hint(self, setting: str) -> str:
        return (
            f"needs a server started with a chosen {setting}: add {{{setting}}} to the server "
            f"command where your server takes it"
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _number(value: float) -> str:
    """``1`` for 1.0 (servers that parse an int), ``0.5`` otherwise."""
    return str(int(value)) if float(value).is_integer() else str(value)
