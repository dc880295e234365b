"""The public API's types, checked by ``mypy --strict`` (the package ships py.typed).

The ``assert_type`` calls are checked statically when mypy runs over
``tests/``; at run time they only return their argument, so these tests
also make sure every call here works. ``test_mypy_checks_this_file`` runs
mypy on this file, so the checks cannot silently stop being made.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import chatproto
from chatproto import (
    BadCommand,
    ChatServer,
    ClientEvent,
    ClientSession,
    ClientState,
    CloseMode,
    CloseReason,
    Command,
    CommandRejected,
    ConnId,
    ErrorCode,
    LineBuffer,
    LineTooLong,
    Login,
    MessageBroadcast,
    Ping,
    ServerConfig,
    ServerEvent,
    ServerLine,
    ServerSession,
    SessionState,
    UserLeft,
    encode_command,
    encode_server_line,
    is_valid_username,
    parse_server_line,
)
from chatproto.vectors import Vector, load_vectors
from tests import REPO

if TYPE_CHECKING:
    # typing.assert_type is 3.11+; the project supports 3.10.
    from typing_extensions import assert_type
else:
    assert_type = getattr(typing, "assert_type", lambda value, _type: value)

ROOT = REPO


def test_chat_server_types() -> None:
    server = ChatServer(ServerConfig())
    conn = assert_type(server.connection_made(0.0), ConnId)
    assert_type(server.receive_data(conn, b"PING\n", 0.0), list[ServerEvent])
    assert_type(server.receive_data(conn, bytearray(b"PING\n"), 0.0), list[ServerEvent])
    assert_type(server.receive_data(conn, memoryview(b"PING\n"), 0.0), list[ServerEvent])
    assert_type(server.take_ready(), list[ConnId])
    assert_type(server.data_to_send(conn), bytes)
    assert_type(server.close_mode(conn), CloseMode)
    assert_type(server.close_reason(conn), CloseReason | None)
    assert_type(server.next_deadline(), float | None)
    assert_type(server.handle_timeout(1.0), list[ServerEvent])
    assert_type(server.usernames(), list[str])
    assert_type(server.username(conn), str | None)
    assert_type(server.queued_bytes(conn), int)
    assert_type(server.open_count, int)
    assert_type(server.config, ServerConfig)
    assert_type(server.receive_eof(conn, 1.0), list[ServerEvent])
    assert_type(server.connection_lost(conn, 1.0), list[ServerEvent])
    assert_type(server.shutdown(2.0), list[ServerEvent])


def test_client_session_types() -> None:
    client = ClientSession()
    assert_type(client.send(Login("alice")), bytes)
    assert_type(client.who(), bytes)
    events = assert_type(client.receive_data(b"OK\n"), list[ClientEvent])
    assert_type(client.state, ClientState)
    assert_type(client.username, str | None)
    assert_type(client.pending, int)
    assert_type(client.receive_eof(), list[ClientEvent])
    assert events


def test_server_session_and_framing_types() -> None:
    session = ServerSession(64)
    assert_type(session.receive_data(b"PING\n"), Iterator[Command | BadCommand])
    assert_type(session.state, SessionState)
    assert_type(session.username, str | None)
    assert_type(session.receive_eof(), int)
    buffer = LineBuffer(64)
    assert_type(buffer.feed(b"x\n"), list[bytes | LineTooLong])
    assert_type(buffer.feed_eof(), int)


def test_codec_and_vector_types() -> None:
    assert_type(parse_server_line(b"OK"), ServerLine)
    assert_type(encode_server_line(parse_server_line("OK")), bytes)
    assert_type(encode_command(Ping("x")), bytes)
    assert_type(is_valid_username("bob"), bool)
    assert_type(load_vectors(), list[Vector])
    assert_type(ErrorCode.SERVER_FULL.text, str)


def test_event_fields_are_typed() -> None:
    left = UserLeft(ConnId(1), "bob", CloseReason.QUIT)
    assert_type(left.reason, CloseReason)
    assert_type(left.conn, ConnId)
    assert_type(CommandRejected(ConnId(1), ErrorCode.UNKNOWN_COMMAND).code, ErrorCode)
    assert_type(MessageBroadcast(ConnId(1), "a", "t", 2).recipients, int)


def test_events_and_config_are_frozen() -> None:
    # The ignores are needed only because these classes are frozen: mypy
    # --strict reports an unused ignore if one ever stops being frozen.
    left = UserLeft(ConnId(1), "bob", CloseReason.QUIT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        left.name = "eve"  # type: ignore[misc]
    config = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_clients = 1  # type: ignore[misc]


def test_py_typed_is_shipped() -> None:
    assert (Path(chatproto.__file__).parent / "py.typed").is_file()


def test_public_api_is_explicit() -> None:
    assert sorted(chatproto.__all__) == sorted(set(chatproto.__all__))
    for name in chatproto.__all__:
        assert hasattr(chatproto, name), name


def test_mypy_checks_this_file(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # A wrong assert_type must be reported: proof that the checks above run.
    wrong = tmp_path / "wrong_types.py"
    wrong.write_text(
        "from typing_extensions import assert_type\n"
        "from chatproto import ChatServer\n"
        "assert_type(ChatServer().data_to_send(ChatServer().connection_made(0.0)), str)\n"
    )
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    ok = subprocess.run(
        [*mypy, __file__], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run(
        [*mypy, str(wrong)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert bad.returncode == 1, bad.stdout
    assert "assert-type" in bad.stdout
