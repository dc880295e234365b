"""The server's log: one line per record, as text for people or as JSON for machines.

``text``: ``2026-11-29 18:46:02,113 INFO chatproto.serve: login conn=3 ...``:
time, level, the logger's name (so ``grep chatproto.serve`` or a handler per
logger works), message.

``json``: one object per line, for log shippers and ``jq``::

    {"time": "2026-11-29T18:46:02.113Z", "level": "info", "logger": "chatproto.serve",
     "message": "login conn=3 peer=127.0.0.1:50122 user=ann",
     "event": "login", "conn": 3, "peer": "127.0.0.1:50122", "user": "ann"}

The server's messages are written ``event key=value ...`` (logfmt); the JSON
form adds the event and each key as fields of its own (whole numbers as
numbers), so filtering needs no parsing of the message. A message of another
shape is only the ``message`` field. Exceptions go in ``exception``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "configure_logging"]

#: The values of ``--log-format``.
LOG_FORMATS = ("text", "json")
#: The values of ``--log-level``, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: ``event key=value key=value``; values have no spaces (names and tokens never do).
_LOGFMT = re.compile(r"[a-z][a-z-]*(?: [a-z_]+=\S*)*")
_NUMBER = re.compile(r"-?\d+")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        seconds = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"
        out: dict[str, object] = {
            "time": stamp,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if _LOGFMT.fullmatch(message):
            event, *pairs = message.split(" ")
            out["event"] = event
            for pair in pairs:
                key, _, value = pair.partition("=")
                if key not in out:  # never overwrite the record's own fields
                    out[key] = int(value) if _NUMBER.fullmatch(value) else value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr) in format ``fmt``.

    ``level`` is one of :data:`LOG_LEVELS`, ``fmt`` one of :data:`LOG_FORMATS`.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
