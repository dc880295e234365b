"""A node's copy of who is logged in anywhere in the cluster, in login order.

Owns: the replica of Redis's user table that every node keeps from the bus
(join and leave messages, in the one order Redis published them) and from
snapshots after a reconnect; what changed, so that the caller can tell its
users (one notice per change); name lookup for DM and the WHO block. Never
touches a connection or a byte of output: the caller turns the changes it
returns into notices.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._replies import UserLines

__all__ = ["Change", "Member", "Presence"]


@dataclass(frozen=True, slots=True)
class Member:
    """One logged-in user of the cluster: the claim that holds the name."""

    #: ``<node>/<serial>``: which claim (and so which node) holds the name.
    token: str
    #: As registered.
    name: str
    #: Redis's login counter when the claim succeeded: login order (§9.1).
    seq: int
    lines: UserLines

    @property
    def node(self) -> str:
        return self.token.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Change:
    """A user joined (``joined``) or left (not ``joined``) the replica."""

    member: Member
    joined: bool


class Presence:
    """Members keyed by lower-case name, in login order."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def lookup(self, name: str) -> Member | None:
        """The member named ``name`` (case-insensitively), if any."""
        if not name.isascii():
            return None  # registered names are ASCII (see Room.lookup)
        return self._members.get(name.lower())

    def join(self, seq: int, token: str, name: str) -> list[Change]:
        """Apply a join message: the changes it makes (none if it is known already).

        A different claim on the same name means this node missed that
        claim's leave: it leaves first, then the new one joins.
        """
        key = name.lower()
        current = self._members.get(key)
        if current is not None and current.token == token:
            if current.seq != seq:
                # Claimed again (Redis restarted): its place in login order
                # is the new claim's, as on every node; no notice.
                del self._members[key]
                self._members[key] = Member(token, name, seq, current.lines)
            return []
        changes = []
        if current is not None:
            del self._members[key]
            changes.append(Change(current, joined=False))
        member = Member(token, name, seq, UserLines.of(name))
        self._members[key] = member
        changes.append(Change(member, joined=True))
        return changes

    def leave(self, token: str, name: str) -> Change | None:
        """Apply a leave message: the change, or ``None`` if that claim is not here."""
        key = name.lower()
        current = self._members.get(key)
        if current is None or current.token != token:
            return None
        del self._members[key]
        return Change(current, joined=False)

    def replace(
        self, entries: Iterable[tuple[int, str, str]], keep: Iterable[Member] = ()
    ) -> list[Change]:
        """Become ``(seq, token, name)`` entries (a snapshot): leaves first, then joins in order.

        ``keep``: members to keep although the snapshot lacks them (after
        the snapshot's, in their order).
        """
        fresh: dict[str, Member] = {}
        for seq, token, name in sorted(entries):
            current = self._members.get(name.lower())
            if current is not None and current.token == token:
                fresh[name.lower()] = Member(token, name, seq, current.lines)
            else:
                fresh[name.lower()] = Member(token, name, seq, UserLines.of(name))
        for m in keep:
            fresh.setdefault(m.name.lower(), m)
        changes = [
            Change(m, joined=False)
            for key, m in self._members.items()
            if key not in fresh or fresh[key].token != m.token
        ]
        changes += [
            Change(m, joined=True)
            for key, m in fresh.items()
            if key not in self._members or self._members[key].token != m.token
        ]
        self._members = fresh
        return changes

    def remove(self, name: str) -> Change | None:
        """Take ``name`` out without a message (a local user left while Redis was away)."""
        current = self._members.pop(name.lower(), None)
        return None if current is None else Change(current, joined=False)
