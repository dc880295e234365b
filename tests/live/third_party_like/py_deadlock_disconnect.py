"""Chat server (Python, threads) that deadlocks when a user disconnects.

The bug: the cleanup after a disconnect removes the user under the lock and
announces the departure from inside the same ``with lock:`` block; the
announcement takes the (non-reentrant) lock again. Everything works until the
first logged-in user leaves.
Expected core verdict: not conformant; root cause: deadlock on disconnect.
"""

import socket
import sys
import threading

lock = threading.Lock()
clients: dict[str, socket.socket] = {}


def send_all(text: str, skip: str | None = None) -> None:
    with lock:
        targets = [s for n, s in clients.items() if n != skip]
    for s in targets:
        try:
            s.sendall(f"{text}\n".encode())
        except OSError:
            pass


def remove(name: str) -> None:
    with lock:
        del clients[name]
        send_all(f"INFO {name} disconnected")  # bug: send_all takes the lock again


def handle(sock: socket.socket) -> None:
    name = None
    pending = b""
    try:
        while data := sock.recv(2048):
            pending += data
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                verb, _, arg = raw.decode("utf-8", "replace").strip().partition(" ")
                verb = verb.upper()
                if verb == "PING":
                    sock.sendall(f"PONG {arg}".strip().encode() + b"\n")
                elif verb == "LOGIN" and name is None:
                    with lock:
                        free = arg.isalnum() and arg not in clients
                        if free:
                            clients[arg] = sock
                    if not free:
                        sock.sendall(b"ERR name not available\n")
                        continue
                    name = arg
                    sock.sendall(b"OK\n")
                    send_all(f"INFO {name} joined", skip=name)
                elif name is None:
                    sock.sendall(b"ERR please login\n")
                elif verb == "MSG":
                    send_all(f"MSG {name} {arg}", skip=name)
                elif verb == "WHO":
                    with lock:
                        names = list(clients)
                    sock.sendall("".join(f"USER {n}\n" for n in names).encode())
                else:
                    sock.sendall(b"ERR unknown command\n")
    except OSError:
        pass
    if name is not None:
        remove(name)
    sock.close()


listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    s, _ = listener.accept()
    threading.Thread(target=handle, args=(s,), daemon=True).start()
