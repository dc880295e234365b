"""The asyncio driver of ``chatproto-chat``: socket, console and client, wired.

Owns the I/O: a TCP connection (over asyncio's own TLS with ``tls``: a client
that asks, waits for the answer and leaves with QUIT needs nothing more), the
console, the keepalive timer, and the order of shutdown (``QUIT``, a grace
period for the server to close, then close anyway). Moves bytes and lines
between them and :class:`ChatClient`, which decides everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Final

from chatproto.tls import describe_error

from ._chat_client import DEFAULT_KEEPALIVE, ChatClient
from ._chat_console import open_console
from ._chat_format import notice

__all__ = ["QUIT_GRACE", "run"]

#: Seconds to wait for the server to close the connection after ``QUIT``.
QUIT_GRACE: Final = 3.0


async def run(
    host: str,
    port: int,
    name: str | None,
    *,
    mode: str = "plain",
    colour: bool = False,
    keepalive: float = DEFAULT_KEEPALIVE,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Connect, log in, and chat until the user leaves or the connection ends.

    ``mode`` is ``"prompt"`` (prompt_toolkit) or ``"plain"``; ``tls`` a client
    context to speak TLS with (the server's name is checked against ``host``).
    Returns the exit status: 0 when the user left, 1 when the connection was
    lost, 2 when it could not be made (a certificate that does not verify
    included).
    """
    client = ChatClient(name, colour=colour, keepalive=keepalive)
    loop = asyncio.get_running_loop()

    def prompt() -> str:
        return f"{client.session.username or name or ''}> "

    async with open_console(mode, prompt) as console:

        def show(lines: list[str]) -> None:
            for line in lines:
                console.show(line)

        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        except OSError as exc:
            text = f"cannot connect to {host}:{port}: {describe_error(exc)}"
            show([notice(text, time.time(), colour)])
            return 2
        over = "" if tls is None else f" over {writer.get_extra_info('ssl_object').version()}"
        text = f"connected to {host}:{port}{over}; /help lists the commands"
        show([notice(text, time.time(), colour)])

        async def flush() -> None:
            data = client.data_to_send()
            if data:
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        async def network() -> None:
            while True:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    show(client.receive_eof(time.time()))
                    return
                show(client.receive_data(data, loop.time(), time.time()))
                await flush()

        async def keyboard() -> None:
            while not client.leaving:
                line = await console.read_line()
                if line is None:  # end of input, Ctrl-C
                    show(client.leave(loop.time(), time.time()))
                else:
                    show(client.handle_input(line, loop.time(), time.time()))
                await flush()

        async def keepalive_timer() -> None:
            while (deadline := client.next_deadline()) is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                client.handle_timeout(loop.time())
                await flush()

        show(client.start(loop.time(), time.time()))
        await flush()
        net = asyncio.create_task(network())
        keys = asyncio.create_task(keyboard())
        timer = asyncio.create_task(keepalive_timer())
        try:
            await asyncio.wait({net, keys}, return_when=asyncio.FIRST_COMPLETED)
            if keys.done() and not net.done():
                # The user left: QUIT is on its way; the server answers OK
                # and closes. Do not wait for a server that never does.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(net), QUIT_GRACE)
        finally:
            for task in (net, keys, timer):
                task.cancel()
            await asyncio.gather(net, keys, timer, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return 0 if client.leaving else 1
