"""A line client over a real TCP socket where every wait has a deadline.

Owns: one connection seen as a stream of lines, the deadline on every read and
write, and the transcript of what went each way. Never interprets a line (the
test context does, through the dialect) and never sleeps, except between the
pieces of a deliberately paced send.

Deadlines are absolute :func:`time.monotonic` values. Each wait is also capped
by the test's own end (``hard_end``), so no single call can outlive the test
that made it.

Over TLS (``tls://`` targets, ``--tls``) the same socket carries a
:class:`chatproto.tls.TlsStream`: every byte sent is encrypted first and every
byte read decrypted, so the tests see lines either way. A half-close is our
close_notify (TCP stays open); a reset is still a reset.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from chatproto.tls import TlsStream

__all__ = ["Line", "LineSocket", "PeerClosed", "ReadTimeout", "Transcript", "render_bytes"]

#: A line the server sends that is longer than this is an error on its side
#: (chatproto's own longest line is max_line_bytes + 40). 1 MiB guards the
#: suite's memory against a server that streams without newlines.
MAX_SERVER_LINE = 1 << 20
#: Transcript entries kept from the start of a test, and from its end.
TRANSCRIPT_HEAD = 300
TRANSCRIPT_TAIL = 100
#: Longest rendering of one line in a transcript.
RENDER_LIMIT = 160


class ReadTimeout(Exception):  # noqa: N818  (an expected outcome of a wait)
    """No complete line arrived before the deadline."""


class PeerClosed(Exception):  # noqa: N818  (an expected outcome of a wait)
    """The server closed the connection (or reset it) before a line arrived."""


def render_bytes(data: bytes, limit: int = RENDER_LIMIT) -> str:
    """``data`` as readable text: UTF-8 where valid, escapes for the rest.

    Control characters are escaped so that a transcript never acts on the
    terminal that shows it; long data is cut with its size noted.
    """
    text = data.decode("utf-8", "backslashreplace")
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t" or code >= 0xA0 or 0x20 <= code < 0x7F or ch == "\\":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if code > 0x7F else f"\\x{code:02x}")
    rendered = "".join(out)
    if len(rendered) > limit:
        keep = limit // 2
        rendered = f"{rendered[:keep]}...({len(data)} bytes)...{rendered[-20:]}"
    return rendered


@dataclass(frozen=True, slots=True)
class Entry:
    """One transcript entry: ``conn`` ``kind`` ``text`` at ``t`` seconds into the test.

    ``kind`` is ``>`` (sent), ``<`` (received), ``*`` (a note: connection
    events, waits, dialect decisions).
    """

    t: float
    conn: str
    kind: str
    text: str

    def render(self) -> str:
        """The entry as one transcript line."""
        return f"{self.t:7.3f} {self.conn}{self.kind} {self.text}"


@dataclass
class Transcript:
    """What a test sent and received, in order, bounded in size.

    The first :data:`TRANSCRIPT_HEAD` and last :data:`TRANSCRIPT_TAIL`
    entries are kept; the middle of a flood is counted, not stored.
    """

    start: float = field(default_factory=time.monotonic)
    head: list[Entry] = field(default_factory=list)
    tail: deque[Entry] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_TAIL))
    elided: int = 0

    def add(self, conn: str, kind: str, text: str) -> None:
        """Record one entry, timestamped now."""
        entry = Entry(round(time.monotonic() - self.start, 3), conn, kind, text)
        if len(self.head) < TRANSCRIPT_HEAD:
            self.head.append(entry)
            return
        if len(self.tail) == self.tail.maxlen:
            self.elided += 1
        self.tail.append(entry)

    def note(self, conn: str, text: str) -> None:
        """Record a note about ``conn`` (``""`` for the whole test)."""
        self.add(conn, "*", text)

    def lines(self) -> list[str]:
        """The transcript, rendered, with a marker where entries were dropped."""
        out = [e.render() for e in self.head]
        if self.elided:
            out.append(f"        ... {self.elided} entries not shown ...")
        out.extend(e.render() for e in self.tail)
        return out


@dataclass(frozen=True, slots=True)
class Line:
    """One line from the server: its bytes without terminator, and how it ended."""

    raw: bytes
    #: Whether it ended with ``\\r\\n`` rather than ``\\n`` alone.
    crlf: bool

    @property
    def text(self) -> str:
        """The line decoded as UTF-8 (invalid bytes replaced)."""
        return self.raw.decode("utf-8", "replace")


class LineSocket:
    """One client connection: send bytes, read lines, all with deadlines.

    The socket stays in blocking mode with a timeout set before each call, so
    a read never waits past its deadline. ``record`` is where both directions
    are written down.
    """

    def __init__(
        self,
        sock: socket.socket,
        label: str,
        record: Transcript,
        hard_end: float,
        tls: TlsStream | None = None,
    ) -> None:
        self.sock = sock
        #: The TLS layer over ``sock``, once its handshake is done (``None``: plain TCP).
        self.tls = tls
        self.label = label
        self.record = record
        self.hard_end = hard_end
        self._buf = bytearray()
        # How far the search for "\n" got in _buf, so reads stay O(n).
        self._scanned = 0
        self.eof = False
        self.closed = False
        #: Lines read ahead while sending (send_draining), not yet consumed.
        self._ready: deque[Line] = deque()
        #: Whether to write each received line into the transcript.
        self.verbose = True

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        label: str,
        record: Transcript,
        deadline: float,
        hard_end: float,
        *,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> LineSocket:
        """Open a connection; raise :class:`OSError` if it cannot be made in time.

        With ``tls``, the TLS handshake is part of connecting (its failure,
        a certificate that does not verify included, is an ``OSError`` too).
        """
        timeout = max(0.01, min(deadline, hard_end) - time.monotonic())
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                # Must be set before connect to shrink the advertised window.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        record.note(label, f"connected to {address[0]}:{address[1]}")
        wire = cls(sock, label, record, hard_end)
        if tls is not None:
            try:
                wire._handshake(tls, address[0], min(deadline, hard_end))
            except OSError:
                sock.close()
                raise
        return wire

    def _handshake(self, context: ssl.SSLContext, host: str, deadline: float) -> None:
        stream = TlsStream(context, server_side=False, server_hostname=host)
        stream.start()
        while True:
            self.sock.sendall(stream.data_to_send())
            if stream.established:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the TLS handshake did not finish in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed during the TLS handshake")
            self._buf += stream.receive(data)
        self.tls = stream
        self.record.note(self.label, f"TLS handshake done ({stream.version})")

    # ----------------------------------------------------------------- send

    def send(self, data: bytes, *, note: str | None = None) -> None:
        """Send all of ``data`` (recorded line by line, or as ``note``)."""
        self._record_sent(data, note)
        self._sendall(data, self.hard_end)

    def send_paced(self, pieces: Iterable[bytes], gap: float, *, note: str | None = None) -> None:
        """Send ``pieces`` one by one, ``gap`` seconds apart.

        The gap is pacing, not synchronisation: with ``TCP_NODELAY`` it makes
        each piece leave as its own segment, as a slow network would.
        """
        chunks = list(pieces)
        self._record_sent(b"".join(chunks), note or f"(sent in {len(chunks)} pieces)")
        for i, piece in enumerate(chunks):
            if i:
                time.sleep(gap)
            self._sendall(piece, self.hard_end)

    def send_draining(self, data: bytes, deadline: float, *, note: str | None = None) -> None:
        """Send ``data`` while reading, so a server that answers as it reads never blocks.

        Lines read meanwhile are kept for :meth:`read_line`. Raises
        :class:`ReadTimeout` if the server does not take the data in time.
        """
        self._record_sent(data, note)
        view = memoryview(self._encrypted(data))
        sel = selectors.DefaultSelector()
        try:
            self.sock.setblocking(False)
            sel.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while view:
                remaining = min(deadline, self.hard_end) - time.monotonic()
                if remaining <= 0:
                    raise ReadTimeout(f"server did not take {len(view)} more bytes in time")
                for _key, mask in sel.select(remaining):
                    if mask & selectors.EVENT_READ and not self.eof:
                        self._recv_nonblocking()
                        if self.eof:
                            sel.modify(self.sock, selectors.EVENT_WRITE)
                    if mask & selectors.EVENT_WRITE:
                        try:
                            sent = self.sock.send(view[:65536])
                        except (BlockingIOError, InterruptedError):
                            sent = 0
                        view = view[sent:]
        finally:
            sel.close()
            if not self.closed:
                self.sock.setblocking(True)

    def _recv_nonblocking(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk and self.tls is not None:
            chunk = self._decrypted(chunk)
            if not chunk and not self.eof:
                return  # a partial record, or TLS's own: nothing for us yet
        if not chunk:
            self.eof = True
            return
        self._buf += chunk
        while True:
            line = self._split_line()
            if line is None:
                break
            self._ready.append(line)

    def _encrypted(self, data: bytes) -> bytes:
        """``data`` as it goes on the wire: itself, or its TLS records."""
        if self.tls is None:
            return data
        self.tls.send(data)
        return self.tls.data_to_send()

    def _decrypted(self, data: bytes) -> bytes:
        """The plaintext in ``data`` read over TLS; sets :attr:`eof` at the server's close_notify.

        A broken TLS stream ends the connection as a reset would.
        """
        assert self.tls is not None
        try:
            plain = self.tls.receive(data)
        except ssl.SSLError as exc:
            self.record.note(self.label, f"TLS failed: {exc.reason or exc}")
            self.eof = True
            return b""
        if self.tls.wants_write:  # TLS's own answer (a key update): rare, small
            try:
                self.sock.send(self.tls.data_to_send())
            except OSError:
                pass
        if self.tls.peer_closed and not plain:
            self.eof = True
        return plain

    def _record_sent(self, data: bytes, note: str | None) -> None:
        if note is not None:
            self.record.add(self.label, ">", note)
            return
        parts = data.split(b"\n")
        for i, part in enumerate(parts):
            if i < len(parts) - 1:
                self.record.add(self.label, ">", render_bytes(part))
            elif part:
                self.record.add(self.label, ">", render_bytes(part) + "  (no newline)")

    def _sendall(self, data: bytes, deadline: float) -> None:
        remaining = min(deadline, self.hard_end) - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("no time left to send")
        data = self._encrypted(data)
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise ReadTimeout(f"the server did not take {len(data)} bytes in time") from None

    # ----------------------------------------------------------------- read

    def read_line(self, deadline: float) -> Line:
        """The next line; :class:`ReadTimeout` at the deadline, :class:`PeerClosed` at EOF."""
        line = self._next_buffered()
        while line is None:
            if self.eof:
                raise PeerClosed(self._eof_text())
            remaining = min(deadline, self.hard_end) - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout("no line before the deadline")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise ReadTimeout("no line before the deadline") from None
            except ConnectionResetError:
                chunk = b""
                self.record.note(self.label, "connection reset by the server")
            except OSError as exc:
                chunk = b""
                self.record.note(self.label, f"read failed: {exc}")
            if chunk and self.tls is not None:
                chunk = self._decrypted(chunk)
                if not chunk and not self.eof:
                    continue  # a partial record, or TLS's own: read on
            if not chunk:
                self.eof = True
                self.record.note(self.label, "closed by the server")
                continue
            self._buf += chunk
            line = self._next_buffered()
        return line

    def has_buffered_line(self) -> bool:
        """Whether a complete line is already here (no wait needed)."""
        if self._ready:
            return True
        return self._buf.find(b"\n", self._scanned) >= 0

    def discard_lines(self) -> None:
        """Forget every line received so far (a connection kept only to stay logged in)."""
        self._ready.clear()
        end = self._buf.rfind(b"\n")
        if end >= 0:
            del self._buf[: end + 1]
            self._scanned = 0

    def read_available(self) -> None:
        """Read whatever is waiting without blocking (to notice EOF or lines)."""
        if self.eof or self.closed:
            return
        self.sock.setblocking(False)
        try:
            self._recv_nonblocking()
        finally:
            self.sock.setblocking(True)
        if self.eof:
            self.record.note(self.label, "closed by the server")

    def _eof_text(self) -> str:
        if self._buf:
            return f"closed by the server after a partial line {render_bytes(bytes(self._buf))!r}"
        return "closed by the server"

    def _next_buffered(self) -> Line | None:
        line = self._ready.popleft() if self._ready else self._split_line()
        if line is not None and self.verbose:
            self.record.add(
                self.label, "<", render_bytes(line.raw) + ("  (CRLF)" if line.crlf else "")
            )
        return line

    def _split_line(self) -> Line | None:
        buf = self._buf
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > MAX_SERVER_LINE:
                raise PeerClosed(f"the server sent over {MAX_SERVER_LINE} bytes without a newline")
            return None
        raw = bytes(buf[:end])
        del buf[: end + 1]
        self._scanned = 0
        crlf = raw.endswith(b"\r")
        return Line(raw[:-1] if crlf else raw, crlf)

    # ---------------------------------------------------------------- close

    def shutdown_write(self, *, note: bool = True) -> None:
        """Half-close: we will send nothing more.

        Over TLS that is our close_notify alone, as TLS 1.3 defines a
        half-close: TCP stays open both ways until the server closes.
        """
        if note:
            self.record.note(self.label, "half-close (shutdown of the sending side)")
        try:
            if self.tls is None:
                self.sock.shutdown(socket.SHUT_WR)
                return
            self.tls.close()
            self.sock.settimeout(max(0.01, self.hard_end - time.monotonic()))
            self.sock.sendall(self.tls.data_to_send())
        except OSError:
            pass

    def reset(self) -> None:
        """Abort the connection with a TCP reset (``SO_LINGER`` 0)."""
        self.record.note(self.label, "reset (RST)")
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._close_socket()

    def close(self) -> None:
        """Close normally (FIN)."""
        if not self.closed:
            self.record.note(self.label, "closed by the client")
        self._close_socket()

    def close_quietly(self) -> None:
        """Close without recording anything (cleanup after a test)."""
        self._close_socket()

    def _close_socket(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
