"""Property tests: split invariance, truncated prefixes, and a model of the room.

§1.3 says the replies must not depend on how TCP splits the bytes, and every
limit must hold however they are split. Hypothesis checks
both for every layer (LineBuffer, ServerSession, ChatServer, ClientSession),
then a stateful test drives random sessions of several clients against a
small model of the room and compares every line each client receives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chatproto import (
    ChatServer,
    ClientEvent,
    ClientSession,
    ClientState,
    CloseMode,
    CloseReason,
    Command,
    CommandRejected,
    ConnectionClosed,
    ConnId,
    DirectMessageSent,
    ErrorCode,
    Help,
    LineBuffer,
    ListUsers,
    Login,
    MessageBroadcast,
    Ping,
    Pong,
    SendDirect,
    SendMessage,
    ServerConfig,
    ServerEvent,
    ServerSession,
    UserLeft,
    UserList,
    UserLoggedIn,
)
from chatproto._server_session import BadCommand
from tests.core.memory_harness import MemoryClient, MemoryRoom
from tests.core.reference import reference_frames

MAX_EXAMPLES = 150
CONFIG = ServerConfig(
    max_line_bytes=64, idle_timeout=10.0, max_clients=3, max_outbound_bytes=200, close_timeout=2.0
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (any order, duplicates allowed)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)] or [b""]


cuts_st = st.lists(st.integers(0, 400), max_size=12)


# ---------------------------------------------------------------- LineBuffer


line_bytes = st.lists(st.sampled_from([b"a", b"\r", b"\n", b" ", b"\xff"]), max_size=40).map(
    b"".join
)


@settings(max_examples=MAX_EXAMPLES)
@given(data=line_bytes, max_line=st.integers(1, 8), cuts=cuts_st)
def test_line_buffer_any_split_matches_the_spec_model(
    data: bytes, max_line: int, cuts: list[int]
) -> None:
    buf = LineBuffer(max_line)
    got = []
    for chunk in split_at(data, cuts):
        got += buf.feed(chunk)
    assert got == reference_frames(data, max_line)


@settings(max_examples=MAX_EXAMPLES)
@given(line=st.binary(max_size=20).filter(lambda b: b"\n" not in b), max_line=st.integers(20, 30))
def test_line_buffer_truncated_prefix_yields_nothing(line: bytes, max_line: int) -> None:
    for end in range(len(line) + 1):
        assert LineBuffer(max_line).feed(line[:end]) == []


# ------------------------------------------------------------- ServerSession

command_lines = st.sampled_from(
    [
        b"LOGIN alice\n",
        b"LOGIN bob\r\n",
        b"LOGIN a b\n",
        b"MSG hi  there \n",
        b"DM bob x\n",
        b"WHO\n",
        b"PING 1\n",
        b"HELP\n",
        b"\n",
        b"\xff\n",
        b"PING \x1b\n",
        b"DANCE\n",
        b"x" * 70 + b"\n",
        b"QUIT\n",
    ]
)
script_st = st.lists(command_lines, max_size=10).map(b"".join)


def run_session(chunks: list[bytes]) -> list[object]:
    """Feed a session as ChatServer does, accepting every LOGIN."""
    session = ServerSession(64)
    items: list[object] = []
    for chunk in chunks:
        for item in session.receive_data(chunk):
            items.append(item)
            if isinstance(item, Login):
                session.login_accepted(item.name)
    return [*items, session.state]


@settings(max_examples=MAX_EXAMPLES)
@given(data=script_st, cuts=cuts_st)
def test_server_session_any_split_same_commands(data: bytes, cuts: list[int]) -> None:
    assert run_session(split_at(data, cuts)) == run_session([data])


@settings(max_examples=MAX_EXAMPLES)
@given(line=command_lines)
def test_server_session_truncated_prefix_yields_nothing(line: bytes) -> None:
    body = line[:-1]
    for end in range(min(len(body), 64) + 1):
        assert list(ServerSession(64).receive_data(body[:end])) == []


# ------------------------------------------------------------------- ChatServer

# The slow-consumer cap is about a peer that does not read. A reading peer
# drains between reads, so how much one read may queue for it depends on how
# the sender's bytes were merged: the cap is set so that no merged send here
# (at most MERGE lines) can fill a reader's queue, while the one client that
# never reads ("v") overflows after a few long lines.
# The hard cap alone: flow control (which makes a non-reader hold its senders
# back until time passes) has split-invariance tests of its own, in
# tests/core/test_flow_control.py.
ROOM_CONFIG = ServerConfig(
    max_line_bytes=300, max_outbound_bytes=1100, backpressure_timeout=0.0, flood_rate=0.0
)
MERGE = 3
LONG = b"m" * 250
READER_LINES = [
    b"MSG " + LONG + b"\n",
    b"MSG hi\n",
    b"DM v " + LONG + b"\n",
    b"DM b yo\n",
    b"DM v yo\n",
    b"WHO\n",
    b"PING p\n",
    b"LOGIN v\n",
    b"\xff\n",
    b"x" * 301 + b"\n",
    b"QUIT\n",
]
VICTIM_LINES = [b"PING " + LONG + b"\n", b"MSG slow\n", b"WHO\n"]
steps_st = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([0, 1]), st.sampled_from(READER_LINES)),
        st.tuples(st.just(2), st.sampled_from(VICTIM_LINES)),
    ),
    max_size=20,
)


def run_room(
    steps: list[tuple[int, bytes]], cuts: list[int] | None, *, message_events: bool = True
) -> tuple[list[bytes], list[object], int, list[ServerEvent], list[ConnId]]:
    """Two reading clients and one that never reads (slow consumer "v").

    ``cuts=None`` merges runs of consecutive lines from one client into one
    send (up to MERGE lines); otherwise every line is sent cut at ``cuts``.
    """
    room = MemoryRoom(ROOM_CONFIG, message_events=message_events)
    clients = [room.connect(), room.connect(), room.connect(reading=False)]
    for client, name in zip(clients, ["a", "b", "v"], strict=True):
        client.send(f"LOGIN {name}\n".encode())
    # v starts just under the cap, so that one long line drops it, often in
    # the middle of a batch whose later lines then must not see it.
    victim = clients[2]
    victim.send(VICTIM_LINES[0] * 4)
    assert 1000 < victim.queued <= ROOM_CONFIG.max_outbound_bytes
    if cuts is None:
        merged: list[tuple[int, list[bytes]]] = []
        for who, data in steps:
            if merged and merged[-1][0] == who and len(merged[-1][1]) < MERGE:
                merged[-1][1].append(data)
            else:
                merged.append((who, [data]))
        for who, lines in merged:
            clients[who].send(b"".join(lines))
    else:
        for who, data in steps:
            for chunk in split_at(data, cuts):
                clients[who].send(chunk)
    # ConnectionClosed comes when the harness closes the socket, after the
    # read that decided it: its place in the list depends on the batching.
    closed = sorted(e.conn for e in room.events if isinstance(e, ConnectionClosed))
    return (
        [bytes(c.transcript) for c in clients],
        [c.closed_with for c in clients],
        room.server.queued_bytes(victim.conn),
        [e for e in room.events if not isinstance(e, ConnectionClosed)],
        closed,
    )


@settings(max_examples=MAX_EXAMPLES)
@given(steps=steps_st, cuts=cuts_st)
def test_chat_server_any_split_same_output_and_events(
    steps: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    assert run_room(steps, cuts) == run_room(steps, None)


@settings(max_examples=MAX_EXAMPLES)
@given(steps=steps_st, cuts=cuts_st)
def test_chat_server_without_message_events_sends_the_same_bytes(
    steps: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    """message_events=False only leaves out the two per-message events."""
    full = run_room(steps, cuts)
    lean = run_room(steps, cuts, message_events=False)
    per_message = (MessageBroadcast, DirectMessageSent)
    assert lean[:3] == full[:3]
    assert lean[3] == [e for e in full[3] if not isinstance(e, per_message)]
    assert not any(isinstance(e, per_message) for e in lean[3])
    assert lean[4] == full[4]


@settings(max_examples=MAX_EXAMPLES)
@given(line=command_lines)
def test_chat_server_truncated_prefix_does_nothing(line: bytes) -> None:
    body = line[:-1]
    for end in range(min(len(body), 64) + 1):
        server = ChatServer(CONFIG)
        conn = server.connection_made(0.0)
        assert server.receive_data(conn, body[:end], 0.0) == []
        assert server.take_ready() == []
        assert server.queued_bytes(conn) == 0


# ---------------------------------------------------------------- ClientSession

server_lines = st.sampled_from(
    [
        b"OK\n",
        b"ERR username-taken that name is in use\n",
        b"ERR not-logged-in LOGIN first\n",
        b"PONG\n",
        b"PONG t\n",
        b"USER alice\n",
        b"USER bob\n",
        b"MSG bob hi  there\n",
        b"DM bob x\r\n",
        b"INFO bob joined\n",
        b"INFO bob disconnected\n",
        b"INFO idle-timeout\n",
        b"INFO commands: LOGIN <name>\n",
        b"WELCOME to the server\n",
        b"\xff\xfe\n",
    ]
)


def run_client(chunks: list[bytes]) -> tuple[list[ClientEvent], object]:
    session = ClientSession()
    session.send(Login("alice"))
    session.who()
    events: list[ClientEvent] = []
    for chunk in chunks:
        events += session.receive_data(chunk)
    return events, (session.state, session.username, session.pending)


@settings(max_examples=MAX_EXAMPLES)
@given(data=st.lists(server_lines, max_size=10).map(b"".join), cuts=cuts_st)
def test_client_session_any_split_same_events(data: bytes, cuts: list[int]) -> None:
    assert run_client(split_at(data, cuts)) == run_client([data])


@settings(max_examples=MAX_EXAMPLES)
@given(line=server_lines)
def test_client_session_truncated_prefix_yields_nothing(line: bytes) -> None:
    for end in range(len(line)):
        session = ClientSession()
        session.who()
        assert session.receive_data(line[:end]) == []


# ------------------------------------------------------------ the room model

NAMES = ["alice", "Alice", "bob", "BOB", "carol", "n" * 32, "a b", "n" * 33, ""]
TEXTS = ["hi", " two  spaces ", "\u00e9\U0001f389", "a\tb"]
JUNK: list[tuple[bytes, ErrorCode | None]] = [
    (b"\n", None),
    (b"\r\n", None),
    (b"\xc3\n", ErrorCode.INVALID_UTF8),
    (b"PING \x1b[0m\n", ErrorCode.INVALID_CHARACTERS),
    (b"PING a\rb\n", ErrorCode.INVALID_CHARACTERS),
    (b"DANCE\n", ErrorCode.UNKNOWN_COMMAND),
    (b"y" * 65 + b"\n", ErrorCode.LINE_TOO_LONG),
    (b"y" * 64 + b"\r\n", ErrorCode.UNKNOWN_COMMAND),
]
sizes_st = st.lists(st.integers(1, 9), max_size=3)


def err(code: ErrorCode) -> str:
    return f"ERR {code.value} {code.text}"


@dataclass(eq=False)
class Peer:
    """What the model knows about one client."""

    wire: MemoryClient
    last_seen: float
    open: bool = True
    name: str | None = None
    expected: list[str] = field(default_factory=list)


class RoomMachine(RuleBasedStateMachine):
    """Random sessions against a model: who is in, in which order, who gets what."""

    def __init__(self) -> None:
        super().__init__()
        self.room = MemoryRoom(CONFIG)
        self.peers: list[Peer] = []
        self.members: list[Peer] = []  # logged in, in login order
        self.expected_events: list[ServerEvent] = []
        self.shut = False

    # ---------------------------------------------------------- helpers

    def pick(self, index: int) -> Peer:
        return self.peers[index % len(self.peers)]

    def send(self, peer: Peer, data: bytes, sizes: list[int]) -> None:
        if peer.open and b"\n" in data:
            peer.last_seen = self.room.now
        peer.wire.send_split(data, sizes)

    def leave(self, peer: Peer, reason: CloseReason, *, announce: bool = True) -> None:
        """The model side of a connection ending."""
        peer.open = False
        if peer.name is not None:
            self.members.remove(peer)
            self.expected_events.append(UserLeft(peer.wire.conn, peer.name, reason))
            if announce:
                for other in self.members:
                    other.expected.append(f"INFO {peer.name} disconnected")
        self.expected_events.append(ConnectionClosed(peer.wire.conn, reason))

    def reject(self, peer: Peer, code: ErrorCode) -> None:
        peer.expected.append(err(code))
        self.expected_events.append(CommandRejected(peer.wire.conn, code))

    def find(self, name: str) -> Peer | None:
        for member in self.members:
            assert member.name is not None
            if member.name.lower() == name.lower():
                return member
        return None

    # ------------------------------------------------------------ rules

    @initialize(names=st.lists(st.sampled_from(NAMES[:6]), min_size=3, max_size=3))
    def populated_room(self, names: list[str]) -> None:
        # Start from a room with people in it (names may collide), so that
        # short runs still exercise routing, ordering and notices.
        for _ in names:
            self.connect()
        for who, name in enumerate(names):
            self.login(who, name, [])

    @precondition(lambda self: len(self.peers) < 6)
    @rule()
    def connect(self) -> None:
        open_count = sum(p.open for p in self.peers)
        peer = Peer(self.room.connect(), self.room.now)
        self.peers.append(peer)
        conn = peer.wire.conn
        if self.shut:
            peer.expected.append("INFO server-shutdown")
            peer.open = False
            self.expected_events.append(ConnectionClosed(conn, CloseReason.SHUTDOWN))
        elif open_count >= CONFIG.max_clients:
            peer.expected.append(err(ErrorCode.SERVER_FULL))
            peer.open = False
            self.expected_events.append(ConnectionClosed(conn, CloseReason.SERVER_FULL))

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), name=st.sampled_from(NAMES), sizes=sizes_st)
    def login(self, who: int, name: str, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            if peer.name is not None:
                self.reject(peer, ErrorCode.ALREADY_LOGGED_IN)
            elif not name:
                self.reject(peer, ErrorCode.MISSING_ARGUMENT)
            elif " " in name or len(name) > 32:
                self.reject(peer, ErrorCode.INVALID_USERNAME)
            elif self.find(name) is not None:
                self.reject(peer, ErrorCode.USERNAME_TAKEN)
            else:
                peer.expected.append("OK")
                for other in self.members:
                    other.expected.append(f"INFO {name} joined")
                peer.name = name
                self.members.append(peer)
                self.expected_events.append(UserLoggedIn(peer.wire.conn, name))
        self.send(peer, f"LOGIN {name}\n".encode(), sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), text=st.sampled_from(TEXTS), sizes=sizes_st)
    def msg(self, who: int, text: str, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            if peer.name is None:
                self.reject(peer, ErrorCode.NOT_LOGGED_IN)
            else:
                others = [m for m in self.members if m is not peer]
                for other in others:
                    other.expected.append(f"MSG {peer.name} {text}")
                self.expected_events.append(
                    MessageBroadcast(peer.wire.conn, peer.name, text, len(others))
                )
        self.send(peer, f"MSG {text}\n".encode(), sizes)

    @precondition(lambda self: self.peers)
    @rule(
        who=st.integers(0, 5),
        to=st.sampled_from(["alice", "ALICE", "bob", "carol", "nobody"]),
        text=st.sampled_from(TEXTS),
        sizes=sizes_st,
    )
    def dm(self, who: int, to: str, text: str, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            found = self.find(to)
            if peer.name is None:
                self.reject(peer, ErrorCode.NOT_LOGGED_IN)
            elif found is None:
                self.reject(peer, ErrorCode.USER_NOT_FOUND)
            else:
                assert found.name is not None
                found.expected.append(f"DM {peer.name} {text}")
                peer.expected.append("OK")
                self.expected_events.append(
                    DirectMessageSent(peer.wire.conn, peer.name, found.name, text)
                )
        self.send(peer, f"DM {to} {text}\n".encode(), sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), sizes=sizes_st)
    def who_(self, who: int, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            if peer.name is None:
                self.reject(peer, ErrorCode.NOT_LOGGED_IN)
            else:
                peer.expected += [f"USER {m.name}" for m in self.members]
        self.send(peer, b"WHO\n", sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), token=st.sampled_from(["", "1", " a  b"]), sizes=sizes_st)
    def ping(self, who: int, token: str, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            peer.expected.append(f"PONG {token}" if token else "PONG")
        self.send(peer, f"PING {token}\n".encode() if token else b"PING\n", sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), junk=st.sampled_from(JUNK), sizes=sizes_st)
    def junk(self, who: int, junk: tuple[bytes, ErrorCode | None], sizes: list[int]) -> None:
        peer = self.pick(who)
        data, code = junk
        if peer.open and code is not None:
            self.reject(peer, code)
        self.send(peer, data, sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), sizes=sizes_st)
    def quit(self, who: int, sizes: list[int]) -> None:
        peer = self.pick(who)
        if peer.open:
            peer.expected.append("OK")
            self.leave(peer, CloseReason.QUIT)
        # Lines after QUIT are not executed (§11.2).
        self.send(peer, b"QUIT\nPING never\n", sizes)

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5))
    def close(self, who: int) -> None:
        peer = self.pick(who)
        was_open = peer.open
        if peer.open:
            self.leave(peer, CloseReason.CONNECTION_LOST)
        events = peer.wire.close()
        if not was_open:
            assert events == []  # a second connection_lost is a quiet no-op

    @precondition(lambda self: self.peers)
    @rule(who=st.integers(0, 5), partial=st.booleans())
    def eof(self, who: int, partial: bool) -> None:
        peer = self.pick(who)
        if partial:
            # A partial line at end of stream is never executed (§1.6).
            peer.wire.send(b"MSG never sent")
        if peer.open:
            self.leave(peer, CloseReason.PEER_CLOSED)
        peer.wire.eof()

    @rule(seconds=st.sampled_from([0.5, 2.5, 5.0, 10.0]))
    def advance(self, seconds: float) -> None:
        target = self.room.now + seconds
        due = sorted(
            (p.last_seen + CONFIG.idle_timeout, p.wire.conn, p)
            for p in self.peers
            if p.open and p.last_seen + CONFIG.idle_timeout <= target
        )
        for _, _, peer in due:
            peer.expected.append("INFO idle-timeout")
            self.leave(peer, CloseReason.IDLE_TIMEOUT)
        self.room.advance(seconds)

    @precondition(lambda self: not self.shut)
    @rule()
    def shutdown(self) -> None:
        self.shut = True
        names = [m.name for m in self.members]
        for peer in self.peers:
            if peer.open:
                peer.expected.append("INFO server-shutdown")
                if peer.name is not None:
                    peer.expected += [f"INFO {n} disconnected" for n in names if n != peer.name]
        for peer in [p for p in self.peers if p.name is not None and p.open]:
            self.leave(peer, CloseReason.SHUTDOWN, announce=False)
        for peer in self.peers:
            if peer.open:
                self.leave(peer, CloseReason.SHUTDOWN)
        self.room.shutdown()

    # ------------------------------------------------------- invariants

    @invariant()
    def every_client_got_what_the_model_says(self) -> None:
        for peer in self.peers:
            assert peer.wire.lines() == peer.expected, peer.wire.conn
            peer.expected.clear()
            assert peer.wire.closed == (not peer.open), peer.wire.conn
            if peer.wire.closed:
                assert peer.wire.closed_with is not CloseMode.OPEN

    @invariant()
    def room_matches(self) -> None:
        assert self.room.server.usernames() == [m.name for m in self.members]
        assert self.room.server.open_count == sum(p.open for p in self.peers)

    @invariant()
    def events_match(self) -> None:
        # Same events; their order within one step is checked by unit tests.
        assert sorted(map(repr, self.room.events)) == sorted(map(repr, self.expected_events))
        self.room.events.clear()
        self.expected_events.clear()

    @invariant()
    def next_deadline_not_late(self) -> None:
        due = [p.last_seen + CONFIG.idle_timeout for p in self.peers if p.open]
        deadline = self.room.server.next_deadline()
        if due:
            assert deadline is not None and deadline <= min(due)


RoomMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40)
TestRoom = RoomMachine.TestCase


def test_bad_command_is_exported_for_session_users() -> None:
    # ServerSession users match refusals with this type: it must stay public.
    import chatproto  # noqa: PLC0415 - the public name, not the private module's

    assert "BadCommand" in chatproto.__all__
    assert chatproto.BadCommand is BadCommand
    assert chatproto.BadCommand(ErrorCode.UNKNOWN_COMMAND).code is ErrorCode.UNKNOWN_COMMAND


# ------------------------------------------- ClientSession against ChatServer

client_commands = st.lists(
    st.one_of(
        st.sampled_from(["alice", "bob", "BOB", "carol"]).map(Login),
        st.sampled_from(["hi", "x" * 70]).map(SendMessage),
        st.sampled_from(["bob", "alice", "nobody"]).map(lambda to: SendDirect(to, "yo")),
        st.just(ListUsers()),
        st.sampled_from([None, "t"]).map(Ping),
        st.just(Help()),
    ),
    max_size=12,
)


@settings(max_examples=MAX_EXAMPLES)
@given(commands=client_commands, batched=st.booleans())
def test_client_session_tracks_the_real_server(commands: list[Command], batched: bool) -> None:
    """Reply matching keeps the client's view equal to the server's.

    Sent one by one or all in one batch, every WHO answered after the login
    gives exactly one UserList with the room as it was, even back to back.
    """
    room = MemoryRoom(ServerConfig(max_line_bytes=64, max_outbound_bytes=4096))
    room.login("bob")
    wire = room.connect()
    client = ClientSession()
    events: list[ClientEvent] = []
    outgoing = b""
    logged_in_as: str | None = None  # what the server will decide
    expected_lists: list[UserList] = []
    for command in commands:
        if isinstance(command, Login):
            if client.state is not ClientState.CONNECTED:
                continue  # a second LOGIN is refused by ClientSession itself
            if logged_in_as is None and command.name.lower() != "bob":
                logged_in_as = command.name
        if isinstance(command, ListUsers) and logged_in_as is not None:
            expected_lists.append(UserList(("bob", logged_in_as)))
        outgoing += client.send(command)
        if not batched:
            wire.send(outgoing)
            outgoing = b""
            events += client.receive_data(wire.take())
    wire.send(outgoing + client.send(Ping("end")))
    events += client.receive_data(wire.take())
    assert events[-1] == Pong("end")
    assert client.pending == 0
    assert client.username == room.server.username(wire.conn) == logged_in_as
    assert (client.state is ClientState.LOGGED_IN) == (logged_in_as is not None)
    assert [e for e in events if isinstance(e, UserList)] == expected_lists
