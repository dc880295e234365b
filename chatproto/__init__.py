"""chatproto: a sans-IO implementation of a line-based TCP chat protocol.

The core in this package does no I/O and reads no clock: feed it bytes and the
current time, drain the bytes it wants sent. Three layers, each usable alone:

* :class:`LineBuffer`: framing and the line-length limit.
* :class:`ServerSession` / :class:`ClientSession`: one connection's state
  machine, server side and client side.
* :class:`ChatServer`: the room: registry, routing, output buffers, flow
  control, idle timeouts, limits and shutdown.

Adapters that wire the core to real sockets live in ``chatproto.adapters``; the
tools in ``chatproto.cli`` and ``chatproto.conformance``. Importing
``chatproto`` loads none of them. The normative spec is docs/protocol.md.
"""

from ._client_session import (
    ClientEvent,
    ClientSession,
    ClientState,
    ErrorAnswer,
    OkAnswer,
    UserList,
)
from ._cluster import BusDial, ClusterServer, LinkState
from ._cluster_config import ClusterConfig
from ._cluster_wire import BusError, BusItem
from ._commands import (
    CONTROL_RE,
    Command,
    Help,
    ListUsers,
    Login,
    Ping,
    Quit,
    SendDirect,
    SendMessage,
    encode_command,
    is_valid_username,
)
from ._config import ClientConfig, ServerConfig
from ._counters import COMMAND_LABELS, ServerCounters
from ._errors import ErrorCode, LocalProtocolError
from ._events import (
    CloseMode,
    CloseReason,
    ClusterLinkChanged,
    CommandRejected,
    ConnectionClosed,
    ConnectionRefused,
    ConnId,
    DirectMessageSent,
    FloodLimited,
    InputPaused,
    InputResumed,
    MessageBroadcast,
    PauseCause,
    ServerEvent,
    UserLeft,
    UserLoggedIn,
)
from ._framing import LineBuffer, LineTooLong
from ._replies import (
    HELP_TEXT,
    DirectReceived,
    Error,
    IdleTimeout,
    Info,
    MessageReceived,
    Ok,
    Pong,
    ServerLine,
    ServerShutdown,
    SlowConsumer,
    UnknownLine,
    User,
    UserDisconnected,
    UserJoined,
    encode_server_line,
    parse_server_line,
)
from ._server import ChatServer
from ._server_session import BadCommand, ServerSession, SessionState


def __getattr__(name: str) -> str:
    """``chatproto.__version__``, read from the installed package's metadata.

    The version is written once, in pyproject.toml; the metadata is its
    installed copy. Read lazily, because :mod:`importlib.metadata` imports
    sockets and clocks that the core must not load (tests/core/test_purity.py).
    """
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - lazy, above

        try:
            return version("chatproto")
        except PackageNotFoundError:  # a source tree on sys.path, never installed
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMMAND_LABELS",
    "CONTROL_RE",
    "HELP_TEXT",
    "BadCommand",
    "BusDial",
    "BusError",
    "BusItem",
    "ChatServer",
    "ClientConfig",
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "CloseMode",
    "CloseReason",
    "ClusterConfig",
    "ClusterLinkChanged",
    "ClusterServer",
    "Command",
    "CommandRejected",
    "ConnId",
    "ConnectionClosed",
    "ConnectionRefused",
    "DirectMessageSent",
    "DirectReceived",
    "Error",
    "ErrorAnswer",
    "ErrorCode",
    "FloodLimited",
    "Help",
    "IdleTimeout",
    "Info",
    "InputPaused",
    "InputResumed",
    "LineBuffer",
    "LineTooLong",
    "LinkState",
    "ListUsers",
    "LocalProtocolError",
    "Login",
    "MessageBroadcast",
    "MessageReceived",
    "Ok",
    "OkAnswer",
    "PauseCause",
    "Ping",
    "Pong",
    "Quit",
    "SendDirect",
    "SendMessage",
    "ServerConfig",
    "ServerCounters",
    "ServerEvent",
    "ServerLine",
    "ServerSession",
    "ServerShutdown",
    "SessionState",
    "SlowConsumer",
    "UnknownLine",
    "User",
    "UserDisconnected",
    "UserJoined",
    "UserLeft",
    "UserList",
    "UserLoggedIn",
    "__version__",
    "encode_command",
    "encode_server_line",
    "is_valid_username",
    "parse_server_line",
]
