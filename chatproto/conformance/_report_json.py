"""The ``--json`` report: the run as data (also the input of ``matrix``)."""

from __future__ import annotations

import json
from pathlib import Path

from ._outcome import RunReport

__all__ = ["read_json", "write_json"]


def write_json(report: RunReport, path: str | Path) -> None:
    """Write ``report`` as indented UTF-8 JSON."""
    Path(path).write_text(
        json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


def read_json(path: str | Path) -> RunReport:
    """Read a report written by :func:`write_json`; ``ValueError`` if it is not one."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read report {path}: {exc}") from exc
    return RunReport.from_json(data)
