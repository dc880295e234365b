"""How a run ends early and still cleans up: signals, and a closed pipe.

Owns: :func:`stop_on_signals` (SIGTERM and SIGHUP raise :class:`Stopped` in
the main thread, so that unwinding runs the runner's clean-up, which stops
every server the suite started; SIGINT already raises ``KeyboardInterrupt``)
and :func:`quiet_broken_pipe` with its exit code :data:`EXIT_PIPE` (output
into a closed pipe, ``| head``, ends the run quietly). The command line
decides what each means for its exit code.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["EXIT_PIPE", "Stopped", "quiet_broken_pipe", "stop_on_signals"]


class Stopped(Exception):  # noqa: N818  (a request, not an error)
    """The suite got SIGTERM or SIGHUP: unwind, stopping what it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread (SIGINT already raises).

    Unwinding runs the runner's ``finally``, which stops every server it
    started. Only installed from the main thread (signals cannot be handled
    elsewhere), and the previous handlers come back afterwards.
    """
    if sys.platform == "win32" or not _main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signum)

    wanted = (signal.SIGTERM, signal.SIGHUP)
    old: dict[int, Callable[[int, FrameType | None], object] | int | None] = {
        s: signal.signal(s, handler) for s in wanted
    }
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def quiet_broken_pipe() -> None:
    """stdout's reader went away (``| head``): send the rest of our output nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


#: Exit code after a closed pipe, as a shell reports a process killed by SIGPIPE.
EXIT_PIPE = 128 + 13
