"""Broken server: accepts connections and never answers anything.

Caught by: the probe, which reports the target unusable ("answers nothing")
within seconds, under any profile.
"""

from __future__ import annotations

import socket
import sys

listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)  # read nothing, say nothing, close nothing
