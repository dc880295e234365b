"""The shape of a conformance test, and the decorator that registers one.

Owns: :class:`Check` (a test's stable ID, slug, spec section, area, profiles,
needs and body), the profile and area names, and :func:`check`, which the
modules in ``_checks/`` use to add their tests. Never runs anything.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._context import TestContext

__all__ = ["AREAS", "NEEDS", "PROFILES", "Body", "Check", "check", "registered"]

#: ``core``: what the original README promised plus what any line protocol over
#: TCP implies; its Bonus features only where present; dialects allowed.
#: ``strict``: chatproto's exact spec (docs/protocol.md).
#: ``robust``: stress and hostile input.
#: ``load``: floods, a reader that stops, connection floods and slowloris
#: (docs/protocol.md §12 to §16): one client must degrade nobody else.
PROFILES: Final = ("core", "strict", "robust", "load")

#: Areas in catalogue order: ID prefix -> human name.
AREAS: Final = {
    "FRM": "framing",
    "TXT": "text (UTF-8, control characters)",
    "CMD": "commands",
    "HLP": "HELP",
    "QUT": "QUIT",
    "LOG": "login rules",
    "MSG": "MSG fan-out",
    "WHO": "WHO",
    "DM": "DM",
    "PNG": "PING",
    "ERR": "errors",
    "DIS": "disconnect notices",
    "IDL": "idle timeout",
    "LIM": "limits",
    "SHD": "shutdown",
    "CON": "concurrency",
    "ROB": "robustness",
    "LOD": "load",
}

#: What a test may need from the target beyond a running server.
#: ``idle``: a server with a short idle timeout (or --allow-slow);
#: ``max-clients``: a server started with a small max_clients (3);
#: ``crowd``: a server started with max_clients 20 (a connection flood past it);
#: ``own-server``: a server the suite may stop (for shutdown tests);
#: ``unthrottled``: a server with its flood control off (§16.2), where the
#: suite can start one: the test floods on purpose to measure backpressure or
#: fairness, not the flood limit. Unlike the others this need never skips: a
#: server the suite cannot unthrottle is tested as it is.
NEEDS: Final = ("idle", "max-clients", "crowd", "own-server", "unthrottled")

Body = Callable[["TestContext"], None]


@dataclass(frozen=True)
class Check:
    """One conformance test."""

    #: Stable ID, ``AREA-NN``.
    id: str
    #: Short stable name, e.g. ``crlf-accepted``.
    slug: str
    #: The section of docs/protocol.md it checks.
    section: str
    #: What it checks, in one line.
    title: str
    #: Longer explanation (the body's docstring).
    doc: str
    profiles: frozenset[str]
    needs: frozenset[str]
    #: Seconds the whole test may take before it is stopped as hung.
    budget: float
    body: Body
    #: Where it comes from: ``catalogue`` or ``vectors``.
    source: str = "catalogue"
    #: The README Bonus feature it exercises (``who``, ``dm``, ``ping``,
    #: ``idle``): under core, a server without it gets NOT-IMPLEMENTED.
    feature: str = ""
    #: The root cause its failure points to, in words (a failure may name a
    #: more precise one). Failures with one cause are reported together.
    cause: str = ""

    @property
    def area(self) -> str:
        """The ID prefix, e.g. ``FRM``."""
        return self.id.split("-", 1)[0]

    @property
    def area_name(self) -> str:
        """The human name of the area."""
        return AREAS.get(self.area, self.area.lower())

    @property
    def label(self) -> str:
        """``ID slug``, as printed in reports."""
        return f"{self.id} {self.slug}"


_REGISTRY: list[Check] = []


def check(
    id: str,
    slug: str,
    section: str,
    *,
    profiles: str,
    needs: str = "",
    budget: float = 30.0,
    feature: str = "",
    cause: str = "",
) -> Callable[[Body], Body]:
    """Register the decorated function as a test.

    ``profiles`` and ``needs`` are space-separated names. The first line of the
    docstring is the title; the rest explains what is checked and why.
    ``feature`` names the README Bonus feature it needs; ``cause`` is what its
    failure means, in words (default: its title).
    """
    profile_set = frozenset(profiles.split())
    need_set = frozenset(needs.split())
    if not profile_set <= set(PROFILES):
        raise ValueError(f"{id}: unknown profile in {profiles!r}")
    if not need_set <= set(NEEDS):
        raise ValueError(f"{id}: unknown need in {needs!r}")

    def register(body: Body) -> Body:
        doc = textwrap.dedent(body.__doc__ or "").strip()
        title, _, rest = doc.partition("\n")
        _REGISTRY.append(
            Check(
                id=id,
                slug=slug,
                section=section,
                title=title.strip(),
                doc=textwrap.dedent(rest).strip(),
                profiles=profile_set,
                needs=need_set,
                budget=budget,
                body=body,
                feature=feature,
                cause=cause or title.strip(),
            )
        )
        return body

    return register


def registered() -> list[Check]:
    """The tests registered so far, in registration order."""
    return list(_REGISTRY)
