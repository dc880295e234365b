"""Room: the name registry on its own (docs/protocol.md §5.3, §7.2, §9.1)."""

from __future__ import annotations

from chatproto._room import Room  # private: the room is ChatServer's


def test_claim_is_case_insensitive_and_keeps_the_spelling() -> None:
    room: Room[int] = Room()
    assert room.claim("Alice", 1)
    assert not room.claim("alice", 2)
    assert not room.claim("ALICE", 2)
    assert room.lookup("aLiCe") == ("Alice", 1)
    assert "alice" in room
    assert len(room) == 1


def test_login_order_and_rejoin() -> None:
    room: Room[int] = Room()
    for member, name in enumerate(["a", "b", "c"]):
        room.claim(name, member)
    room.release("A")
    room.claim("A", 9)
    assert list(room.names()) == ["b", "c", "A"]
    assert list(room.members()) == [1, 2, 9]


def test_release_is_quiet_for_a_free_name() -> None:
    room: Room[int] = Room()
    room.release("ghost")
    room.claim("x", 1)
    room.clear()
    assert len(room) == 0
    assert room.lookup("x") is None


def test_non_ascii_never_matches_an_ascii_name() -> None:
    # KELVIN SIGN lower-cases to "k" in Python; registered names are ASCII,
    # so it must match nobody, through lookup and "in" alike.
    room: Room[int] = Room()
    room.claim("k", 1)
    assert room.lookup("\u212a") is None
    assert "\u212a" not in room
