"""A TCP relay that delays every chunk by a fixed time in each direction (round trip + 2 x delay).

Used by netfs.py to put a network's round-trip time between a GlusterFS client and its brick
on one machine.  This kernel has no netem (CONFIG_NET_SCH_NETEM unset), and delay on the
host's loopback would slow every other program's local traffic; the relay delays only the
connections made to it.  Chunks keep their order and are not held back by one another, so a
pipelined stream keeps its bandwidth: only the latency grows.
"""

from __future__ import annotations

import queue
import socket
import threading
import time


class DelayProxy:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], delay_s: float) -> None:
        self.upstream, self.delay_s = upstream, delay_s
        self.server = socket.create_server(listen)
        self.address = self.server.getsockname()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for a, b in ((client, server), (server, client)):
                pending: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._receive, args=(a, b, pending), daemon=True).start()
                threading.Thread(target=self._send, args=(b, pending), daemon=True).start()

    def _receive(
        self, source: socket.socket, sink: socket.socket, pending: queue.Queue[tuple[float, bytes]]
    ) -> None:
        while True:
            try:
                data = source.recv(1 << 20)
                # ACK at once: a sender that waits for the ACK of its last segment before
                # sending the next (Nagle) would otherwise wait for the delayed-ACK timer
                # (40 ms), since the answer that would carry the ACK is held back here.
                source.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _send(self, sink: socket.socket, pending: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = pending.get()
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def set_delay(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def close(self) -> None:
        self.closing = True
        self.server.close()
