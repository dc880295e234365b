"""The event loop of one worker process: many non-blocking sockets, one thread.

Owns waiting (:class:`._poller.Poller`), a timer heap, the coalescing nap,
and the connections' life: connect (from a loopback source address with
``--source-addrs``), the TLS handshake with ``--tls`` (a sans-IO
:class:`chatproto.tls.TlsStream` per connection, so the sockets stay
non-blocking and the loop single-threaded), write with a queue for what the
kernel does not take, read, and close. Every connection says what it does with input and with its
end through its callbacks (:class:`._conn.Conn`); the loop knows no protocol.
"""

from __future__ import annotations

import errno
import heapq
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from chatproto.tls import TlsStream, client_context

from ._config import BenchConfig, ProcShare
from ._conn import Conn, complete_lines
from ._poller import GONE, IN, OUT, Poller
from ._stats import NS
from ._tally import Tally

__all__ = ["ClientLoop"]

_READ_SIZE: Final = 262144
#: Phases in which the coalescing nap applies.
_NAPPING: Final = frozenset(("run", "hold"))
# Linux: let connect() choose the port of a bound source address, so that
# the same port can serve several destinations (value from <linux/in.h>).
_BIND_NO_PORT: Final = getattr(
    socket, "IP_BIND_ADDRESS_NO_PORT", 24 if sys.platform.startswith("linux") else None
)


class ClientLoop:
    """The loop and the sockets of one process; :class:`._worker.Worker` builds on it."""

    def __init__(self, cfg: BenchConfig, share: ProcShare) -> None:
        self.cfg = cfg
        self.share = share
        self.poller = Poller()
        self.by_fd: dict[int, Conn] = {}
        #: Descriptors that are not connections (the pipe to the parent).
        self.other_fds: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        #: Where the run is; the nap applies in :data:`_NAPPING` phases only.
        self.phase = "login"
        self.finished = False
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
        self.family: socket.AddressFamily = infos[0][0]
        self.addr: Any = infos[0][4]
        #: Every node's address (one unless --more-ports): clients go to them in turn.
        self.addrs: list[Any] = [self.addr] + [
            socket.getaddrinfo(cfg.host, port, type=socket.SOCK_STREAM)[0][4]
            for port in cfg.more_ports
        ]
        # Sender ids are global: process * 100000 + index.
        self.sid_base = share.proc * 100_000
        self.tally = Tally()
        self.c = self.tally.c
        #: Nanoseconds spent waiting in poll: the time the loop had nothing to do.
        self.idle_ns = 0
        #: The client context with ``--tls``.
        self.tls = client_context(cfg.tls_ca, insecure=cfg.insecure) if cfg.tls else None

    def serve(self) -> None:
        """Run the loop until :attr:`finished`."""
        sleep, clock = time.sleep, time.monotonic_ns
        # Nap only after a poll that had to wait (we are ahead of the server):
        # then the nap costs latency (< batch_us) but no throughput, and the
        # next read finds several lines. A poll that returned at once means we
        # are behind, and a nap would slow the run down.
        nap = self.cfg.batch_seconds
        waited_ns = int(nap * 0.2e9)
        poll, by_fd, timers = self.poller.poll, self.by_fd, self._timers
        while not self.finished:
            t0 = clock()
            events = poll(self._timeout())
            waited = clock() - t0
            self.idle_ns += waited
            self.c["loop_iterations"] += 1
            for fd, ev in events:
                conn = by_fd.get(fd)
                if conn is None:
                    other = self.other_fds.get(fd)
                    if other is not None:
                        other()
                    continue
                if ev & OUT:
                    self._on_writable(conn)
                if ev & (IN | GONE) and not conn.closed:
                    self._on_readable(conn)
            if timers:
                self._run_timers()
            if nap and waited > waited_ns and len(events) < 64 and self.phase in _NAPPING:
                sleep(nap)

    def _timeout(self) -> float:
        if not self._timers:
            return 1.0
        return max(0.0, min(1.0, (self._timers[0][0] - time.monotonic_ns()) / NS))

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` from the loop in ``seconds``."""
        self.at(time.monotonic_ns() + int(seconds * NS), fn)

    def at(self, t_ns: int, fn: Callable[[], None]) -> None:
        """Call ``fn`` from the loop at monotonic time ``t_ns``."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (t_ns, self._timer_seq, fn))

    def _run_timers(self) -> None:
        now = time.monotonic_ns()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()

    # --------------------------------------------------------------- sockets

    def connect(
        self,
        index: int,
        name: str,
        on_open: Callable[[Conn], None],
        on_close: Callable[[Conn, int | None], None],
        *,
        rcvbuf: int = 0,
    ) -> Conn | int:
        """Start a non-blocking connect; the connection, or the errno if it failed at once.

        ``on_open`` runs when the connection is made; ``on_close`` once when
        it fails or ends. With ``--source-addrs`` it is bound to one of the
        loopback source addresses first.
        """
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            return exc.errno or 0
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            source = self.cfg.source_address(self.share.proc, index)
            if source is not None:
                if _BIND_NO_PORT is not None:
                    sock.setsockopt(socket.IPPROTO_IP, _BIND_NO_PORT, 1)
                sock.bind((source, 0))
            err = sock.connect_ex(self.addrs[index % len(self.addrs)])
        except OSError as exc:
            err = exc.errno or 0
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            return err
        conn = Conn(sock, index, name, str(self.sid_base + index).encode())
        if self.tls is not None:
            conn.tls = TlsStream(self.tls, server_side=False, server_hostname=self.cfg.host)
        conn.t_start = time.monotonic_ns()
        conn.on_open = on_open
        conn.on_close = on_close
        self.by_fd[conn.fd] = conn
        self.poller.register(conn.fd, IN | OUT)
        return conn

    def _on_writable(self, conn: Conn) -> None:
        if conn.connecting and not conn.handshaking:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.lost(conn, err)
                return
            self.poller.modify(conn.fd, IN)
            if conn.tls is None:
                conn.connecting = False
                conn.on_open(conn)
            else:  # still connecting: open once the handshake is done (_decrypt)
                conn.handshaking = True
                conn.tls.start()
                self._send(conn, conn.tls.data_to_send())
            return
        data = b"".join(conn.out)
        conn.out.clear()
        self._send(conn, data)
        if not conn.out and not conn.closed:
            self.poller.modify(conn.fd, 0 if conn.paused else IN)

    def write(self, conn: Conn, data: bytes) -> None:
        """Send ``data`` on ``conn``, queueing what the kernel does not take."""
        if conn.tls is not None and not conn.closed:
            conn.tls.send(data)
            data = conn.tls.data_to_send()
        self._send(conn, data)

    def _send(self, conn: Conn, data: bytes) -> None:
        """Send bytes as they go on the wire, queueing what the kernel does not take."""
        if conn.closed:
            return
        if conn.out:
            conn.out.append(data)
            return
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.lost(conn, exc.errno)
            return
        if sent < len(data):
            conn.out.append(data[sent:])
            self.poller.modify(conn.fd, OUT if conn.paused else IN | OUT)

    def _on_readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(conn, exc.errno)
            return
        if not data:
            self.lost(conn, 0)
            return
        self.c["recv_calls"] += 1
        if conn.tls is not None:
            data = self._decrypt(conn, conn.tls, data)
            if not data:
                return
        # Framing, the one place: most reads end at the end of a line with
        # nothing held back, and go to the handler as they are.
        if conn.buf or data[-1] != 10:  # 10: b"\n"
            data = complete_lines(conn, data)
            if not data:
                return
        conn.handler(conn, data)

    def _decrypt(self, conn: Conn, tls: TlsStream, data: bytes) -> bytes:
        """The plaintext in ``data``; opens ``conn`` when its handshake completes."""
        try:
            data = tls.receive(data)
        except OSError:  # ssl.SSLError: a certificate that does not verify...
            self.lost(conn, errno.EPROTO)  # counted as a failed connect while handshaking
            return b""
        if tls.wants_write:
            self._send(conn, tls.data_to_send())
        if conn.handshaking and tls.established:
            conn.handshaking = conn.connecting = False
            conn.on_open(conn)
        if tls.peer_closed:  # the server's close_notify: the lines before it, then the end
            block = complete_lines(conn, data) if data else b""
            if block:
                conn.handler(conn, block)
            self.lost(conn, 0)
            return b""
        return data

    def forget(self, conn: Conn) -> None:
        """Close ``conn`` without telling anyone."""
        conn.closed = True
        self.poller.unregister(conn.fd)
        self.by_fd.pop(conn.fd, None)
        conn.sock.close()

    def lost(self, conn: Conn, err: int | None) -> None:
        """``conn`` failed, or the server closed or reset it: close it, then tell its owner."""
        if conn.closed:
            return
        self.forget(conn)
        conn.on_close(conn, err)
