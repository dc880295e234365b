"""Fixtures both tiers use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatproto.tls import ThrowawayCertificate


@pytest.fixture(scope="module")
def cert() -> Iterator[ThrowawayCertificate]:
    """A certificate made for this module's tests (trustme), removed afterwards."""
    pytest.importorskip("trustme")
    made = ThrowawayCertificate()
    yield made
    made.close()
