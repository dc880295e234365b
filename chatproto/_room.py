"""The room: who is logged in, under which name, in which order.

Owns: the name registry (unique case-insensitively, shown as registered), login
order, and name lookup for DMs (docs/protocol.md §5, §7, §9). It holds opaque
member handles and never touches bytes or buffers, so the routing decisions can
later be shared between server processes (through a broker) without rewriting
the local connection bookkeeping in :class:`~chatproto.ChatServer`.
"""

from __future__ import annotations

from collections.abc import Iterator, ValuesView
from typing import Generic, TypeVar

__all__ = ["Room"]

M = TypeVar("M")


class Room(Generic[M]):
    """Registered names mapped to member handles, in login order."""

    __slots__ = ("_members", "_names")

    def __init__(self) -> None:
        # Keyed by the ASCII-lowercased name; dicts keep insertion order, which
        # is login order, because a name that leaves and returns is re-added.
        self._members: dict[str, M] = {}
        self._names: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: str) -> bool:
        # Through lookup(), so that "in" and lookup() agree on non-ASCII names.
        return self.lookup(name) is not None

    def claim(self, name: str, member: M) -> bool:
        """Register ``name`` for ``member``; ``False`` if the name is taken."""
        key = name.lower()
        if key in self._members:
            return False
        self._members[key] = member
        self._names[key] = name
        return True

    def release(self, name: str) -> None:
        """Free ``name``. Releasing a free name is a no-op (races are quiet)."""
        key = name.lower()
        self._members.pop(key, None)
        self._names.pop(key, None)

    def lookup(self, name: str) -> tuple[str, M] | None:
        """The registered spelling and member for ``name``, matched case-insensitively."""
        if not name.isascii():
            # str.lower() maps some non-ASCII letters onto ASCII (KELVIN SIGN
            # to "k"); registered names are ASCII, so such a name matches none.
            return None
        key = name.lower()
        member = self._members.get(key)
        if member is None:
            return None
        return self._names[key], member

    def members(self) -> ValuesView[M]:
        """Every member, in login order (a live view: copy it to mutate the room)."""
        return self._members.values()

    def names(self) -> Iterator[str]:
        """Every registered name, in login order."""
        return iter(self._names.values())

    def clear(self) -> None:
        """Forget every member."""
        self._members.clear()
        self._names.clear()
