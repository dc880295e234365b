"""The TLS settings of a chatproto server and of its clients, in one place.

Owns building the ``ssl.SSLContext`` each side uses: a server's from a
certificate chain and its key, a client's from a CA file, the system's trust
store, or no verification at all (``--insecure``, for a test server with a
self-made certificate). Every tool that offers TLS (``chatproto-serve``,
``chatproto-chat``, ``chatproto-conformance``, ``chatproto-bench``) builds its
context here, so they agree on versions and on what a name check means.
"""

from __future__ import annotations

import ssl

__all__ = ["client_context", "describe_error", "server_context"]


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context presenting ``cert_file`` (a PEM chain) with ``key_file``.

    TLS 1.2 at least. Raises ``OSError`` (``ssl.SSLError`` included) when a
    file is missing, unreadable, or the key does not match the certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client context: verify against ``ca_file``, else the system's trust store.

    ``insecure`` verifies nothing (neither the chain nor the name): for a
    server with a certificate made for a test, never for a real one.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed TLS setup or handshake, for a user to act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
