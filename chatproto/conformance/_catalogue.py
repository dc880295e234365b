"""The catalogue: every test, in order, and choosing which ones to run.

Owns: assembling the hand-written tests (``_checks``) and the shared vectors
into one list sorted by area then number, checking that IDs are unique, and
filtering by profile and ``--only``/``--exclude`` globs. Never runs a test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase

from . import _checks  # noqa: F401  (registers the hand-written tests)
from ._checks.vectors import vector_checks
from ._registry import AREAS, Check, registered

__all__ = ["catalogue", "find", "select"]


def _order(check: Check) -> tuple[int, int, str]:
    areas = list(AREAS)
    area = areas.index(check.area) if check.area in areas else len(areas)
    m = re.search(r"(\d+)$", check.id)
    return (area, int(m.group(1)) if m else 0, check.id)


def catalogue() -> list[Check]:
    """Every test, sorted by area then number.

    Raises ``ValueError`` if two tests share an ID (a vector added with an ID
    the hand-written catalogue already uses).
    """
    checks = registered() + vector_checks()
    seen: dict[str, Check] = {}
    for c in checks:
        if c.id in seen:
            raise ValueError(
                f"duplicate conformance test ID {c.id}: {seen[c.id].slug} and {c.slug}"
            )
        seen[c.id] = c
    return sorted(checks, key=_order)


def _matches(check: Check, patterns: Sequence[str]) -> bool:
    return any(
        fnmatchcase(check.id.upper(), p.upper())
        or fnmatchcase(check.slug, p)
        or fnmatchcase(check.label, p)
        for p in patterns
    )


def select(
    checks: Sequence[Check],
    profiles: Sequence[str],
    only: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Check]:
    """The tests in any of ``profiles``, narrowed by ``only`` and ``exclude`` (ID or slug globs)."""
    chosen = [c for c in checks if c.profiles & set(profiles)]
    if only:
        chosen = [c for c in chosen if _matches(c, only)]
    if exclude:
        chosen = [c for c in chosen if not _matches(c, exclude)]
    return chosen


def find(checks: Sequence[Check], test_id: str) -> Check | None:
    """The test with this ID (or slug), if any."""
    for c in checks:
        if c.id.upper() == test_id.upper() or c.slug == test_id:
            return c
    return None
