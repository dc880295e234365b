"""Chat server (Python, asyncio) that treats each read as one command.

The bug: ``await reader.read(1024)`` is taken to be exactly one line. Two
commands in one packet lose the second; a command split over packets is
executed piece by piece as garbage.
Expected core verdict: not conformant; root causes: lines after the first in
a packet are lost, a line split over packets is not reassembled.
"""

import asyncio
import sys

members: dict[str, asyncio.StreamWriter] = {}


async def chat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    name = None
    while True:
        try:
            data = await reader.read(1024)
        except ConnectionError:
            break
        if not data:
            break
        line = data.decode("utf-8", "replace").strip().split("\n")[0].strip()
        cmd, _, arg = line.partition(" ")
        cmd = cmd.upper()
        if cmd == "PING":
            writer.write(b"PONG\n")
        elif cmd == "LOGIN" and name is None:
            if not arg.isalnum() or arg in members:
                writer.write(b"ERR username not available\n")
                continue
            name = arg
            members[name] = writer
            writer.write(b"OK\n")
            for other, w in members.items():
                if other != name:
                    w.write(f"INFO {name} joined\n".encode())
        elif name is None:
            writer.write(b"ERR not logged in\n")
        elif cmd == "MSG":
            for other, w in members.items():
                if other != name:
                    w.write(f"MSG {name} {arg}\n".encode())
        elif cmd == "WHO":
            writer.write("".join(f"USER {n}\n" for n in members).encode())
        elif cmd == "DM":
            to, _, text = arg.partition(" ")
            if to in members:
                members[to].write(f"DM {name} {text}\n".encode())
                writer.write(b"OK\n")
            else:
                writer.write(b"ERR user not found\n")
        else:
            writer.write(b"ERR unknown command\n")
    if name is not None:
        del members[name]
        for w in members.values():
            w.write(f"INFO {name} disconnected\n".encode())
    writer.close()


async def main() -> None:
    server = await asyncio.start_server(chat, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()


asyncio.run(main())
