"""The shared spec vectors (chatproto/vectors/spec.json) run through the core.

The conformance suite runs the same cases over TCP; here they run through the
in-memory harness, once as written and once with every send fed one byte at a
time (§1.3: the split must not matter). The file itself is checked too: ids,
sections and coverage, so a case cannot silently drift from the spec.
"""

from __future__ import annotations

import re
from collections import deque

import pytest

from chatproto import ErrorCode
from chatproto.vectors import Expect, Send, Vector, load_vectors
from tests import REPO
from tests.core.memory_harness import MemoryClient, MemoryRoom

VECTORS = load_vectors()
AREAS = ("FRM", "TXT", "CMD", "ERR", "LOG", "MSG", "DM", "WHO", "PNG", "HLP", "QUT", "DIS")
SPEC = (REPO / "docs" / "protocol.md").read_text("utf-8")


def run_vector(vector: Vector, *, bytewise: bool) -> None:
    room = MemoryRoom()
    clients: dict[str, MemoryClient] = {name: room.connect() for name in vector.clients}
    inbox: dict[str, deque[str]] = {name: deque() for name in vector.clients}
    for number, step in enumerate(vector.steps, 1):
        if isinstance(step, Send):
            client = clients[step.client]
            if bytewise:
                client.send_split(step.data, [1] * len(step.data))
            else:
                client.send(step.data)
        else:
            inbox[step.client].extend(clients[step.client].lines())
            assert inbox[step.client], (
                f"{vector.id} step {number}: {step.client} got nothing, expected {step.line!r}"
            )
            got = inbox[step.client].popleft()
            assert got == step.line, f"{vector.id} step {number}: {step.client} got {got!r}"
    for name, client in clients.items():
        inbox[name].extend(client.lines())
        assert not inbox[name], f"{vector.id}: {name} got unexpected lines {list(inbox[name])}"


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector(vector: Vector) -> None:
    run_vector(vector, bytewise=False)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector_byte_at_a_time(vector: Vector) -> None:
    run_vector(vector, bytewise=True)


# ------------------------------------------------------------ the file itself


def test_ids_unique_and_well_formed() -> None:
    ids = [v.id for v in VECTORS]
    assert len(ids) == len(set(ids))
    pattern = re.compile(rf"({'|'.join(AREAS)})-\d\d")
    for v in VECTORS:
        assert pattern.fullmatch(v.id), v.id
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", v.slug), v.slug
        assert v.description


def test_every_area_has_cases() -> None:
    assert {v.id.split("-")[0] for v in VECTORS} == set(AREAS)


def test_sections_exist_in_spec() -> None:
    for v in VECTORS:
        assert re.search(rf"^{re.escape(v.section)}\. ", SPEC, re.MULTILINE), (v.id, v.section)


def test_steps_name_declared_clients() -> None:
    for v in VECTORS:
        assert v.clients and len(set(v.clients)) == len(v.clients)
        for step in v.steps:
            assert step.client in v.clients, (v.id, step)
        # Every case checks something on the wire.
        assert any(isinstance(s, Expect) for s in v.steps), v.id


def test_every_error_token_but_server_full_is_scripted() -> None:
    expected = {f"ERR {code.value} {code.text}" for code in ErrorCode}
    for code in (ErrorCode.SERVER_FULL, ErrorCode.CLUSTER_UNAVAILABLE):  # not single-node lines
        expected.discard(f"ERR {code.value} {code.text}")
    seen = {s.line for v in VECTORS for s in v.steps if isinstance(s, Expect)}
    assert expected <= seen, expected - seen


def test_lines_are_single_lines() -> None:
    # An expected line with a terminator inside could never match a received line.
    for v in VECTORS:
        for s in v.steps:
            if isinstance(s, Expect):
                assert "\n" not in s.line, v.id
