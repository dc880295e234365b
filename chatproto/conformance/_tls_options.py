"""The suite's TLS options: ``tls://HOST:PORT``, ``--tls``, ``--tls-ca``, ``--insecure``.

Owns what they mean for each kind of target. A running server
(``tls://HOST:PORT``, or ``tcp://HOST:PORT --tls``) is verified against
``--tls-ca FILE`` or the system's trust store, or not at all with
``--insecure``. A server the suite starts (``--backend``, ``--server-cmd``)
gets a certificate the suite makes for the run (with trustme), which the suite
trusts and nothing else does: ``--backend`` passes it to ``chatproto-serve``;
a ``--server-cmd`` names the files with ``{tls_cert}`` and ``{tls_key}``.
"""

from __future__ import annotations

import argparse
import ssl

from chatproto.tls import ThrowawayCertificate, TrustmeMissingError, client_context, describe_error

__all__ = ["TlsOptionError", "add_tls_options", "remote_tls", "suite_certificate"]


class TlsOptionError(ValueError):
    """The TLS options do not fit the target (a usage error)."""


def add_tls_options(p: argparse.ArgumentParser) -> None:
    """Add ``--tls``, ``--tls-ca`` and ``--insecure`` to a subcommand that takes a target."""
    p.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS: to a running server (like tls://HOST:PORT), or to one the suite "
        "starts, with a certificate the suite makes ({tls_cert} {tls_key}; needs trustme)",
    )
    p.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="verify a tls:// server's certificate against this CA (PEM) instead of the system's",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify a tls:// server's certificate (a test server's own)",
    )


def remote_tls(args: argparse.Namespace, url_says_tls: bool) -> ssl.SSLContext | None:
    """The client context for a running server, or ``None`` for plain TCP."""
    if not (url_says_tls or args.tls):
        if args.tls_ca or args.insecure:
            raise TlsOptionError("--tls-ca and --insecure go with tls://HOST:PORT (or --tls)")
        return None
    if args.tls_ca and args.insecure:
        raise TlsOptionError("give --tls-ca or --insecure, not both")
    try:
        return client_context(args.tls_ca, insecure=args.insecure)
    except OSError as exc:
        raise TlsOptionError(f"cannot use --tls-ca {args.tls_ca}: {describe_error(exc)}") from None


def suite_certificate(args: argparse.Namespace, command: str | None) -> ThrowawayCertificate | None:
    """A certificate for a server the suite starts with ``--tls``, or ``None`` without.

    ``command`` is a ``--server-cmd`` (``None`` for ``--backend``): it must say
    where its certificate and key go.
    """
    if args.tls_ca or args.insecure:
        raise TlsOptionError(
            "--tls-ca and --insecure are for tls://HOST:PORT; a server the suite starts "
            "gets the suite's own certificate (--tls)"
        )
    if not args.tls:
        return None
    if command is not None and not ("{tls_cert}" in command and "{tls_key}" in command):
        raise TlsOptionError(
            "--tls with --server-cmd: put {tls_cert} and {tls_key} where the server takes "
            "its certificate and key files"
        )
    try:
        return ThrowawayCertificate()
    except TrustmeMissingError as exc:
        raise TlsOptionError(f"--tls on a server the suite starts: {exc}") from None
