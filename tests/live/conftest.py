"""The live tier: real sockets and processes. Marked ``live``; the backends in one place.

Every test here is marked ``live`` (``pytest -m "not live"`` runs the core
tier alone, in seconds). The fixtures below are the one parametrisation over
the backends for the whole tier: ``flavour`` is each of the five ways to run
``chatproto-serve`` (``chatproto.adapters.FLAVOURS``), ``any_server`` adds
the stdlib reference server of examples/ for scenarios that apply to any
server. Each value is the server's command-line arguments, as
:func:`tests.live.live_server.running_server` takes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .live_server import BACKENDS, SELECTORS_EXAMPLE

HERE = Path(__file__).parent

#: Every flavour, and the example, by test id.
ANY_SERVER: dict[str, list[str]] = {**BACKENDS, "selectors-example": SELECTORS_EXAMPLE}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this tier ``live``."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.live)


def _installed(args: list[str]) -> list[str]:
    """``args``, or a skip naming the missing extra (never the case under .ci/run)."""
    for module, flag in (("gevent", "gevent"), ("trio", "trio"), ("uvloop", "--uvloop")):
        if flag in args:
            pytest.importorskip(module, reason=f"{module} is not installed")
    return args


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def flavour(request: pytest.FixtureRequest) -> list[str]:
    """Each backend flavour, as chatproto-serve arguments."""
    return _installed(BACKENDS[request.param])


@pytest.fixture(params=list(ANY_SERVER), ids=list(ANY_SERVER))
def any_server(request: pytest.FixtureRequest) -> list[str]:
    """Each backend flavour and the selectors example (its first argument is the script)."""
    return _installed(ANY_SERVER[request.param])
