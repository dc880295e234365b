"""A certificate made on the spot: for tests, and for servers the conformance suite starts.

Owns :class:`ThrowawayCertificate`: a certificate authority and a server
certificate for the loopback names, made with ``trustme`` when asked for and
written as PEM files a server command can read (``chatproto-serve --tls-cert
... --tls-key ...``), with a client context that trusts that authority and
nothing else. No key is ever committed to the repository: each run makes
its own, and the files go with the temporary directory. Never for a real
server: the authority's key lives in this process.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from ._contexts import client_context

__all__ = ["LOOPBACK_NAMES", "ThrowawayCertificate", "TrustmeMissingError"]

#: The names a throwaway certificate is valid for: every way to say "this machine".
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


class TrustmeMissingError(RuntimeError):
    """``trustme`` is not installed, and a certificate was asked for."""


class ThrowawayCertificate:
    """A test CA, a server certificate it signed, and both as files in a temporary directory."""

    def __init__(self, names: tuple[str, ...] = LOOPBACK_NAMES) -> None:
        try:
            import trustme  # noqa: PLC0415 - a test tool, needed only here
        except ImportError:
            raise TrustmeMissingError(
                "making a test certificate needs trustme: pip install trustme"
            ) from None
        self._ca = trustme.CA(organization_name="chatproto throwaway CA")
        leaf = self._ca.issue_cert(*names)
        self._dir = tempfile.TemporaryDirectory(prefix="chatproto-tls-")
        folder = Path(self._dir.name)
        #: The server's certificate chain (PEM) and its private key (PEM).
        self.cert_file = str(folder / "cert.pem")
        self.key_file = str(folder / "key.pem")
        #: The authority's certificate (PEM): what a client trusts (``--tls-ca``).
        self.ca_file = str(folder / "ca.pem")
        Path(self.cert_file).write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(self.key_file)
        self._ca.cert_pem.write_to_path(self.ca_file)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this authority only (names checked)."""
        return client_context(self.ca_file)

    def close(self) -> None:
        """Delete the files (also done when the object is collected)."""
        self._dir.cleanup()
