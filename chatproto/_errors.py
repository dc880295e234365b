"""Error tokens sent to peers, and the exception raised on API misuse.

Two kinds of error live here and must not be confused:

* :class:`ErrorCode` is what a *peer* did wrong. It never raises: the core turns
  it into an ``ERR <token>`` line and an event, and the connection goes on.
* :class:`LocalProtocolError` is what the *embedding program* did wrong (fed a
  connection it never opened, sent a command in a state that forbids it). It
  raises, with a message naming the state and what was allowed.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ErrorCode", "LocalProtocolError"]


class ErrorCode(str, Enum):
    """Every token that may follow ``ERR`` (docs/protocol.md §4).

    The value is the token on the wire; :attr:`text` is the human-readable
    text chatproto sends after it. Clients match the token only.
    """

    USERNAME_TAKEN = "username-taken"
    INVALID_USERNAME = "invalid-username"
    NOT_LOGGED_IN = "not-logged-in"
    ALREADY_LOGGED_IN = "already-logged-in"
    USER_NOT_FOUND = "user-not-found"
    MISSING_ARGUMENT = "missing-argument"
    UNKNOWN_COMMAND = "unknown-command"
    LINE_TOO_LONG = "line-too-long"
    INVALID_UTF8 = "invalid-utf8"
    INVALID_CHARACTERS = "invalid-characters"
    SERVER_FULL = "server-full"
    #: Cluster mode only: Redis could not decide in time (docs/protocol.md §17).
    CLUSTER_UNAVAILABLE = "cluster-unavailable"

    @property
    def text(self) -> str:
        """The human-readable explanation chatproto sends after the token."""
        return _TEXTS[self]

    @property
    def closes_connection(self) -> bool:
        """Whether the server closes the connection after sending this error."""
        return self is ErrorCode.SERVER_FULL


_TEXTS = {
    ErrorCode.USERNAME_TAKEN: "that name is in use",
    ErrorCode.INVALID_USERNAME: "use 1 to 32 letters, digits, _ or -",
    ErrorCode.NOT_LOGGED_IN: "LOGIN first",
    ErrorCode.ALREADY_LOGGED_IN: "you are logged in already",
    ErrorCode.USER_NOT_FOUND: "no such user",
    ErrorCode.MISSING_ARGUMENT: "this command needs an argument",
    ErrorCode.UNKNOWN_COMMAND: "try HELP",
    ErrorCode.LINE_TOO_LONG: "the line was discarded",
    ErrorCode.INVALID_UTF8: "lines must be UTF-8",
    ErrorCode.INVALID_CHARACTERS: "control characters are not allowed",
    ErrorCode.SERVER_FULL: "try again later",
    ErrorCode.CLUSTER_UNAVAILABLE: "the cluster cannot be reached, try again later",
}


class LocalProtocolError(Exception):
    """The embedding program used the API in a way the current state forbids.

    Raised only for programming errors on our side of the connection, never
    because of anything a peer sent.
    """
