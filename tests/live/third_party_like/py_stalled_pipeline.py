"""Chat server (Python, asyncio) whose login step keeps the rest of the packet unread.

The bug: the login loop reads a chunk, takes the first line as LOGIN and keeps
the rest in a buffer; the main loop then waits for the next read before it
looks at that buffer. Lines sent in the same packet as LOGIN are processed
only when more data arrives.
Expected core verdict: not conformant; root cause: lines after LOGIN in the
same packet wait for more data.
"""

import asyncio
import sys

users: dict[str, asyncio.StreamWriter] = {}


def line_of(writer: asyncio.StreamWriter, text: str) -> None:
    writer.write(f"{text}\n".encode())


async def run_commands(
    name: str, buf: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        data = await reader.read(4096)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            cmd, _, arg = raw.decode("utf-8", "replace").strip().partition(" ")
            cmd = cmd.upper()
            if cmd == "MSG":
                for other, w in users.items():
                    if other != name:
                        line_of(w, f"MSG {name} {arg}")
            elif cmd == "PING":
                line_of(writer, f"PONG {arg}".strip())
            elif cmd == "WHO":
                for other in users:
                    line_of(writer, f"USER {other}")
            elif cmd == "DM":
                to, _, text = arg.partition(" ")
                if to in users:
                    line_of(users[to], f"DM {name} {text}")
                    line_of(writer, "OK")
                else:
                    line_of(writer, "ERR no such user")
            elif cmd == "LOGIN":
                line_of(writer, "ERR already logged in")
            else:
                line_of(writer, "ERR unknown command")


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    buf = b""
    name = None
    try:
        while name is None:
            data = await reader.read(4096)
            if not data:
                return
            buf += data
            while b"\n" in buf and name is None:
                raw, buf = buf.split(b"\n", 1)
                cmd, _, arg = raw.decode("utf-8", "replace").strip().partition(" ")
                if cmd.upper() == "PING":
                    line_of(writer, f"PONG {arg}".strip())
                elif cmd.upper() != "LOGIN":
                    line_of(writer, "ERR login first")
                elif not arg.isalnum() or arg in users:
                    line_of(writer, "ERR username unavailable")
                else:
                    name = arg
                    line_of(writer, "OK")
                    for w in users.values():
                        line_of(w, f"INFO {name} joined")
                    users[name] = writer
        await run_commands(name, buf, reader, writer)
    except ConnectionError:
        pass
    finally:
        if name is not None:
            users.pop(name, None)
            for w in users.values():
                line_of(w, f"INFO {name} disconnected")
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(session, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()


asyncio.run(main())
