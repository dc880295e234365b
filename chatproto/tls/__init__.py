"""TLS for chatproto's servers and tools, on the standard library's ``ssl`` alone.

* :class:`TlsStream`: one TLS connection as a sans-IO object (``ssl.SSLObject``
  over memory buffers): the server's data paths and the load generator's
  client sockets both drive it.
* :func:`server_context`, :func:`client_context`: the ``ssl.SSLContext`` of
  each side, built the same way by every tool.
* :class:`ThrowawayCertificate`: a CA and a certificate made on the spot
  (with ``trustme``), for tests and for servers the conformance suite starts.

docs/operations.md explains the options (``--tls-cert``, ``--tls-key``,
``--tls``, ``--tls-ca``, ``--insecure``). ``import chatproto`` does not load
this package.
"""

from ._contexts import client_context, describe_error, server_context
from ._stream import TlsStream
from ._throwaway import LOOPBACK_NAMES, ThrowawayCertificate, TrustmeMissingError

__all__ = [
    "LOOPBACK_NAMES",
    "ThrowawayCertificate",
    "TlsStream",
    "TrustmeMissingError",
    "client_context",
    "describe_error",
    "server_context",
]
