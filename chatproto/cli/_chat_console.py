"""The two consoles of ``chatproto-chat``: plain lines, or a prompt_toolkit prompt.

Owns the terminal: reading what the user types and showing lines without
garbling it. Both consoles have the same two methods, :meth:`read_line`
(``None`` at the end of input) and :meth:`show`; neither knows the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Union

__all__ = ["Console", "PlainConsole", "PromptConsole", "open_console"]


class PlainConsole:
    """Lines from stdin, printed lines to stdout. For pipes and dumb terminals.

    Ctrl-C (SIGINT) ends the input like Ctrl-D, so the client leaves
    politely (``QUIT``); a second Ctrl-C interrupts for real.
    """

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        # A daemon thread, reading the file descriptor (not sys.stdin, whose
        # lock would block interpreter exit), works for ttys, pipes and files
        # alike; loop.add_reader refuses regular files.
        thread = threading.Thread(target=self._read, daemon=True)
        thread.start()
        # Not in the main thread, or on Windows: Ctrl-C stays an interrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.add_signal_handler(signal.SIGINT, self._interrupted)

    def _read(self) -> None:
        pending = b""
        put = self._loop.call_soon_threadsafe
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                put(self._lines.put_nowait, raw.removesuffix(b"\r").decode("utf-8", "replace"))
        if pending:
            put(self._lines.put_nowait, pending.decode("utf-8", "replace"))
        put(self._lines.put_nowait, None)

    def _interrupted(self) -> None:
        self.close()  # the next Ctrl-C raises KeyboardInterrupt as usual
        self._lines.put_nowait(None)

    def close(self) -> None:
        """Give SIGINT back to Python's default handler."""
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.remove_signal_handler(signal.SIGINT)

    async def read_line(self) -> str | None:
        return await self._lines.get()

    def show(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError):
            print(line, flush=True)


class PromptConsole:
    """prompt_toolkit: a prompt that output printed meanwhile never garbles.

    Ctrl-C and Ctrl-D at the prompt end the input.
    """

    def __init__(self, prompt: Callable[[], str]) -> None:
        from prompt_toolkit import PromptSession  # noqa: PLC0415 - optional extra

        self._session: PromptSession[str] = PromptSession()
        self._prompt = prompt

    async def read_line(self) -> str | None:
        try:
            return await self._session.prompt_async(self._prompt)
        except (EOFError, KeyboardInterrupt):
            return None

    def show(self, line: str) -> None:
        print(line, flush=True)  # patch_stdout puts it above the prompt


Console = Union[PlainConsole, PromptConsole]


@contextlib.asynccontextmanager
async def open_console(mode: str, prompt: Callable[[], str]) -> AsyncIterator[Console]:
    """The console for ``mode`` (``"plain"`` or ``"prompt"``), for the ``async with``."""
    if mode == "plain":
        console = PlainConsole()
        try:
            yield console
        finally:
            console.close()
        return
    from prompt_toolkit.patch_stdout import patch_stdout  # noqa: PLC0415 - optional extra

    # raw=True lets our own ANSI colours through.
    with patch_stdout(raw=True):
        yield PromptConsole(prompt)
