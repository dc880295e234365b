"""The smallest complete chatproto server: the core in a stdlib ``selectors`` loop.

No adapter, no threads, no third-party code: one non-blocking loop that

* accepts, reads and feeds bytes to :class:`chatproto.ChatServer` with the time,
* writes what the core queued, but only when the socket can take more (so the
  backlog, and the slow-consumer cap on it, stay in the core),
* closes what the core says to close,
* sleeps until the core's next deadline (idle timeouts, closing grace),
* shuts down gracefully on SIGINT/SIGTERM.

Every protocol decision is the core's; this file only moves bytes.

Run: ``python examples/selectors_server.py --port 4000`` (``--port 0`` picks a
free port and prints it).
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


class SelectorsServer:
    """Wires one :class:`ChatServer` to sockets through a selector."""

    def __init__(self, listener: socket.socket, config: ServerConfig) -> None:
        self.core = ChatServer(config)
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, READ)
        # Signal handlers only set a flag and poke this socket pair, so that
        # the loop (not the handler) does the shutdown, between selects.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, READ)
        self.stop_requested = False
        self.socks: dict[ConnId, socket.socket] = {}
        # Bytes taken from the core but not yet accepted by the kernel.
        self.unsent: dict[ConnId, memoryview] = {}
        self.stopping = False

    def run(self) -> None:
        """Serve until shut down and every connection is closed."""
        while not (self.stopping and self.core.connection_count == 0):
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, mask in self.sel.select(timeout):
                if key.fileobj is self.listener:
                    self.accept()
                elif key.fileobj is self.wake_r:
                    self.wake_r.recv(4096)
                    if self.stop_requested:
                        self.stop()
                else:
                    self.on_socket(ConnId(key.data), mask)
            now = time.monotonic()
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= now:
                self.core.handle_timeout(now)
            self.service()

    def request_stop(self) -> None:
        """Ask for a graceful shutdown; safe to call from a signal handler."""
        self.stop_requested = True
        try:
            self.wake_w.send(b"!")
        except OSError:
            pass  # the pair is full: the loop is awake anyway

    def stop(self) -> None:
        """Begin a graceful shutdown, from inside the loop."""
        if not self.stopping:
            self.stopping = True
            self.sel.unregister(self.listener)
            self.listener.close()
            self.core.shutdown(time.monotonic())

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, aborted handshake
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self.core.connection_made(time.monotonic())
            self.socks[conn] = sock
            self.sel.register(sock, READ, conn)

    def on_socket(self, conn: ConnId, mask: int) -> None:
        sock = self.socks[conn]
        if mask & READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self.close(conn)
                return
            now = time.monotonic()
            if data:
                self.core.receive_data(conn, data, now)
            elif data is not None:
                # End of stream. The core now says AFTER_FLUSH, and service()
                # stops reading, writes what is left and closes.
                self.core.receive_eof(conn, now)
        if mask & WRITE:
            self.flush(conn)

    def service(self) -> None:
        """Act on every connection the core has news for."""
        for conn in self.core.take_ready():
            if conn in self.socks:
                self.flush(conn)

    def flush(self, conn: ConnId) -> None:
        """Write until the kernel pushes back; close when the core says so."""
        sock = self.socks[conn]
        if self.core.close_mode(conn) is CloseMode.NOW:
            self.close(conn)
            return
        while True:
            pending = self.unsent.pop(conn, None)
            if pending is None:
                data = self.core.data_to_send(conn)
                if not data:
                    break
                pending = memoryview(data)
            try:
                sent = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close(conn)
                return
            if sent < len(pending):
                self.unsent[conn] = pending[sent:]
                self.sel.modify(sock, READ | WRITE if self._reading(conn) else WRITE, conn)
                return
        if self.core.close_mode(conn) is CloseMode.AFTER_FLUSH:
            self.close(conn)
        else:
            self.sel.modify(sock, READ, conn)

    def _reading(self, conn: ConnId) -> bool:
        return self.core.close_mode(conn) is CloseMode.OPEN

    def close(self, conn: ConnId) -> None:
        sock = self.socks.pop(conn)
        self.unsent.pop(conn, None)
        self.sel.unregister(sock)
        sock.close()
        self.core.connection_lost(conn, time.monotonic())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--idle-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, args.port), reuse_port=False, backlog=1024)
    listener.setblocking(False)
    server = SelectorsServer(listener, ServerConfig(idle_timeout=args.idle_timeout))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    host, port = listener.getsockname()[:2]
    print(f"selectors_server listening on {host}:{port}", flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
