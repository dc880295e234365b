"""``chatproto-chat``: an interactive terminal client for any server of the protocol.

This module is the command line (arguments, the name to log in under, colour
or not); the client is built from layers, each testable without the next:

* :mod:`._chat_input`: :func:`parse_input`, what the user typed (``hello``,
  ``/dm bob hi``, ``/who`` ...) as an :data:`InputAction`. Pure.
* :mod:`._chat_format`: :func:`format_event`, what the server sent as lines
  for a human (name, timestamp, colour), :func:`sanitize`-d. Pure.
* :mod:`._chat_client`: :class:`ChatClient`, the client's bookkeeping around
  a :class:`~chatproto.ClientSession` (login, ``/ping`` round trips,
  ``/who``, keepalive). No I/O: fed text, bytes and the time; drained of
  bytes to send, like the core, whose session knows which reply answers what.
* :mod:`._chat_console` and :mod:`._chat_run`: :func:`run`, a thin asyncio
  driver moving bytes between a TCP socket, the terminal and
  :class:`ChatClient`. Under prompt_toolkit (the ``chat`` extra) incoming
  lines are printed above the prompt and never garble what the user is
  typing; without it, or with ``--plain``, or when stdin is not a terminal, it
  reads plain lines from stdin.

Nothing here assumes chatproto's own server: it needs only the wire protocol
of docs/protocol.md, and shows lines it does not understand as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Sequence
from typing import Final

from chatproto import is_valid_username
from chatproto.tls import client_context, describe_error

from ._chat_client import DEFAULT_KEEPALIVE, NAME_RULE, ChatClient
from ._chat_format import format_event, notice, sanitize
from ._chat_input import (
    HELP_LINES,
    AskPing,
    AskWho,
    BadInput,
    InputAction,
    Leave,
    LoginAs,
    SendDm,
    SendRaw,
    SendText,
    ShowHelp,
    parse_input,
)
from ._chat_run import QUIT_GRACE, run
from ._version import add_version_option

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_PORT",
    "HELP_LINES",
    "QUIT_GRACE",
    "AskPing",
    "AskWho",
    "BadInput",
    "ChatClient",
    "InputAction",
    "Leave",
    "LoginAs",
    "SendDm",
    "SendRaw",
    "SendText",
    "ShowHelp",
    "format_event",
    "main",
    "notice",
    "parse_input",
    "run",
    "sanitize",
]

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 4000


def _default_name() -> str | None:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        return None
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", user)[:32]
    return cleaned or None


def _ask_name() -> str | None:
    from prompt_toolkit import prompt  # noqa: PLC0415 - optional extra

    default = _default_name() or ""
    while True:
        try:
            name = prompt("name: ", default=default).strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if is_valid_username(name):
            return name
        print(NAME_RULE)


def _want_colour(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return (
        callable(isatty)
        and bool(isatty())
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chatproto-chat``."""
    parser = argparse.ArgumentParser(
        prog="chatproto-chat",
        description="Chat on a server of the chatproto line protocol.",
        epilog="Type /help once connected. Colour is used on a terminal unless NO_COLOR is set.",
    )
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST, help="default: %(default)s")
    parser.add_argument(
        "port", nargs="?", type=int, default=DEFAULT_PORT, help="default: %(default)s"
    )
    parser.add_argument(
        "--name", help="log in under this name (asked for if missing on a terminal)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="read plain lines from stdin instead of an interactive prompt",
    )
    parser.add_argument("--no-color", action="store_true", help="never use colour")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=DEFAULT_KEEPALIVE,
        metavar="SECONDS",
        help="PING after this much silence so the server keeps us (0: never; default %(default)s)",
    )
    parser.add_argument(
        "--tls", action="store_true", help="speak TLS (the server's certificate is verified)"
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="with --tls: trust this CA (PEM) instead of the system's",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the certificate (a test server's own)",
    )
    add_version_option(parser)
    args = parser.parse_args(argv)
    if args.name is not None and not is_valid_username(args.name):
        parser.error(f"invalid --name {args.name!r}: {NAME_RULE}")
    if (args.tls_ca or args.insecure) and not args.tls:
        parser.error("--tls-ca and --insecure go with --tls")
    if args.tls_ca and args.insecure:
        parser.error("give --tls-ca or --insecure, not both")
    tls = None
    if args.tls:
        try:
            tls = client_context(args.tls_ca, insecure=args.insecure)
        except OSError as exc:
            parser.error(f"cannot use --tls-ca {args.tls_ca}: {describe_error(exc)}")

    mode = "plain"
    if not args.plain and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            import prompt_toolkit  # noqa: F401, PLC0415 - optional extra
        except ImportError:
            print(
                "(prompt_toolkit is not installed: plain line input; pip install 'chatproto[chat]')"
            )
        else:
            mode = "prompt"
    name = args.name
    if name is None:
        name = _ask_name() if mode == "prompt" else _default_name()
        if name is None and mode == "prompt":
            return 0
    colour = not args.no_color and _want_colour(sys.stdout)
    try:
        return asyncio.run(
            run(
                args.host,
                args.port,
                name,
                mode=mode,
                colour=colour,
                keepalive=args.keepalive,
                tls=tls,
            )
        )
    except KeyboardInterrupt:  # a second Ctrl-C, while leaving
        return 0


if __name__ == "__main__":
    sys.exit(main())
