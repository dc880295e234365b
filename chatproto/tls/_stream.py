"""One TLS connection without I/O: ciphertext in and out, plaintext in and out.

Owns :class:`TlsStream`, the stdlib's ``ssl.SSLObject`` over two
``ssl.MemoryBIO`` buffers, driven the sans-IO way: the caller reads bytes from
its socket and feeds them in (:meth:`TlsStream.receive`), and writes what
:meth:`TlsStream.data_to_send` hands out, whenever and however its runtime
writes (non-blocking sends, watchers, transports, tasks). The handshake runs
through the same two calls, so it never blocks anyone. Never touches a socket
or a clock: how long a handshake may take is the caller's timer.

Used by the server's data paths (``chatproto.adapters``) and by the load
generator's client sockets (``chatproto.bench``), so both sides of a TLS
connection in this project speak through the same twenty lines of OpenSSL
calls.
"""

from __future__ import annotations

import ssl
from typing import Final

__all__ = ["TlsStream"]

#: Plaintext read out of OpenSSL per call (it returns at most one record).
_READ: Final = 65536


class TlsStream:
    """TLS over memory buffers: feed ciphertext, get plaintext; queue plaintext, take ciphertext.

    ``receive`` raises :class:`ssl.SSLError` (an ``OSError``) when the peer
    breaks the protocol or fails verification: the connection is then
    unusable and should be closed without more ado, like a reset one.
    """

    __slots__ = ("_incoming", "_obj", "_outgoing", "closed", "established", "peer_closed")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        #: The handshake is done: :meth:`send` may be called.
        self.established = False
        #: The peer said it sends nothing more (its close_notify, or the end
        #: of the TCP stream): no more plaintext will come.
        self.peer_closed = False
        #: Our close_notify is queued (:meth:`close`): nothing more may be sent.
        self.closed = False

    # ------------------------------------------------------------------ in

    def start(self) -> None:
        """A client's first flight (ClientHello) into :meth:`data_to_send`."""
        self._handshake()

    def receive(self, data: bytes) -> bytes:
        """Feed ``data`` read from the socket; return the plaintext it completes.

        ``b""`` when it completed none (a partial record, a handshake message,
        the peer's close_notify: see :attr:`peer_closed`). Afterwards,
        :meth:`data_to_send` may hold bytes to write (the handshake's next
        flight, session tickets): the caller writes them. Input after the
        peer's close_notify is ignored.
        """
        if self.peer_closed:
            return b""
        self._incoming.write(data)
        if not self.established and not self._handshake():
            return b""
        obj, incoming = self._obj, self._incoming
        chunks = []
        try:
            while True:
                chunk = obj.read(_READ)
                if not chunk:  # close_notify (after ours, Python raises instead)
                    self.peer_closed = True
                    break
                chunks.append(chunk)
                if not incoming.pending and not obj.pending():
                    break  # all read: spare the exception a further read would raise
        except ssl.SSLWantReadError:
            pass  # a partial record: the rest comes with the next receive
        except ssl.SSLZeroReturnError:
            self.peer_closed = True
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def receive_eof(self) -> None:
        """The TCP stream ended: the peer sends nothing more, close_notify or not.

        A truncated stream is not an attack on a line protocol whose receiver
        drops a partial last line anyway; it is a client that closed rudely.
        """
        self.peer_closed = True

    def _handshake(self) -> bool:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True

    # ----------------------------------------------------------------- out

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` into :meth:`data_to_send`: after the handshake, before :meth:`close`."""
        if not self.established or self.closed:
            raise RuntimeError(
                "TlsStream.send() before the handshake is done or after close(); "
                f"established={self.established} closed={self.closed}"
            )
        self._obj.write(data)

    def close(self) -> None:
        """Queue our close_notify: we send nothing more (the peer may, until it closes too)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass  # the close_notify is queued; the peer's comes when it comes
        except ssl.SSLError:
            pass  # the session is broken already: there is nothing to say

    @property
    def version(self) -> str:
        """The protocol version agreed (``TLSv1.3``), or ``""`` before the handshake."""
        return self._obj.version() or ""

    @property
    def wants_write(self) -> bool:
        """Whether :meth:`data_to_send` has bytes."""
        return self._outgoing.pending > 0

    def data_to_send(self) -> bytes:
        """The ciphertext to write next, removed from the buffer (``b""``: none)."""
        return self._outgoing.read()
