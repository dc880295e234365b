"""Chat server (Python, threads) that sends to every client with a blocking sendall under a lock.

The bug: broadcast() holds the lock while it calls sendall() on each client in
turn. A client that never reads fills its socket buffers; the next sendall()
to it blocks forever with the lock held, and the whole server stops.
Expected core verdict: not conformant; root cause: a client that does not
read stalls the server.
"""

import socket
import sys
import threading

lock = threading.Lock()
users: dict[str, socket.socket] = {}


def broadcast(text: str, skip: str | None = None) -> None:
    data = f"{text}\n".encode()
    with lock:
        for name, sock in list(users.items()):
            if name != skip:
                try:
                    sock.sendall(data)
                except OSError:
                    pass


def handle(sock: socket.socket) -> None:
    name = None
    rest = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        rest += data
        *lines, rest = rest.split(b"\n")
        for raw in lines:
            cmd, _, arg = raw.decode("utf-8", "replace").strip().partition(" ")
            cmd = cmd.upper()
            if cmd == "PING":
                sock.sendall(("PONG " + arg).strip().encode() + b"\n")
            elif cmd == "LOGIN" and name is None:
                with lock:
                    taken = arg in users or not arg.isalnum()
                    if not taken:
                        users[arg] = sock
                if taken:
                    sock.sendall(b"ERR username taken\n")
                    continue
                name = arg
                sock.sendall(b"OK\n")
                broadcast(f"INFO {name} joined", skip=name)
            elif name is None:
                sock.sendall(b"ERR login first\n")
            elif cmd == "MSG":
                broadcast(f"MSG {name} {arg}", skip=name)
            elif cmd == "WHO":
                with lock:
                    listing = "".join(f"USER {n}\n" for n in users)
                sock.sendall(listing.encode())
            elif cmd == "DM":
                to, _, text = arg.partition(" ")
                with lock:
                    target = users.get(to)
                if target is None:
                    sock.sendall(b"ERR user not found\n")
                else:
                    target.sendall(f"DM {name} {text}\n".encode())
                    sock.sendall(b"OK\n")
            else:
                sock.sendall(b"ERR unknown command\n")
    if name is not None:
        with lock:
            users.pop(name, None)
        broadcast(f"INFO {name} disconnected")
    sock.close()


server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
