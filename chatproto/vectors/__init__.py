"""Shared test vectors: scripted exchanges that every conforming server passes.

The core tests (through the in-memory harness) and the conformance suite (over
real TCP) read the same file, ``spec.json``, so the spec is checked the same
way in both places.

Format (``"format": 1``): a list of cases, each with an ``id`` (``AREA-NN``), a
``slug``, the spec ``section`` it checks, a ``description``, the ``clients`` it
uses (names such as ``"a"``, connected in that order before the first step),
and ``steps``, executed in order:

* ``{"send": "a", "data": "LOGIN alice\\n"}``: client ``a`` sends the bytes
  (the string encoded as UTF-8; ``"hex"`` instead of ``"data"`` gives raw
  bytes, for invalid UTF-8).
* ``{"expect": "a", "line": "OK"}``: the next line ``a`` receives is exactly
  this (terminator removed).

After the last step, no client has received any line not named in an
``expect`` step.

Cases assume a server with the default limits of docs/protocol.md §13 (the
line-length cases use ``max_line_bytes`` = 4096) and no timeout firing during
a case. Every ``send`` comes after ``expect`` steps that prove what it depends
on was processed, so a case gives the same lines over any transport, however
the bytes are split. Lines are compared exactly; a conformance run against a
third-party server may compare only the error token (``ERR <token>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["Expect", "Send", "Step", "Vector", "load_vectors"]


@dataclass(frozen=True, slots=True)
class Send:
    """Client ``client`` sends ``data``."""

    client: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Expect:
    """The next line client ``client`` receives is ``line``."""

    client: str
    line: str


Step = Send | Expect


@dataclass(frozen=True, slots=True)
class Vector:
    """One scripted exchange."""

    id: str
    slug: str
    section: str
    description: str
    clients: tuple[str, ...]
    steps: tuple[Step, ...]


def _step(raw: dict[str, str]) -> Step:
    if "send" in raw:
        data = bytes.fromhex(raw["hex"]) if "hex" in raw else raw["data"].encode("utf-8")
        return Send(raw["send"], data)
    return Expect(raw["expect"], raw["line"])


def load_vectors() -> list[Vector]:
    """Every case in ``spec.json``, in file order."""
    text = resources.files(__name__).joinpath("spec.json").read_text("utf-8")
    doc = json.loads(text)
    if doc.get("format") != 1:
        raise ValueError(f"unsupported vector format {doc.get('format')!r}")
    return [
        Vector(
            id=case["id"],
            slug=case["slug"],
            section=case["section"],
            description=case["description"],
            clients=tuple(case["clients"]),
            steps=tuple(_step(s) for s in case["steps"]),
        )
        for case in doc["cases"]
    ]
