"""The fanout scenario: K senders in a closed loop, everyone else receiving.

Owns the roles (who sends, who acknowledges what), the messages and their
acknowledgement, and the hot path that times every delivery. Messages carry
``cpb <send time µs> <sender id> <seq>`` in their text, so a receiver finds
them in whatever line the server relays (``MSG alice cpb ...`` or a
third-party ``[alice] cpb ...``), and the latency is ``now - send time`` on
the same clock. The slow reader and the idle scenario's room build on it.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Final

from ._conn import Conn, Sender, lines_of
from ._scenario import Scenario
from ._stats import NS

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["Fanout"]

#: What a receiver looks for in any line: send time (µs), sender id, seq.
MARK: Final = re.compile(rb"cpb (\d+) (\d+) (\d+)")
#: The send time alone, for the clients that do not acknowledge.
_STAMP: Final = re.compile(rb"cpb (\d+) ")


class Fanout(Scenario):
    """Senders, observers and the per-delivery timing of a broadcast."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        self.senders: list[Sender] = []
        #: Acknowledgements each message needs before the next may go.
        self.ack_need = 1
        self.pad = b"x" * worker.cfg.payload

    def is_member(self, conn: Conn) -> bool:
        """Whether ``conn`` reads the broadcast (and may send)."""
        return conn.logged_in and not conn.idle

    def logged_in(self, conn: Conn) -> None:
        conn.handler = self.data

    def ready(self) -> None:
        """Pick the senders, the observers and who acknowledges what."""
        readers = [c for c in self.w.clients if self.is_member(c)]
        if not readers:
            return
        # The last clients send, so that the first is an observer that sends
        # nothing (unless every client sends).
        for conn in readers[len(readers) - self.w.share.senders :]:
            conn.sender = Sender(conn)
            self.senders.append(conn.sender)
        by_sid = {s.sid: s for s in self.senders}
        if self.w.cfg.ack == "all":
            # Every reader acknowledges every local sender but itself.
            self.ack_need = max(1, len(readers) - 1)
            for conn in readers:
                conn.acks = by_sid
        else:
            observer = readers[0]
            observer.acks = {sid: s for sid, s in by_sid.items() if s.conn is not observer}
            if observer.sender is not None and len(readers) > 1:
                readers[1].acks = {observer.sid: observer.sender}

    def go(self) -> None:
        for sender in self.senders:
            for _ in range(self.w.cfg.window):
                self.send(sender)
        self.w.after(0.25, self._check_ack_timeouts)

    def busy(self) -> bool:
        return any(s.pending and s.alive for s in self.senders)

    def lost(self, conn: Conn) -> None:
        super().lost(conn)
        if conn.sender is not None:
            conn.sender.alive = False

    def result(self) -> dict[str, Any]:
        return {
            "senders": len(self.senders),
            "ack_need": self.ack_need,
            "readers": sum(1 for c in self.w.clients if self.is_member(c)),
        }

    # ------------------------------------------------------------ sending

    def send(self, sender: Sender) -> None:
        """One more message from ``sender``, due ``ack_need`` acknowledgements."""
        w = self.w
        t = time.monotonic_ns()
        seq = sender.seq
        sender.seq = seq + 1
        sender.pending[seq] = [t, self.ack_need]
        c = w.c
        c["sent"] += 1
        t_us = t // 1000
        # In the window by the microsecond stamp the readers see, as they
        # decide it: on the nanosecond clock a message sent in the last
        # fraction of a microsecond counted as sent and its copies did not.
        if w.ws_us <= t_us < w.we_us:
            c["sent_in_window"] += 1
        head = b"MSG cpb %d %s %d " % (t_us, sender.sid, seq)
        pad = w.cfg.payload + 4 - len(head)
        w.write(sender.conn, head + self.pad[: max(1, pad)] + b"\n")

    def _ack(self, sender: Sender, seq: int) -> None:
        entry = sender.pending.get(seq)
        if entry is None:
            return  # released by the ack timeout already
        if entry[1] > 1:
            entry[1] -= 1
            return
        del sender.pending[seq]
        w = self.w
        w.c["acked"] += 1
        if w.phase == "run":
            if sender.alive:
                self.send(sender)
        elif w.phase == "drain" and not sender.pending:
            w.check_drained()

    def _check_ack_timeouts(self) -> None:
        w = self.w
        if w.phase not in ("run", "drain"):
            return
        limit = time.monotonic_ns() - int(w.cfg.ack_timeout * NS)
        for sender in self.senders:
            late = [seq for seq, (t, _) in sender.pending.items() if t < limit]
            for seq in late:
                del sender.pending[seq]
                w.c["ack_timeouts"] += 1
                if w.phase == "run" and sender.alive:
                    self.send(sender)
        w.check_drained()
        w.after(0.25, self._check_ack_timeouts)

    # ----------------------------------------------------------- receiving

    def data(self, conn: Conn, data: bytes) -> None:
        """The hot path: every MSG line carries a timestamp, and maybe an ack.

        Most clients only count and time what they receive: for them the
        whole read is handled by C loops (one regular-expression scan, ``int``
        and subtraction mapped over the list, ``Counter.update``), about
        three times cheaper than a Python loop per line. Observers, echoes
        and reads that straddle the window's edges take the per-line loop.
        """
        w = self.w
        c = w.c
        acks = conn.acks
        # Only a sender can receive an echo of its own message.
        echo = conn.sender is not None and conn.echo_tag in data and conn.echo_re.search(data)
        if acks is None and not echo:
            stamps = _STAMP.findall(data)
            n = len(stamps)
            if data.count(b"\n") != n:
                self.odd_lines(data)
            if not n:
                return
            now = time.monotonic_ns()
            c["marker_lines"] += n
            sec = (now - w.ws) // NS
            if 0 <= sec < w.nsec:
                w.series[sec] += n
            ts = list(map(int, stamps))
            if w.ws_us > min(ts) or max(ts) >= w.we_us:
                ws, we = w.ws_us, w.we_us
                ts = [t for t in ts if ws <= t < we]
            if ts:
                w.fast_hist.update(map((now // 1000).__sub__, ts))
                c["deliveries_in_window"] += len(ts)
            return
        hits = MARK.findall(data)
        nhits = len(hits)
        if data.count(b"\n") != nhits:
            self.odd_lines(data)
        if not nhits:
            return
        now = time.monotonic_ns()
        c["marker_lines"] += nhits
        sec = (now - w.ws) // NS
        if 0 <= sec < w.nsec:
            w.series[sec] += nhits
        now_us = now // 1000
        ws, we = w.ws_us, w.we_us
        hist = w.hist
        own = conn.sid
        n_in = 0
        for t_b, s_b, q_b in hits:
            if s_b == own:
                c["echoes"] += 1
                continue
            t = int(t_b)
            if ws <= t < we:
                n_in += 1
                us = now_us - t
                if us >= 1024:  # stats.bucket_us, inlined
                    shift = us.bit_length() - 7
                    us = us >> shift << shift
                hist[us] = hist.get(us, 0) + 1
            if acks is not None:
                sender = acks.get(s_b)
                if sender is not None:
                    self._ack(sender, int(q_b))
        c["deliveries_in_window"] += n_in

    def odd_lines(self, block: bytes) -> list[bytes]:
        """Count the lines of ``block`` that are not our messages; return them."""
        odd = [line for line in lines_of(block) if not MARK.search(line)]
        if odd:
            w = self.w
            w.c["stray_pongs"] += w.tally.count_lines(b"\n".join(odd) + b"\n")
        return odd
