"""The shared spec vectors (``chatproto/vectors/spec.json``), each run as a strict test.

Every case in the file becomes a test with the case's own ID, so cases added
to the file are picked up with no change here. Lines are compared exactly,
except that for ``ERR`` lines only the token counts (§4.1: clients match the
token; the text may change).
"""

from __future__ import annotations

from chatproto import Error, UserDisconnected, UserJoined, parse_server_line
from chatproto.vectors import Expect, Send, Vector, load_vectors

from .._conn import Conn
from .._context import TestContext
from .._registry import Check


class VectorBody:
    """A test body that plays one vector."""

    def __init__(self, vector: Vector) -> None:
        self.vector = vector
        #: The names the vector logs in with (lower case): lines about them
        #: are this test's own.
        self.owned_names = frozenset(_login_names(vector))
        self.__doc__ = vector.description

    def __call__(self, t: TestContext) -> None:
        conns: dict[str, Conn] = {}
        for label in self.vector.clients:
            conns[label] = t.connect(label, name=_first_login(self.vector, label) or label)
        for number, step in enumerate(self.vector.steps, 1):
            if isinstance(step, Send):
                conns[step.client].send(step.data)
            elif isinstance(step, Expect):
                _expect(t, conns[step.client], step.line, number)
            else:  # a step kind this version of the suite does not know
                t.fail(f"step {number}: unsupported vector step {step!r}; upgrade chatproto")
        for conn in conns.values():
            if conn.quit_sent and conn.open:
                conn.expect_closed("nothing after QUIT's OK but the close")


def _expect(t: TestContext, conn: Conn, line: str, number: int) -> None:
    if line.startswith("ERR "):
        token = line.split(" ")[1]
        event = conn.expect(line, lambda e: isinstance(e.line, Error))
        assert isinstance(event.line, Error)
        if event.line.token != token:
            t.fail(
                f"{conn.label}: step {number}: expected ERR {token}, got {event.raw!r}",
                expected=line,
                got=event.raw,
            )
        return
    if line == "OK":
        # By meaning too: "OK welcome alice" is one difference, failed in LOG-51.
        conn.expect_ok()
        return
    # Join and leave notices compare by meaning, so that a server whose
    # wording differs fails only the test dedicated to it (LOG-52, DIS-51).
    meaning = parse_server_line(line)
    notice = isinstance(meaning, (UserJoined, UserDisconnected))
    conn.expect(line, lambda e: e.raw == line or (notice and e.line == meaning))


def _login_names(vector: Vector) -> list[str]:
    names = []
    for step in vector.steps:
        if isinstance(step, Send):
            for raw in step.data.split(b"\n"):
                word, _, arg = raw.rstrip(b"\r").partition(b" ")
                if word.upper() == b"LOGIN" and arg:
                    names.append(arg.decode("utf-8", "replace").lower())
    return names


def _first_login(vector: Vector, client: str) -> str | None:
    for step in vector.steps:
        if isinstance(step, Send) and step.client == client:
            for raw in step.data.split(b"\n"):
                word, _, arg = raw.rstrip(b"\r").partition(b" ")
                if word.upper() == b"LOGIN" and arg:
                    return arg.decode("utf-8", "replace")
    return None


def vector_checks() -> list[Check]:
    """One strict test per vector case, in file order."""
    return [
        Check(
            id=v.id,
            slug=v.slug,
            section=v.section,
            title=v.description,
            doc="A shared spec vector (chatproto/vectors/spec.json), played over TCP "
            "and compared line by line (ERR lines by token).",
            profiles=frozenset({"strict"}),
            needs=frozenset(),
            budget=30.0,
            body=VectorBody(v),
            source="vectors",
        )
        for v in load_vectors()
    ]
