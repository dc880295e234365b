"""``--version`` for every command, from the one version source.

The version is written once, in pyproject.toml; installed, it is the package's
metadata, which :data:`chatproto.__version__` reads. Every command prints the
same line shape, ``<command> <version> (Python <x.y.z>)``, so scripts can
parse it and bug reports carry both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import chatproto

__all__ = ["add_version_option", "version_line"]


def version_line(prog: str) -> str:
    """What ``--version`` prints for the command ``prog``."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"{prog} {chatproto.__version__} (Python {python})"


class _PrintVersion(argparse.Action):
    """Prints :func:`version_line` and exits 0.

    Unlike argparse's own ``version`` action, the version is looked up only
    when asked for: reading package metadata costs every start some 25 ms.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(version_line(parser.prog), flush=True)
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` option (print the version, exit 0)."""
    parser.add_argument("--version", action=_PrintVersion, help="print the version and exit")
