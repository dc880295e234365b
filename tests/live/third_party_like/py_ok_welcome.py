"""Chat server (Python, threads): one reader thread and one writer thread per client.

Choices: LOGIN answers "OK welcome <name>", join notice "INFO <name> joined",
errors "ERR <reason in words>". A writer thread per client keeps a client
that does not read from blocking the others.
Expected core verdict: conformant (OK with text is lenient).
"""

import queue
import socket
import sys
import threading

lock = threading.Lock()
users: dict[str, "Client"] = {}


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.name: str | None = None
        self.outbox: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self.writer, daemon=True).start()

    def send(self, text: str) -> None:
        self.outbox.put((text + "\n").encode())

    def writer(self) -> None:
        while (data := self.outbox.get()) is not None:
            try:
                self.sock.sendall(data)
            except OSError:
                return


def broadcast(text: str, skip: Client | None = None) -> None:
    with lock:
        targets = [c for c in users.values() if c is not skip]
    for c in targets:
        c.send(text)


def serve(sock: socket.socket) -> None:
    me = Client(sock)
    buf = b""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                command(me, raw.decode("utf-8", "replace").strip())
    except OSError:
        pass
    finally:
        if me.name:
            with lock:
                users.pop(me.name, None)
            broadcast(f"INFO {me.name} disconnected")
        me.outbox.put(None)


def command(me: Client, line: str) -> None:
    verb, _, arg = line.partition(" ")
    verb = verb.upper()
    if verb == "LOGIN":
        if me.name:
            return me.send("ERR you are already logged in")
        if not arg or " " in arg:
            return me.send("ERR please give a username")
        with lock:
            if arg in users:
                return me.send("ERR that username is already taken")
            users[arg] = me
        me.name = arg
        me.send(f"OK welcome {arg}")
        broadcast(f"INFO {arg} joined", skip=me)
    elif verb == "PING":
        me.send(("PONG " + arg).strip())
    elif not me.name:
        me.send("ERR you need to log in first")
    elif verb == "MSG":
        broadcast(f"MSG {me.name} {arg}", skip=me)
    elif verb == "WHO":
        with lock:
            names = list(users)
        for n in names:
            me.send(f"USER {n}")
    elif verb == "DM":
        to, _, text = arg.partition(" ")
        with lock:
            target = users.get(to)
        if target is None:
            me.send("ERR that user is not online")
        else:
            target.send(f"DM {me.name} {text}")
            me.send("OK")
    else:
        me.send("ERR I do not know that command")


def main() -> None:
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


main()
