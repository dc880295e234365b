"""A server the suite starts with a shell command, and watches.

Owns: :class:`CommandTarget`: starting the server through the shell in its
own process group, waiting until it accepts connections, keeping the tail of
its output, noticing when it dies, restarting it, making an instance with
other settings, and stopping the whole group at the end. Never speaks the
chat protocol (the runner and probe do).

Placeholders in a server command: ``{port}``, ``{host}``, ``{idle_timeout}``
and ``{max_clients}``; with ``--tls``, ``{tls_cert}`` and ``{tls_key}`` (the
files of a certificate the suite made for this run, which it then trusts).
They are replaced as plain text (not ``str.format``), so shell syntax such as
``${PORT}`` is left alone. ``PORT`` and ``HOST`` are also set in the server's
environment.

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
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO

from chatproto.tls import ThrowawayCertificate

from ._probe import TargetUnusable
from ._target import Target

__all__ = ["CommandTarget"]

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


def free_port(host: str) -> int:
    """A port that was free a moment ago on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
        readers = [
            threading.Thread(
                target=self._pump, args=(self._proc.stdout, self._stdout, "out"), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self._proc.stderr, self._stderr, "err"), daemon=True
            ),
        ]
        for reader in readers:
            reader.start()
        # Known to stop() only once both run: a signal between the two starts
        # (Ctrl-C at the wrong moment) must not make stop() join one that never did.
        self._readers = readers
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
