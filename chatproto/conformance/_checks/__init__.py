"""The test catalogue, one module per area.

Importing this package registers every hand-written test (see
:func:`chatproto.conformance._registry.check`); :mod:`.vectors` turns the
shared spec vectors into tests too. Each module owns one area (load has
two: floods of lines, floods of connections) and never touches a socket
directly: tests talk through :class:`~.._conn.Conn`.
"""

from . import (  # noqa: F401  (imported to register their tests)
    commands,
    concurrency,
    dm,
    errors,
    framing,
    idle,
    limits,
    load,
    load_connections,
    login,
    msg,
    ping,
    presence,
    robustness,
    who,
)
