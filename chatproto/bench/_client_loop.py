"""One worker process of the load generator: many sockets, one thread.

Owns the fast client loop (non-blocking sockets on ``epoll``, or ``poll``
where there is no epoll) and what each scenario does on the wire. Talks to the
parent (:mod:`chatproto.bench._runner`) through a pipe: it says ``ready`` when
its clients are logged in, waits for ``go`` (which carries the measurement
window as absolute ``CLOCK_MONOTONIC`` times, shared by every process on the
machine), sends a ``tick`` with its running totals every second, says
``drained`` when nothing it sent is still in flight, and answers ``finish``
with its raw ``result``. It never prints.

Why not asyncio: a hand-written loop lets it read a socket with one ``recv``
and parse every line of it with one regular-expression scan, nap between
light iterations so that lines coalesce (as chatload does), and costs no
callback machinery per event. Nothing here blocks except that nap and
``poll``.

Messages carry ``cpb <send time ns> <sender id> <seq>`` in their text, so a
receiver finds them in whatever line the server relays (``MSG alice cpb ...``
or a third-party ``[alice] cpb ...``), and the latency is ``now - send time``
on the same clock.
"""

from __future__ import annotations

import errno
import heapq
import os
import re
import select
import socket
import struct
import time
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ._config import LINE_COUNTERS, BenchConfig, ProcShare
from ._stats import bucket_us

__all__ = ["worker_main"]

_IN, _OUT = select.POLLIN, select.POLLOUT
# epoll and poll use the same bit values on Linux for these.
_GONE = select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)

#: What a receiver looks for in any line: send time (ns), sender id, seq.
_MARK = re.compile(rb"cpb (\d+) (\d+) (\d+)")
#: The send time alone, for the clients that do not acknowledge.
_STAMP = re.compile(rb"cpb (\d+) ")
#: "Never", as a monotonic ns time: the window before ``go`` arrives.
_FAR = 1 << 62
_NS = 1_000_000_000
_READ_SIZE = 262144
_TCP_ESTABLISHED = 1
#: Phases in which the coalescing nap applies.
_NAPPING = frozenset(("run", "hold"))


class _Poller:
    """``epoll`` where it exists, else ``poll``; timeouts in seconds."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._poll = select.poll() if self._epoll is None else None

    def register(self, fd: int, mask: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, mask)
        else:
            assert self._poll is not None
            self._poll.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        if self._epoll is not None:
            self._epoll.modify(fd, mask)
        else:
            assert self._poll is not None
            self._poll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                assert self._poll is not None
                self._poll.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass  # already gone

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        if self._epoll is not None:
            return self._epoll.poll(timeout)
        assert self._poll is not None
        return self._poll.poll(int(timeout * 1000))


class _Sender:
    """The closed-loop state of one sending client."""

    __slots__ = ("alive", "client", "pending", "seq", "sid")

    def __init__(self, client: _Client, sid: bytes) -> None:
        self.client = client
        #: Sender id as it appears in the message, bytes for cheap compares.
        self.sid = sid
        self.seq = 0
        #: seq -> [send time ns, acknowledgements still needed].
        self.pending: dict[int, list[int]] = {}
        self.alive = True


class _Client:
    """One connection of the load generator."""

    __slots__ = (
        "acks",
        "buf",
        "closed",
        "connecting",
        "echo_re",
        "echo_tag",
        "fd",
        "handler",
        "index",
        "logged_in",
        "name",
        "out",
        "paused",
        "sender",
        "sid",
        "sock",
        "t_ping",
        "t_start",
    )

    def __init__(self, sock: socket.socket, index: int, name: str, sid: bytes) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.name = name
        #: This client's sender id: an echo of its own message carries it.
        self.sid = sid
        # To spot an echo of its own message cheaply: a substring test first,
        # then the exact pattern.
        self.echo_tag = b" " + sid + b" "
        self.echo_re = re.compile(rb"cpb \d+ " + sid + rb" ")
        self.handler: Callable[[_Client, bytes], None] = _ignore
        #: Bytes of an incomplete line.
        self.buf = b""
        #: Bytes the kernel did not take yet.
        self.out: list[bytes] = []
        self.connecting = True
        self.logged_in = False
        self.closed = False
        #: Not reading on purpose (the slow reader).
        self.paused = False
        self.t_start = 0
        self.t_ping = 0
        #: sender id -> sender whose messages this client acknowledges.
        self.acks: dict[bytes, _Sender] | None = None
        self.sender: _Sender | None = None


def _ignore(client: _Client, data: bytes) -> None:
    """Handler of a client whose input no longer matters."""


def _split_lines(client: _Client, data: bytes) -> list[bytes]:
    """The complete lines in ``client.buf + data`` (terminators stripped)."""
    if client.buf:
        data = client.buf + data
    lines = data.split(b"\n")
    client.buf = lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


class Worker:
    """The loop and the scenario logic of one process."""

    def __init__(self, cfg: BenchConfig, share: ProcShare, pipe: Connection) -> None:
        self.cfg = cfg
        self.share = share
        self.pipe = pipe
        self.poller = _Poller()
        self.poller.register(pipe.fileno(), _IN)
        self.by_fd: dict[int, _Client] = {}
        self.clients: list[_Client] = []
        self.senders: list[_Sender] = []
        self.timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self.phase = "login"
        self.finished = False
        self.batch_s = cfg.batch_seconds
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
        self.family: socket.AddressFamily = infos[0][0]
        self.addr: Any = infos[0][4]
        # Sender ids are global: process * 100000 + index.
        self.sid_base = share.proc * 100_000
        # The measurement window, set by ``go``.
        self.ws = _FAR
        self.we = _FAR
        # The same in µs: messages carry their send time in µs (one division
        # less per received line; latencies are reported in µs anyway).
        self.ws_us = _FAR
        self.we_us = _FAR
        self.t_go = 0
        self.nsec = max(1, int(-(-cfg.duration // 1)))
        self.series = [0] * self.nsec
        self.pad = b"x" * cfg.payload
        # Connect/login bookkeeping.
        self.next_index = 0
        self.in_flight = 0
        self.resolved = 0
        self.t_first_connect = 0
        self.t_last_login = 0
        self.login_hist: dict[int, int] = {}
        self.connect_errno: dict[str, int] = {}
        # Measured figures (the raw result; the parent adds them up).
        self.hist: dict[int, int] = {}
        #: Exact µs -> count, from the fast path; bucketed into hist at the end.
        self.fast_hist: Counter[int] = Counter()
        self.c: dict[str, int] = dict.fromkeys(
            (
                *LINE_COUNTERS,
                "sent",
                "sent_in_window",
                "acked",
                "ack_timeouts",
                "marker_lines",
                "deliveries_in_window",
                "pings_sent",
                "pongs",
                "pongs_in_window",
                "lines",
                "recv_calls",
                "loop_iterations",
            ),
            0,
        )
        self.first_err_line = ""
        self.first_other_line = ""
        self.ack_need = 1
        self.cpu_ws = 0.0
        self.cpu_we = 0.0
        self.wall_ws = 0
        self.wall_we = 0
        self.cpu_go = 0.0
        # Nanoseconds spent waiting in poll (idle), and its value at the
        # window's edges: how much of the window the loop had nothing to do.
        self.idle_ns = 0
        self.idle_go = 0
        self.idle_ws = 0
        self.idle_we = 0
        # slowreader
        self.slow: _Client | None = None
        # The notice that tells everyone the slow reader was dropped.
        self.slow_info = b""
        if cfg.scenario == "slowreader":
            self.slow_info = (b"INFO " + cfg.username(0, 0).encode() + b" disconnected").lower()
        self.slow_disconnected_at = 0
        self.slow_state = ""
        self.slow_drained = 0
        # connect
        self.burst_pending = 0
        self.t_burst = 0
        self.burst_ns = 0
        self.burst_pongs = 0
        self.alive_after_hold = 0
        self.t_hold_end = 0

    # ------------------------------------------------------------- the loop

    def run(self) -> None:
        """Serve the pipe and the sockets until the parent says ``finish``."""
        if self.cfg.scenario == "connect":
            self.phase = "ready"
            self.pipe.send(("ready", self.share.proc, {}))
        else:
            self.t_first_connect = time.monotonic_ns()
            self._open_more()
            self._after(self.cfg.login_timeout, self._login_deadline)
            self._check_logins_done()
        sleep, clock = time.sleep, time.monotonic_ns
        # Nap only after a poll that had to wait (we are ahead of the server):
        # then the nap costs latency (< batch_us) but no throughput, and the
        # next read finds several lines. A poll that returned at once means we
        # are behind, and a nap would slow the run down.
        waited_ns = int(self.batch_s * 0.2e9)
        nap = self.batch_s
        while not self.finished:
            t0 = clock()
            events = self.poller.poll(self._timeout())
            waited = clock() - t0
            self.idle_ns += waited
            self.c["loop_iterations"] += 1
            for fd, ev in events:
                client = self.by_fd.get(fd)
                if client is None:
                    if fd == self.pipe.fileno():
                        self._on_pipe()
                    continue
                if ev & _OUT:
                    self._on_writable(client)
                if ev & (_IN | _GONE) and not client.closed:
                    self._on_readable(client)
            if self.timers:
                self._run_timers()
            if nap and waited > waited_ns and len(events) < 64 and self.phase in _NAPPING:
                sleep(nap)

    def _timeout(self) -> float:
        if not self.timers:
            return 1.0
        return max(0.0, min(1.0, (self.timers[0][0] - time.monotonic_ns()) / _NS))

    def _after(self, seconds: float, fn: Callable[[], None]) -> None:
        self._at(time.monotonic_ns() + int(seconds * _NS), fn)

    def _at(self, t_ns: int, fn: Callable[[], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self.timers, (t_ns, self._timer_seq, fn))

    def _run_timers(self) -> None:
        now = time.monotonic_ns()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn = heapq.heappop(self.timers)
            fn()

    def _on_pipe(self) -> None:
        while self.pipe.poll():
            msg = self.pipe.recv()
            if msg[0] == "go":
                self._go(msg[1], msg[2])
            elif msg[0] == "finish":
                self._finish()
                return

    # --------------------------------------------------------------- sockets

    def _open_more(self) -> None:
        """Start connects until ``conc`` are in progress or all are started."""
        while self.in_flight < self.cfg.conc and self.next_index < self.share.clients:
            index = self.next_index
            self.next_index += 1
            self._open(index)

    def _open(self, index: int) -> None:
        cfg = self.cfg
        name = cfg.username(self.share.proc, index)
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            self._connect_failed(exc.errno)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        slow = self.share.has_slow and index == 0
        if slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.slow_rcvbuf)
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self._connect_failed(err)
            return
        client = _Client(sock, index, name, str(self.sid_base + index).encode())
        client.t_start = time.monotonic_ns()
        client.handler = self._data_login
        if slow:
            self.slow = client
        self.clients.append(client)
        self.by_fd[client.fd] = client
        self.in_flight += 1
        self.poller.register(client.fd, _IN | _OUT)

    def _connect_failed(self, err: int | None) -> None:
        self.c["connect_fail"] += 1
        key = errno.errorcode.get(err or 0, str(err))
        self.connect_errno[key] = self.connect_errno.get(key, 0) + 1
        self.resolved += 1
        self._check_logins_done()

    def _on_writable(self, client: _Client) -> None:
        if client.connecting:
            err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._forget(client)
                self.in_flight -= 1
                self._connect_failed(err)
                self._open_more()
                return
            client.connecting = False
            self.poller.modify(client.fd, _IN)
            if self.t_first_connect == 0:
                self.t_first_connect = client.t_start
            self._write(client, b"LOGIN " + client.name.encode() + b"\n")
            return
        data = b"".join(client.out)
        client.out.clear()
        self._write(client, data)
        if not client.out and not client.closed:
            self.poller.modify(client.fd, 0 if client.paused else _IN)

    def _write(self, client: _Client, data: bytes) -> None:
        if client.closed:
            return
        if client.out:
            client.out.append(data)
            return
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(client, exc.errno)
            return
        if sent < len(data):
            client.out.append(data[sent:])
            self.poller.modify(client.fd, _OUT if client.paused else _IN | _OUT)

    def _on_readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(client, exc.errno)
            return
        if not data:
            self._lost(client, 0)
            return
        self.c["recv_calls"] += 1
        client.handler(client, data)

    def _forget(self, client: _Client) -> None:
        client.closed = True
        self.poller.unregister(client.fd)
        self.by_fd.pop(client.fd, None)
        client.sock.close()

    def _lost(self, client: _Client, err: int | None) -> None:
        """The server closed or reset ``client`` (or a write failed)."""
        if client.closed:
            return
        self._forget(client)
        if client.connecting or not client.logged_in:
            if client.connecting:
                self.in_flight -= 1
                self._connect_failed(err)
            else:
                self.in_flight -= 1
                self.c["login_disconnect"] += 1
                self.resolved += 1
                self._check_logins_done()
            self._open_more()
            return
        if client is self.slow:
            self._slow_lost()
            return
        self.c["disconnects"] += 1
        if client.sender is not None:
            client.sender.alive = False
        if self.burst_pending and client.t_ping:
            client.t_ping = 0
            self.burst_pending -= 1
            self._check_burst_done()

    # ----------------------------------------------------------------- login

    def _data_login(self, client: _Client, data: bytes) -> None:
        """Before the login reply: skip banners; ``OK...`` or ``ERR...`` decides."""
        if client.buf:
            data = client.buf + data
        while True:
            i = data.find(b"\n")
            if i < 0:
                client.buf = data
                return
            line, data = data[:i], data[i + 1 :]
            if line.startswith(b"OK"):
                client.buf = b""
                self._logged_in(client)
                if data:
                    client.handler(client, data)
                return
            if line.startswith(b"ERR"):
                self.c["login_err"] += 1
                self._note_err(line)
                self.in_flight -= 1
                self.resolved += 1
                self._forget(client)
                self._open_more()
                self._check_logins_done()
                return
            self.c["banner_lines"] += 1

    def _logged_in(self, client: _Client) -> None:
        now = time.monotonic_ns()
        client.logged_in = True
        self.c["logins_ok"] += 1
        self.in_flight -= 1
        self.resolved += 1
        self.t_last_login = now
        us = (now - client.t_start) // 1000
        if us >= 1024:
            shift = us.bit_length() - 7
            us = us >> shift << shift
        self.login_hist[us] = self.login_hist.get(us, 0) + 1
        scenario = self.cfg.scenario
        if client is self.slow:
            # Not reading at all: unregistered, so that not even an error or
            # hang-up event makes the loop touch it. _slow_watch polls its TCP
            # state instead.
            client.handler = _ignore
            client.paused = True
            self.poller.unregister(client.fd)
            self._after(0.5, self._slow_watch)
        elif scenario == "connect":
            client.handler = self._data_count
        elif scenario == "pingpong":
            client.handler = self._data_ping
        else:
            client.handler = self._data_fanout
        self._open_more()
        self._check_logins_done()

    def _login_deadline(self) -> None:
        """Clients still not logged in after ``login_timeout`` are given up."""
        if self.resolved >= self.share.clients:
            return
        for client in self.clients:
            if not client.closed and not client.logged_in:
                self.c["login_timeout"] += 1
                self._forget(client)
        self.next_index = self.share.clients
        self.resolved = self.share.clients
        self.in_flight = 0
        self._check_logins_done()

    def _check_logins_done(self) -> None:
        if self.resolved < self.share.clients:
            return
        if self.phase == "login":
            self.phase = "ready"
            self._setup_roles()
            self.pipe.send(("ready", self.share.proc, {"logins_ok": self.c["logins_ok"]}))
        elif self.phase == "connecting":
            self.phase = "hold"
            self._after(self.cfg.duration, self._end_hold)

    def _note_err(self, line: bytes) -> None:
        self.c["err_lines"] += 1
        if not self.first_err_line:
            self.first_err_line = line[:200].decode("utf-8", "replace")

    # ------------------------------------------------------- roles and go

    def _setup_roles(self) -> None:
        """Pick the senders, the observers and who acknowledges what."""
        if self.cfg.scenario not in ("fanout", "slowreader"):
            return
        readers = [c for c in self.clients if c.logged_in and c is not self.slow]
        if not readers:
            return
        # The last clients send, so that the first is an observer that sends
        # nothing (unless every client sends).
        for client in readers[len(readers) - self.share.senders :]:
            client.sender = _Sender(client, client.sid)
            self.senders.append(client.sender)
        by_sid = {s.sid: s for s in self.senders}
        if self.cfg.ack == "all":
            # Every reader acknowledges every local sender but itself.
            self.ack_need = max(1, len(readers) - 1)
            for client in readers:
                client.acks = by_sid
        else:
            observer = readers[0]
            observer.acks = {sid: s for sid, s in by_sid.items() if s.client is not observer}
            if observer.sender is not None and len(readers) > 1:
                readers[1].acks = {observer.sid: observer.sender}

    def _go(self, t_go: int, ws: int) -> None:
        cfg = self.cfg
        self.t_go = t_go
        self.ws = ws
        self.we = ws + int(cfg.duration * _NS)
        self.ws_us = self.ws // 1000
        self.we_us = self.we // 1000
        self.cpu_go = time.process_time()
        self.idle_go = self.idle_ns
        self._at(ws, self._window_start)
        self._after(1.0, self._tick)
        if cfg.scenario == "connect":
            self.phase = "connecting"
            self.t_first_connect = 0
            self._open_more()
            self._after(cfg.login_timeout, self._login_deadline)
            self._check_logins_done()
            return
        self.phase = "run"
        self._at(self.we, self._window_end)
        if cfg.scenario == "pingpong":
            for client in self.clients:
                if client.logged_in and not client.closed:
                    self._send_ping(client)
            return
        for sender in self.senders:
            for _ in range(cfg.window):
                self._send_msg(sender)
        self._after(0.25, self._check_ack_timeouts)

    def _window_start(self) -> None:
        self.idle_ws = self.idle_ns
        self.cpu_ws = time.process_time()
        self.wall_ws = time.monotonic_ns()

    def _window_end(self) -> None:
        self.idle_we = self.idle_ns
        self.cpu_we = time.process_time()
        self.wall_we = time.monotonic_ns()
        self.phase = "drain"
        self._after(self.cfg.drain, self._drain_deadline)
        self._check_drained()

    def _tick(self) -> None:
        if self.finished:
            return
        self.pipe.send(("tick", self.share.proc, self._totals()))
        self._after(1.0, self._tick)

    def _totals(self) -> dict[str, Any]:
        c = self.c
        return {
            "sent": c["sent"],
            "marker_lines": c["marker_lines"],
            "pongs": c["pongs"],
            "logins_ok": c["logins_ok"],
            "disconnects": c["disconnects"],
            "err_lines": c["err_lines"],
            "lines": c["lines"],
            "cpu_s": time.process_time(),
        }

    # ----------------------------------------------------- fanout / slowreader

    def _send_msg(self, sender: _Sender) -> None:
        t = time.monotonic_ns()
        seq = sender.seq
        sender.seq = seq + 1
        sender.pending[seq] = [t, self.ack_need]
        c = self.c
        c["sent"] += 1
        if self.ws <= t < self.we:
            c["sent_in_window"] += 1
        head = b"MSG cpb %d %s %d " % (t // 1000, sender.sid, seq)
        pad = self.cfg.payload + 4 - len(head)
        self._write(sender.client, head + self.pad[: max(1, pad)] + b"\n")

    def _data_fanout(self, client: _Client, data: bytes) -> None:
        """The hot path: every MSG line carries a timestamp, and maybe an ack.

        Most clients only count and time what they receive: for them the
        whole read is handled by C loops (one regular-expression scan, ``int``
        and subtraction mapped over the list, ``Counter.update``), about
        three times cheaper than a Python loop per line. Observers, echoes
        and reads that straddle the window's edges take the per-line loop.
        """
        if client.buf:
            data = client.buf + data
        end = data.rfind(b"\n") + 1
        if end == 0:
            client.buf = data
            return
        if end < len(data):
            client.buf = data[end:]
            data = data[:end]
        else:
            client.buf = b""
        c = self.c
        acks = client.acks
        # Only a sender can receive an echo of its own message.
        echo = client.sender is not None and client.echo_tag in data and client.echo_re.search(data)
        if acks is None and not echo:
            stamps = _STAMP.findall(data)
            n = len(stamps)
            if data.count(b"\n") != n:
                self._classify(data)
            if not n:
                return
            now = time.monotonic_ns()
            c["marker_lines"] += n
            sec = (now - self.ws) // _NS
            if 0 <= sec < self.nsec:
                self.series[sec] += n
            ts = list(map(int, stamps))
            if self.ws_us > min(ts) or max(ts) >= self.we_us:
                ws, we = self.ws_us, self.we_us
                ts = [t for t in ts if ws <= t < we]
            if ts:
                self.fast_hist.update(map((now // 1000).__sub__, ts))
                c["deliveries_in_window"] += len(ts)
            return
        hits = _MARK.findall(data)
        nhits = len(hits)
        if data.count(b"\n") != nhits:
            self._classify(data)
        if not nhits:
            return
        now = time.monotonic_ns()
        c["marker_lines"] += nhits
        sec = (now - self.ws) // _NS
        if 0 <= sec < self.nsec:
            self.series[sec] += nhits
        now_us = now // 1000
        ws, we = self.ws_us, self.we_us
        hist = self.hist
        own = client.sid
        n_in = 0
        for t_b, s_b, q_b in hits:
            if s_b == own:
                c["echoes"] += 1
                continue
            t = int(t_b)
            if ws <= t < we:
                n_in += 1
                us = now_us - t
                if us >= 1024:
                    shift = us.bit_length() - 7
                    us = us >> shift << shift
                hist[us] = hist.get(us, 0) + 1
            if acks is not None:
                sender = acks.get(s_b)
                if sender is not None:
                    self._ack(sender, int(q_b))
        c["deliveries_in_window"] += n_in

    def _ack(self, sender: _Sender, seq: int) -> None:
        entry = sender.pending.get(seq)
        if entry is None:
            return  # released by the ack timeout already
        if entry[1] > 1:
            entry[1] -= 1
            return
        del sender.pending[seq]
        self.c["acked"] += 1
        if self.phase == "run":
            if sender.alive:
                self._send_msg(sender)
        elif self.phase == "drain" and not sender.pending:
            self._check_drained()

    def _check_ack_timeouts(self) -> None:
        if self.phase not in ("run", "drain"):
            return
        limit = time.monotonic_ns() - int(self.cfg.ack_timeout * _NS)
        for sender in self.senders:
            late = [seq for seq, (t, _) in sender.pending.items() if t < limit]
            for seq in late:
                del sender.pending[seq]
                self.c["ack_timeouts"] += 1
                if self.phase == "run" and sender.alive:
                    self._send_msg(sender)
        if self.phase == "drain":
            self._check_drained()
        self._after(0.25, self._check_ack_timeouts)

    def _classify(self, data: bytes) -> None:
        """Count the lines of ``data`` that are not our messages."""
        c = self.c
        for line in data.split(b"\n"):
            if not line or _MARK.search(line):
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"INFO"):
                c["info_lines"] += 1
                dropped = self.slow_info and line.lower() == self.slow_info
                if dropped and not self.slow_disconnected_at:
                    self.slow_disconnected_at = time.monotonic_ns()
            elif line.startswith(b"ERR"):
                self._note_err(line)
            elif line.startswith(b"PONG"):
                c["stray_pongs"] += 1
            elif line.startswith(b"OK"):
                c["ok_lines"] += 1
            elif line.startswith(b"MSG"):
                c["foreign_msg"] += 1
            else:
                c["other_lines"] += 1
                if not self.first_other_line:
                    self.first_other_line = line[:200].decode("utf-8", "replace")

    # -------------------------------------------------------------- pingpong

    def _send_ping(self, client: _Client) -> None:
        client.t_ping = time.monotonic_ns()
        self.c["pings_sent"] += 1
        self._write(client, b"PING %d\n" % client.index)

    def _data_ping(self, client: _Client, data: bytes) -> None:
        if not client.buf and data.startswith(b"PONG") and data.count(b"\n") == 1:
            lines = [data]  # the common case: exactly one reply
        else:
            lines = _split_lines(client, data)
        for line in lines:
            if line.startswith(b"PONG"):
                self._pong(client)
            else:
                self._classify(line)

    def _pong(self, client: _Client) -> None:
        t = client.t_ping
        if not t:
            self.c["stray_pongs"] += 1
            return
        now = time.monotonic_ns()
        client.t_ping = 0
        self.c["pongs"] += 1
        if self.ws <= t < self.we:
            self.c["pongs_in_window"] += 1
            us = (now - t) // 1000
            if us >= 1024:
                shift = us.bit_length() - 7
                us = us >> shift << shift
            self.hist[us] = self.hist.get(us, 0) + 1
        if self.phase == "run":
            self._send_ping(client)
        elif self.phase == "drain":
            self._check_drained()

    # --------------------------------------------------------------- connect

    def _data_count(self, client: _Client, data: bytes) -> None:
        """Connected and holding: read everything (join floods), count lines."""
        self.c["lines"] += data.count(b"\n")
        if b"ERR" in data:
            for line in _split_lines(client, data):
                if line.startswith(b"ERR"):
                    self._note_err(line)
        else:
            client.buf = b""

    def _end_hold(self) -> None:
        """After the hold: every live client PINGs at once."""
        self.t_hold_end = time.monotonic_ns()
        alive = [c for c in self.clients if c.logged_in and not c.closed]
        self.alive_after_hold = len(alive)
        self.phase = "burst"
        self.t_burst = time.monotonic_ns()
        self.burst_pending = len(alive)
        for client in alive:
            client.buf = b""
            client.handler = self._data_burst
            client.t_ping = time.monotonic_ns()
            self._write(client, b"PING b\n")
        self._after(self.cfg.burst_timeout, self._burst_deadline)
        self._check_burst_done()

    def _data_burst(self, client: _Client, data: bytes) -> None:
        self.c["lines"] += data.count(b"\n")
        for line in _split_lines(client, data):
            if line.startswith(b"PONG") and client.t_ping:
                client.t_ping = 0
                client.handler = self._data_count
                self.burst_pongs += 1
                self.burst_pending -= 1
        self._check_burst_done()

    def _check_burst_done(self) -> None:
        if self.phase == "burst" and self.burst_pending <= 0:
            self.burst_ns = time.monotonic_ns() - self.t_burst
            self._end_connect()

    def _burst_deadline(self) -> None:
        if self.phase == "burst":
            self.burst_ns = -1  # not every PONG came back in time
            self._end_connect()

    def _end_connect(self) -> None:
        self.phase = "drained"
        self.idle_we = self.idle_ns
        self.cpu_we = time.process_time()
        self.wall_we = time.monotonic_ns()
        self.pipe.send(("drained", self.share.proc, {}))

    # ------------------------------------------------------------ draining

    def _check_drained(self) -> None:
        if self.phase != "drain":
            return
        if self.cfg.scenario == "pingpong":
            busy = any(c.t_ping and not c.closed for c in self.clients)
        else:
            busy = any(s.pending and s.alive for s in self.senders)
        if not busy:
            self._drained()

    def _drain_deadline(self) -> None:
        if self.phase == "drain":
            self._drained()

    def _drained(self) -> None:
        if self.slow is not None and not self.slow.closed and not self.slow_state:
            self.phase = "slowcheck"
            self._slow_drain_start()
            return
        self.phase = "drained"
        self.pipe.send(("drained", self.share.proc, {}))

    # ----------------------------------------------------------- slow reader

    def _slow_lost(self) -> None:
        if self.phase == "slowcheck":
            self.slow_state = "disconnected_at_end"
            if self.slow_disconnected_at:
                self.slow_state = "disconnected_during_run"
            self._drained()
        elif self.phase != "drained":
            self.slow_state = "disconnected_during_run"
            if not self.slow_disconnected_at:
                self.slow_disconnected_at = time.monotonic_ns()

    def _slow_drain_start(self) -> None:
        """Read the slow reader's backlog for ``slow_drain`` s, then PING it."""
        slow = self.slow
        assert slow is not None
        slow.paused = False
        slow.handler = self._data_slow_drain
        self.poller.register(slow.fd, _IN | (_OUT if slow.out else 0))
        self._after(self.cfg.slow_drain, self._slow_ping)

    def _data_slow_drain(self, client: _Client, data: bytes) -> None:
        self.slow_drained += len(data)
        client.buf = data[-8:]

    def _slow_ping(self) -> None:
        slow = self.slow
        if slow is None or slow.closed or self.slow_state:
            return
        slow.buf = b""
        slow.handler = self._data_slow_pong
        self._write(slow, b"PING slow\n")
        self._after(2.0, self._slow_verdict)

    def _data_slow_pong(self, client: _Client, data: bytes) -> None:
        self.slow_drained += len(data)
        for line in _split_lines(client, data):
            if line.startswith(b"PONG") and not self.slow_state:
                self.slow_state = "alive"
                self._drained()
                return

    def _slow_verdict(self) -> None:
        if not self.slow_state:
            self.slow_state = "unresponsive_or_backlogged"
            self._drained()

    def _slow_watch(self) -> None:
        """While the slow reader is not read, notice if the server drops it."""
        slow = self.slow
        if slow is None or slow.closed or not slow.paused or self.phase == "drained":
            return
        if self._tcp_state(slow) != _TCP_ESTABLISHED:
            if not self.slow_disconnected_at:
                self.slow_disconnected_at = time.monotonic_ns()
            return
        self._after(0.5, self._slow_watch)

    def _tcp_state(self, client: _Client) -> int:
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None:
            return _TCP_ESTABLISHED
        try:
            raw = client.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)
        except OSError:
            return 0
        return int(struct.unpack("B", raw[:1])[0])

    # --------------------------------------------------------------- finish

    def _finish(self) -> None:
        """Hand the raw result to the parent and stop."""
        self.finished = True
        now = time.monotonic_ns()
        if not self.cpu_we:
            self.cpu_we = time.process_time()
            self.wall_we = now
        if not self.wall_ws:
            self.wall_ws = self.t_go or now
            self.cpu_ws = self.cpu_go
        if self.slow is not None and not self.slow_state:
            # Still connected but never checked (no drain phase reached it).
            state = self._tcp_state(self.slow)
            self.slow_state = "alive" if state == _TCP_ESTABLISHED else "disconnected_at_end"
        if not self.idle_we:
            self.idle_we = self.idle_ns
        if self.cfg.scenario == "connect":
            window_cpu = self.cpu_we - self.cpu_go
            window_wall = (self.wall_we - self.t_go) / _NS if self.t_go else 0.0
            window_idle = (self.idle_we - self.idle_go) / _NS
        else:
            window_cpu = self.cpu_we - self.cpu_ws
            window_wall = (self.wall_we - self.wall_ws) / _NS
            window_idle = (self.idle_we - self.idle_ws) / _NS
        for us, n in self.fast_hist.items():
            b = bucket_us(us)
            self.hist[b] = self.hist.get(b, 0) + n
        result: dict[str, Any] = dict(self.c)
        result.update(
            proc=self.share.proc,
            clients=self.share.clients,
            senders=len(self.senders),
            ack_need=self.ack_need,
            hist=self.hist,
            login_hist=self.login_hist,
            connect_errno=self.connect_errno,
            series=self.series,
            first_err_line=self.first_err_line,
            first_other_line=self.first_other_line,
            alive_at_end=sum(1 for c in self.clients if c.logged_in and not c.closed),
            readers=sum(1 for c in self.clients if c.logged_in and c is not self.slow),
            cpu_s=window_cpu,
            idle_s=window_idle,
            wall_s=window_wall,
            cpu_total_s=time.process_time(),
            t_first_connect=self.t_first_connect,
            t_last_login=self.t_last_login,
            burst_ns=self.burst_ns,
            burst_pongs=self.burst_pongs,
            alive_after_hold=self.alive_after_hold,
            ws=self.ws,
            slow_state=self.slow_state,
            slow_disconnected_at=self.slow_disconnected_at,
            slow_drained_bytes=self.slow_drained,
        )
        self.pipe.send(("result", self.share.proc, result))


def _raise_fd_limit(needed: int) -> None:
    try:
        import resource  # noqa: PLC0415 - POSIX only, and only needed here
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass


def worker_main(cfg: BenchConfig, share: ProcShare, pipe: Connection) -> None:
    """Entry point of a worker process (see the module docstring)."""
    try:
        _raise_fd_limit(share.clients)
        Worker(cfg, share, pipe).run()
    except BaseException:  # report everything, even KeyboardInterrupt
        try:
            pipe.send(("error", share.proc, traceback.format_exc()))
        except OSError:
            pass
    finally:
        pipe.close()
        os._exit(0)
