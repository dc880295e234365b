"""Broken server: closes every connection as soon as it is accepted.

Caught by: the probe, which reports the target unusable (the first
connection closed) within seconds, under any profile.
"""

from __future__ import annotations

import socket
import sys

listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = listener.accept()
    conn.close()
