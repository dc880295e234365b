"""The smallest complete chatproto server: the core in a stdlib ``selectors`` loop.

No adapter, no threads, no third-party code: one non-blocking loop that

* accepts, and turns away at once the connections the core refuses,
* reads one chunk per ready socket per turn, only from the connections whose
  input the core takes now, and feeds it to :class:`chatproto.ChatServer`
  with the time,
* writes what the core queued, but only when the socket can take more (so the
  backlog, and the slow-consumer limits on it, stay in the core),
* closes gracefully: the output, our FIN, then reads and discards until the
  peer's FIN (or the core's ``close_timeout``), so a reset never destroys the
  last lines,
* sleeps until the core's next deadline, and shuts down on SIGINT/SIGTERM.

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

from chatproto import ChatServer, CloseMode, ConnectionRefused, ConnId, ServerConfig

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CHUNK = 65536  # the most read from (or taken for) one socket at a time


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
        self.paused: set[ConnId] = set()  # the core does not take their input now
        self.eof: set[ConnId] = set()  # the peer sent its FIN
        self.fin_sent: set[ConnId] = set()  # we sent ours
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
                elif key.data in self.socks:
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
        for _ in range(64):  # a bounded batch: the others get their turn
            try:
                sock, _ = self.listener.accept()
            except OSError:  # nothing more, an aborted handshake, or out of files
                return
            admitted = self.core.accept(time.monotonic())
            if isinstance(admitted, ConnectionRefused):
                try:  # one line, never waiting for the client, then close
                    sock.setblocking(False)
                    sock.send(admitted.data)
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks[admitted] = sock
            self.sel.register(sock, READ, admitted)

    def on_socket(self, conn: ConnId, mask: int) -> None:
        if mask & READ:
            try:
                data = self.socks[conn].recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self.close(conn)
                return
            if data:
                self.core.receive_data(conn, data, time.monotonic())
            elif data is not None:  # the peer's FIN
                if conn in self.fin_sent:
                    self.close(conn)  # both sides done
                    return
                self.eof.add(conn)
                self.watch(conn)
                self.core.receive_eof(conn, time.monotonic())
        if mask & WRITE:
            self.flush(conn)

    def service(self) -> None:
        """Act on the core's news: whom to read, whom to write to or close."""
        for conn, read in self.core.take_reading_changes():
            (self.paused.discard if read else self.paused.add)(conn)
            if conn in self.socks:
                self.watch(conn)
        for conn in self.core.take_ready():
            if conn in self.socks:
                self.flush(conn)

    def flush(self, conn: ConnId) -> None:
        """Write until the kernel pushes back; our FIN when the core says close."""
        sock = self.socks[conn]
        mode = self.core.close_mode(conn)
        if mode is CloseMode.NOW:
            self.close(conn)
            return
        if conn not in self.fin_sent:
            if not self.write(conn, sock):
                return
            if mode is CloseMode.AFTER_FLUSH and conn not in self.unsent:
                if conn in self.eof:
                    self.close(conn)  # the peer is done already
                    return
                self.fin_sent.add(conn)  # then read and discard until the peer's FIN
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    self.close(conn)
                    return
        self.watch(conn)

    def write(self, conn: ConnId, sock: socket.socket) -> bool:
        """Send what the core has; ``False`` if the connection broke (and is closed)."""
        while True:
            pending = self.unsent.pop(conn, None)
            if pending is None:
                data = self.core.data_to_send(conn, now=time.monotonic(), max_bytes=CHUNK)
                if not data:
                    return True
                pending = memoryview(data)
            try:
                sent = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close(conn)
                return False
            if sent < len(pending):
                self.unsent[conn] = pending[sent:]
                return True

    def watch(self, conn: ConnId) -> None:
        """Select what ``conn`` needs: reading unless paused or ended, writing if behind."""
        reading = conn not in self.paused and conn not in self.eof
        events = (READ if reading else 0) | (WRITE if conn in self.unsent else 0)
        sock, selected = self.socks[conn], self.sel.get_map()
        if events and sock in selected:
            self.sel.modify(sock, events, conn)
        elif events:
            self.sel.register(sock, events, conn)
        elif sock in selected:
            self.sel.unregister(sock)

    def close(self, conn: ConnId) -> None:
        sock = self.socks.pop(conn)
        self.unsent.pop(conn, None)
        for marks in (self.paused, self.fin_sent, self.eof):
            marks.discard(conn)
        if sock in self.sel.get_map():
            self.sel.unregister(sock)
        sock.close()
        self.core.connection_lost(conn, time.monotonic())


def main(argv: list[str] | None = None) -> int:
    # Plain words: the module docstring is reStructuredText for the docs.
    parser = argparse.ArgumentParser(
        description="The smallest complete chatproto server: the core in a stdlib selectors loop."
    )
    parser.add_argument("--host", default="127.0.0.1", help="(default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="0 picks a free one (default 4000)")
    parser.add_argument(
        "--idle-timeout", type=float, default=60.0, help="seconds of silence (default 60)"
    )
    parser.add_argument(
        "--max-clients", type=int, default=10_000, help="connections at once (default 10000)"
    )
    parser.add_argument(
        "--flood-rate", type=float, default=50.0, help="lines per second (default 50; 0: off)"
    )
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, args.port), reuse_port=False, backlog=1024)
    listener.setblocking(False)
    config = ServerConfig(
        idle_timeout=args.idle_timeout, max_clients=args.max_clients, flood_rate=args.flood_rate
    )
    server = SelectorsServer(listener, config)

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
