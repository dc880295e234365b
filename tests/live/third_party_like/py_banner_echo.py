"""AlgoChat (Python, asyncio): greets every connection and echoes MSG to its sender.

Choices: a two-line banner, the sender sees its own MSG, join notice
"INFO <name> joined", PING with or without a token.
Expected core verdict: conformant (banner and echo are lenient).
"""

import asyncio
import sys

clients: dict[str, asyncio.StreamWriter] = {}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    def out(text: str) -> None:
        writer.write(f"{text}\n".encode())

    out("Welcome to AlgoChat!")
    out("Commands: LOGIN <name>, MSG <text>, WHO, DM <user> <text>, PING")
    me = None
    try:
        async for raw in reader:
            line = raw.decode(errors="replace").rstrip("\r\n")
            parts = line.split(" ", 2)
            cmd = parts[0].upper()
            if cmd == "LOGIN" and len(parts) == 2 and me is None:
                wanted = parts[1]
                if wanted in clients or not wanted.isidentifier():
                    out("ERR cannot use that name")
                    continue
                me = wanted
                clients[me] = writer
                out("OK")
                for name, w in clients.items():
                    if name != me:
                        w.write(f"INFO {me} joined\n".encode())
            elif cmd == "PING":
                out("PONG" if len(parts) == 1 else f"PONG {parts[1]}")
            elif me is None:
                out("ERR login required")
            elif cmd == "MSG" and len(parts) > 1:
                text = line[4:]
                for w in clients.values():  # everyone, the sender too
                    w.write(f"MSG {me} {text}\n".encode())
            elif cmd == "WHO":
                for name in clients:
                    out(f"USER {name}")
            elif cmd == "DM" and len(parts) == 3 and parts[1] in clients:
                clients[parts[1]].write(f"DM {me} {parts[2]}\n".encode())
                out("OK")
            else:
                out("ERR invalid command")
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        if me is not None:
            del clients[me]
            for w in clients.values():
                w.write(f"INFO {me} disconnected\n".encode())
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()


asyncio.run(main())
