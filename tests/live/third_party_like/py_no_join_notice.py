"""Chat server for the assignment (Python, asyncio).

Choices: no banner, no join notice, a DM to an unknown user gets no answer,
free-text errors, PING answers PONG with the token if one is given.
Expected core verdict: conformant.
"""

import asyncio
import sys

users: dict[str, asyncio.StreamWriter] = {}


def send(writer: asyncio.StreamWriter, text: str) -> None:
    if not writer.is_closing():
        writer.write((text + "\n").encode())


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    name = None
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    try:
        while True:
            try:
                raw = await asyncio.wait_for(reader.readline(), idle)
            except asyncio.TimeoutError:
                send(writer, "ERR Idle for too long, disconnecting")
                break
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            command, _, arg = line.partition(" ")
            command = command.upper()
            if command == "PING":
                send(writer, f"PONG {arg}".strip())
            elif command == "LOGIN":
                if name:
                    send(writer, "ERR You are already logged in")
                elif not arg.isalnum():
                    send(writer, "ERR Username must be letters and digits")
                elif arg in users:
                    send(writer, "ERR Username already taken")
                else:
                    name = arg
                    users[name] = writer
                    send(writer, "OK")
            elif name is None:
                send(writer, "ERR You must LOGIN first")
            elif command == "MSG":
                for other, w in users.items():
                    if other != name:
                        send(w, f"MSG {name} {arg}")
            elif command == "WHO":
                for other in users:
                    send(writer, f"USER {other}")
            elif command == "DM":
                target, _, text = arg.partition(" ")
                if target in users:
                    send(users[target], f"DM {name} {text}")
                    send(writer, "OK")
            else:
                send(writer, f"ERR Unknown command: {command}")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if name is not None and users.get(name) is writer:
            del users[name]
            for w in users.values():
                send(w, f"INFO {name} disconnected")
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(session, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
