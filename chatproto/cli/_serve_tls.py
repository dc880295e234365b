"""``chatproto-serve --tls-cert FILE --tls-key FILE``: the options and the server's context.

Owns the two options and turning them into the ``ssl.SSLContext`` the
adapters take (:func:`chatproto.tls.server_context`): both or neither, and a
certificate that cannot be loaded is one line naming the file and the reason,
not a traceback.
"""

from __future__ import annotations

import argparse
import ssl
import sys

from chatproto.tls import describe_error, server_context

__all__ = ["add_tls_options", "server_tls"]


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-cert`` and ``--tls-key`` to ``parser``."""
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=None,
        help="serve TLS with this certificate chain (PEM), with --tls-key (default: plain TCP)",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE",
        default=None,
        help="the private key (PEM) of --tls-cert (default: none, plain TCP)",
    )


def server_tls(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ssl.SSLContext | None:
    """The server context the options ask for, ``None`` for plain TCP.

    One of the two without the other is a usage error (exit 2). A file that
    cannot be loaded prints one line and raises ``SystemExit(1)``.
    """
    cert, key = args.tls_cert, args.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        parser.error("--tls-cert and --tls-key go together")
    try:
        return server_context(cert, key)
    except OSError as exc:
        print(
            f"chatproto-serve: cannot load the TLS certificate {cert} with key {key}: "
            f"{describe_error(exc)}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
