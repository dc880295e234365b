"""Draw the core's state machines into docs/architecture.md, from the tables themselves.

The diagrams are not written by hand: each is rendered from the table the code
runs on (``TRANSITIONS`` of the server session, ``MODE_TRANSITIONS`` of a
connection, ``TRANSITIONS`` of the client session, ``LINK_TRANSITIONS`` of a
cluster node's link to Redis), between marker comments
in docs/architecture.md. ``python docs/make_state_diagrams.py`` rewrites
them; ``--check`` exits 1 if the page is stale (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import TypeVar

from chatproto._client_session import TRANSITIONS as CLIENT_TRANSITIONS
from chatproto._client_session import ClientState
from chatproto._cluster import LINK_TRANSITIONS, LinkState
from chatproto._connection import MODE_TRANSITIONS
from chatproto._events import CloseMode
from chatproto._server_session import TRANSITIONS as SESSION_TRANSITIONS
from chatproto._server_session import SessionState

PAGE = Path(__file__).with_name("architecture.md")
E = TypeVar("E", bound=Enum)


def mermaid(table: Mapping[tuple[E, str], E], start: E, states: Iterable[E]) -> str:
    """A Mermaid state diagram of ``table``; self-loops are left out (they change nothing)."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {start.name}"]
    for state in states:
        for (source, trigger), target in table.items():
            if source is state and target is not source:
                lines.append(f"    {source.name} --> {target.name}: {trigger}")
    lines.append("```")
    return "\n".join(lines)


def diagrams() -> dict[str, str]:
    """Each diagram, by the name of its marker."""
    return {
        "server-session": mermaid(
            SESSION_TRANSITIONS, SessionState.AWAITING_LOGIN, list(SessionState)
        ),
        "connection-mode": mermaid(MODE_TRANSITIONS, CloseMode.OPEN, list(CloseMode)),
        "client-session": mermaid(CLIENT_TRANSITIONS, ClientState.CONNECTED, list(ClientState)),
        "cluster-link": mermaid(LINK_TRANSITIONS, LinkState.DOWN, list(LinkState)),
    }


def render(page: str) -> str:
    """``page`` with every marked diagram replaced by its current rendering."""
    for name, diagram in diagrams().items():
        begin, end = f"<!-- begin {name} diagram -->", f"<!-- end {name} diagram -->"
        head, found, rest = page.partition(begin)
        if not found:
            raise SystemExit(f"{PAGE}: no {begin} marker")
        _, found, tail = rest.partition(end)
        if not found:
            raise SystemExit(f"{PAGE}: no {end} marker")
        page = f"{head}{begin}\n{diagram}\n{end}{tail}"
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    current = PAGE.read_text("utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{PAGE} is stale: run python docs/make_state_diagrams.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
