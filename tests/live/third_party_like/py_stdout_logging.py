"""Chat server (Python, asyncio) that logs every event on stdout.

Choices: a log line on stdout for each connection, login and message; PING
before LOGIN is refused ("ERR please log in first"); join notice
"INFO <name> has joined the room".
Expected core verdict: conformant (PING refused before LOGIN is lenient).
"""

import asyncio
import sys
import time

online: dict[str, asyncio.StreamWriter] = {}


def log(text: str) -> None:
    print(time.strftime("%H:%M:%S"), text, flush=True)


async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    log(f"connection from {peer}")
    user = None

    def reply(text: str) -> None:
        writer.write(text.encode() + b"\n")

    while True:
        try:
            raw = await reader.readline()
        except (ConnectionError, ValueError):
            break
        if not raw:
            break
        words = raw.decode("utf-8", "replace").strip().split(" ", 1)
        cmd, arg = words[0].upper(), (words[1] if len(words) > 1 else "")
        log(f"{peer} {user} -> {cmd}")
        if user is None and cmd != "LOGIN":
            reply("ERR please log in first")
        elif cmd == "LOGIN":
            if user is not None:
                reply("ERR already logged in")
            elif not arg.isalnum() or arg in online:
                reply("ERR username invalid or taken")
            else:
                user = arg
                for w in online.values():
                    w.write(f"INFO {user} has joined the room\n".encode())
                online[user] = writer
                reply("OK")
                log(f"{user} logged in")
        elif cmd == "PING":
            reply("PONG " + arg if arg else "PONG")
        elif cmd == "MSG":
            for name, w in online.items():
                if name != user:
                    w.write(f"MSG {user} {arg}\n".encode())
        elif cmd == "WHO":
            for name in online:
                reply(f"USER {name}")
        elif cmd == "DM":
            to, _, text = arg.partition(" ")
            if to in online:
                online[to].write(f"DM {user} {text}\n".encode())
                reply("OK")
            else:
                reply("ERR user not found")
        else:
            reply("ERR unknown command")
    if user is not None:
        del online[user]
        for w in online.values():
            w.write(f"INFO {user} disconnected\n".encode())
        log(f"{user} left")
    writer.close()


async def main() -> None:
    port = int(sys.argv[1])
    server = await asyncio.start_server(client, "127.0.0.1", port)
    log(f"listening on port {port}")
    await server.serve_forever()


asyncio.run(main())
