"""Broken server: the first start fails like a lost port race, on stdout and with exit code 0.

``python exits_if_port_file.py PORT MARKER``: if MARKER does not exist yet, it
creates it, prints "Address already in use" on stdout and exits 0 (as some
servers do when their bind fails); otherwise it runs the correct loop server.
With MARKER ``always`` it fails every time. Caught by: the start-up of the
suite, which shows the output and retries once on a new port.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.live.broken_servers._loop import LoopServer, main
else:  # run as a script: the directory of this file is on sys.path
    from _loop import LoopServer, main

marker = sys.argv[2]
if marker == "always" or not Path(marker).exists():
    if marker != "always":
        Path(marker).write_text("started once\n")
    print(f"Error: listen EADDRINUSE: address already in use 127.0.0.1:{sys.argv[1]}", flush=True)
    sys.exit(0)
main(LoopServer, [sys.argv[1]])
