"""Chat server (Python, threads) that deadlocks after the first LOGIN.

The bug: LOGIN takes the users lock and, still holding it, calls broadcast(),
which takes the same (non-reentrant) lock again. The first user gets its OK;
then the server holds the lock forever and nobody else is answered.
Expected core verdict: not conformant; root cause: deadlock at the first LOGIN.
"""

import socket
import sys
import threading

lock = threading.Lock()
users: dict[str, socket.socket] = {}


def broadcast(text: str, skip: str | None = None) -> None:
    with lock:
        for name, sock in users.items():
            if name != skip:
                sock.sendall(f"{text}\n".encode())


def handle(sock: socket.socket) -> None:
    name = None
    buf = b""
    while True:
        try:
            data = sock.recv(1024)
        except OSError:
            break
        if not data:
            break
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            cmd, _, arg = raw.decode().strip().partition(" ")
            cmd = cmd.upper()
            if cmd == "PING":
                sock.sendall(b"PONG\n")
            elif cmd == "LOGIN":
                with lock:
                    if arg in users or not arg.isalnum():
                        sock.sendall(b"ERR username taken or invalid\n")
                        continue
                    users[arg] = sock
                    name = arg
                    sock.sendall(b"OK\n")
                    broadcast(f"INFO {name} joined", skip=name)  # takes the lock again
            elif name is None:
                sock.sendall(b"ERR login first\n")
            elif cmd == "MSG":
                broadcast(f"MSG {name} {arg}", skip=name)
            else:
                sock.sendall(b"ERR unknown command\n")
    if name is not None:
        with lock:
            del users[name]
        broadcast(f"INFO {name} disconnected")
    sock.close()


server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
