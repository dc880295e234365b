"""TLS on the server's data paths: between a connection's socket and the core.

Owns :class:`ServerTls`, the TLS stream of one served connection
(:class:`chatproto.tls.TlsStream` with the server's side of the contract):
what it reads is decrypted before the core sees it, and what the core has for
the connection is encrypted only once the handshake is done, so a backlog
waits in the core, where the slow-consumer limits apply. Every data path
(threads, gevent's watchers, asyncio and uvloop transports, anyio streams on
trio) drives it the same way, so TLS behaves the same on all five flavours:

* the handshake runs through the connection's own reads and writes, never
  blocking anything, and is bounded by the core's idle timer, which runs from
  admission: a client that never completes it is closed like an idle one;
* a close the core decides (QUIT, idle, shutdown...) sends the last lines, then
  our close_notify, then FIN;
* the peer's close_notify is its end of stream (a half-close, as FIN is for
  plain TCP): the lines before it still run and are answered.

Never parses a line and never decides anything the core decides.
"""

from __future__ import annotations

import ssl
from typing import Final

from chatproto import ChatServer, CloseMode, ConnId
from chatproto.tls import TlsStream

__all__ = ["TLS_REFUSALS", "ServerTls"]

_AFTER_FLUSH = CloseMode.AFTER_FLUSH
#: Refused connections (server full) that are served over TLS at the same
#: time, just long enough to carry their ``ERR server-full`` (which needs a
#: handshake). Past this many, more are closed at once without a word: a
#: connection flood must not cost more than this many sockets and handshakes.
TLS_REFUSALS: Final = 64


class ServerTls(TlsStream):
    """The TLS stream of one served connection, with what the core has to send."""

    __slots__ = ("flush_due",)

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context, server_side=True)
        #: The last :meth:`receive` left something to write: TLS's own records,
        #: or the core's output, now that the handshake is done.
        self.flush_due = False

    def receive(self, data: bytes) -> bytes:
        """Decrypt ``data`` read from the socket: the plaintext for the core.

        Afterwards, when :attr:`flush_due`, the data path writes the
        connection (as it does after the core's news). Raises
        :class:`ssl.SSLError`, an ``OSError``, when the peer breaks TLS: close
        the connection, as after a reset.
        """
        was = self.established
        plain = super().receive(data)
        self.flush_due = self.wants_write or (self.established and not was)
        return plain

    def take(self, core: ChatServer, conn: ConnId, now: float, max_bytes: int) -> bytes:
        """The ciphertext to write next for ``conn``; ``b""`` when there is none yet.

        TLS's own records first (handshake, tickets), then the core's output,
        about ``max_bytes`` at a time (call again while the socket takes
        more), and once the core's output is all out and it says close after
        flushing, our close_notify. Before the handshake is done the core's
        output stays in the core.
        """
        if self.wants_write:
            return self.data_to_send()
        if not self.established or self.closed:
            return b""
        data = core.data_to_send(conn, now=now, max_bytes=max_bytes)
        if data:
            try:
                self.send(data)
            except ssl.SSLError:
                # The session cannot encrypt any more (never seen, but a
                # writer must not die of it): it is finished, like a closed one.
                self.closed = True
                return b""
        elif core.close_mode(conn) is _AFTER_FLUSH:
            self.close()
        return self.data_to_send()

    @property
    def done(self) -> bool:
        """Nothing more will be written: our close_notify is queued, or no handshake can finish.

        A data path that the core told to close after flushing sends its FIN
        once :meth:`take` is empty and this is true; until then it waits (a
        handshake still under way gets its chance, bounded by the core's
        ``close_timeout``, after which the core says close now).
        """
        return self.closed or (self.peer_closed and not self.established)
