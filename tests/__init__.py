"""chatproto's tests, in two tiers.

* ``tests/core``: the sans-IO core and the client session, in memory: no
  socket, no process, no clock; the whole tier runs in seconds
  (``pytest tests/core``).
* ``tests/live``: real sockets and processes: every backend, the tools, the
  examples, the conformance suite, packaging. Marked ``live`` (and a few
  long forms ``slow``, outside the default run); ``tests/live/conftest.py``
  holds the backend parametrisation.

``.ci/run`` runs both.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO"]

#: The repository's root: the one home of that fact for every test.
REPO = Path(__file__).resolve().parent.parent
