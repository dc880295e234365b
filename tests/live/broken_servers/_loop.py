"""A correct chat server (the chatproto core in a selectors loop) with hooks to break it.

Each broken server in this directory subclasses :class:`LoopServer` and
overrides one hook to add one bug, so that everything else stays correct: the
conformance suite must flag that bug and nothing else. Run one as
``python tests/live/broken_servers/NAME.py PORT [--idle-timeout S] [--max-clients N]``;
it prints ``listening on 127.0.0.1:PORT`` when ready.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
import time
from types import FrameType

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class LoopServer:
    """The core behind non-blocking sockets; one hook per step a bug can hide in."""

    def __init__(self, port: int, *, idle_timeout: float = 60.0, max_clients: int = 10_000) -> None:
        self.core = ChatServer(self.configure(idle_timeout, max_clients))
        self.listener = socket.create_server(("127.0.0.1", port), backlog=512)
        self.listener.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, READ)
        self.socks: dict[ConnId, socket.socket] = {}
        self.unsent: dict[ConnId, bytes] = {}
        # SIGTERM only pokes this pair; the loop shuts down between selects.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, READ)
        self.stopping = False

    # ------------------------------------------------------------- hooks

    def configure(self, idle_timeout: float, max_clients: int) -> ServerConfig:
        """The core's limits."""
        # No flood control or backpressure: this loop does not obey the core's
        # reading decisions (the mutants are about other bugs), and the suite
        # pipelines thousands of lines.
        return ServerConfig(
            flood_rate=0.0,
            backpressure_timeout=0.0,
            idle_timeout=idle_timeout,
            max_clients=max_clients,
        )

    def feed(self, conn: ConnId, data: bytes) -> None:
        """Bytes arrived on ``conn``."""
        self.core.receive_data(conn, data, time.monotonic())

    def peer_closed(self, conn: ConnId) -> None:
        """The client closed its side (or the connection broke)."""
        self.core.receive_eof(conn, time.monotonic())

    def write(self, conn: ConnId, data: bytes) -> None:
        """Queue ``data`` for ``conn``; :meth:`flush` sends it when the socket can take it."""
        self.unsent[conn] = self.unsent.get(conn, b"") + data

    def drain_ready(self) -> None:
        """Hand on the output the core has for each connection (once per loop iteration)."""
        for conn in self.core.take_ready():
            if conn in self.socks:
                self.flush(conn)

    def after_iteration(self) -> None:
        """Called once per loop iteration, after all output was handed on."""

    # -------------------------------------------------------------- loop

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        try:
            self.wake_w.send(b"!")
        except OSError:
            pass

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        host, port = self.listener.getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        while not (self.stopping and self.core.connection_count == 0):
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, mask in self.sel.select(timeout):
                if key.fileobj is self.listener:
                    self.accept()
                    continue
                if key.fileobj is self.wake_r:
                    self.wake_r.recv(64)
                    if not self.stopping:
                        self.stopping = True
                        self.sel.unregister(self.listener)
                        self.listener.close()
                        self.core.shutdown(time.monotonic())
                    continue
                conn = ConnId(key.data)
                if mask & READ:
                    self.read(conn)
                if mask & WRITE and conn in self.socks:
                    self.flush(conn)
            now = time.monotonic()
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= now:
                self.core.handle_timeout(now)
            self.drain_ready()
            self.after_iteration()

    def accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        conn = self.core.connection_made(time.monotonic())
        self.socks[conn] = sock
        self.sel.register(sock, READ, conn)

    def read(self, conn: ConnId) -> None:
        sock = self.socks.get(conn)
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.feed(conn, data)
        elif self.core.close_mode(conn) is CloseMode.OPEN:
            self.peer_closed(conn)
        else:
            self.close(conn)  # closing anyway, and the peer is gone: stop reading

    def flush(self, conn: ConnId) -> None:
        """Send what is unsent, then what the core has, until the socket pushes back.

        Output is taken from the core only when the socket can take it, so the
        backlog (and the slow-consumer cap on it) stays in the core.
        """
        sock = self.socks.get(conn)
        if sock is None:
            return
        if self.core.close_mode(conn) is CloseMode.NOW:
            self.close(conn)
            return
        while True:
            pending = self.unsent.pop(conn, b"") or self.core.data_to_send(conn)
            if not pending:
                break
            try:
                sent = sock.send(pending)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.close(conn)
                return
            if sent < len(pending):
                self.unsent[conn] = pending[sent:]
                self.sel.modify(sock, READ | WRITE, conn)
                return
        if self.core.close_mode(conn) is CloseMode.AFTER_FLUSH:
            self.close(conn)
        else:
            self.sel.modify(sock, READ, conn)

    def close(self, conn: ConnId) -> None:
        sock = self.socks.pop(conn)
        self.unsent.pop(conn, None)
        self.sel.unregister(sock)
        sock.close()
        self.core.connection_lost(conn, time.monotonic())


def main(cls: type[LoopServer], argv: list[str] | None = None) -> None:
    """Run ``cls`` with the port (and limits) given on the command line (or ``argv``)."""
    parser = argparse.ArgumentParser(prog=cls.__name__)
    parser.add_argument("port", type=int)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    parser.add_argument("--max-clients", type=int, default=10_000)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cls(args.port, idle_timeout=args.idle_timeout, max_clients=args.max_clients).run()


if __name__ == "__main__":
    main(LoopServer)
