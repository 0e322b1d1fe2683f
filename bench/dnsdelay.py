#!/usr/bin/python3
"""A DNS forwarder on 127.0.0.1 that delays every answer (UDP and TCP):
netem is not available, so the benchmark puts this between libunbound and
the test nsd to give each query a round trip of delay_ms +- jitter_ms.

    from dnsdelay import DelayForwarder
    with DelayForwarder(upstream_port, delay_ms=20, jitter_ms=2) as f:
        f.port, f.queries, f.log   # log: (time, qname, qtype) per query

As a program: dnsdelay.py UPSTREAM_PORT DELAY_MS [JITTER_MS] [PORT]
(runs until SIGINT/SIGTERM).
"""

import heapq
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time


def _qname(pkt):
    labels, off = [], 12
    while off < len(pkt):
        n = pkt[off]
        off += 1
        if n == 0 or n >= 64:
            break
        labels.append(pkt[off:off + n].decode("ascii", "replace"))
        off += n
    qtype = struct.unpack("!H", pkt[off:off + 2])[0] if off + 2 <= len(pkt) else 0
    return ".".join(labels) + ".", qtype


class DelayForwarder:
    def __init__(self, upstream_port, delay_ms=20.0, jitter_ms=0.0, port=0,
                 seed=1):
        self.up = ("127.0.0.1", upstream_port)
        self.delay = delay_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.rng = random.Random(seed)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(128)
        self.upsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.upsock.connect(self.up)
        self.stop_r, self.stop_w = os.pipe()
        self.pending = {}   # upstream id -> (client addr, client id)
        self.next_id = 0
        self.timers = []    # (due, seq, data, addr)
        self.seq = 0
        self.queries = 0
        self.log = []
        self.lock = threading.Lock()
        self.thread = None

    def _d(self):
        d = self.delay
        if self.jitter:
            d += self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, d)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def reset_log(self):
        with self.lock:
            self.log = []
            self.queries = 0

    def _note(self, pkt):
        with self.lock:
            self.queries += 1
            self.log.append((time.monotonic(),) + _qname(pkt))

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.upsock, selectors.EVENT_READ, "up")
        sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        sel.register(self.stop_r, selectors.EVENT_READ, "stop")
        while True:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            for key, _ in sel.select(timeout):
                if key.data == "stop":
                    return
                if key.data == "udp":
                    try:
                        pkt, addr = self.udp.recvfrom(65535)
                    except OSError:
                        continue
                    if len(pkt) < 12:
                        continue
                    self._note(pkt)
                    uid = self.next_id
                    self.next_id = (self.next_id + 1) & 0xFFFF
                    self.pending[uid] = (addr, pkt[:2])
                    try:
                        self.upsock.send(struct.pack("!H", uid) + pkt[2:])
                    except OSError:
                        pass
                elif key.data == "up":
                    try:
                        rep = self.upsock.recv(65535)
                    except OSError:
                        continue
                    uid = struct.unpack("!H", rep[:2])[0]
                    who = self.pending.pop(uid, None)
                    if who is None:
                        continue
                    self.seq += 1
                    # the whole round trip's delay, applied to the answer
                    heapq.heappush(self.timers, (time.monotonic() + self._d(),
                                                 self.seq, who[1] + rep[2:],
                                                 who[0]))
                elif key.data == "tcp":
                    try:
                        c, _ = self.tcp.accept()
                    except OSError:
                        continue
                    threading.Thread(target=self._tcp_conn, args=(c,),
                                     daemon=True).start()
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, data, addr = heapq.heappop(self.timers)
                try:
                    self.udp.sendto(data, addr)
                except OSError:
                    pass

    def _tcp_conn(self, c):
        c.settimeout(10)
        try:
            while True:
                hdr = self._recvn(c, 2)
                if not hdr:
                    return
                q = self._recvn(c, struct.unpack("!H", hdr)[0])
                if not q:
                    return
                self._note(q)
                with socket.create_connection(self.up, timeout=5) as u:
                    u.sendall(hdr + q)
                    rh = self._recvn(u, 2)
                    rep = self._recvn(u, struct.unpack("!H", rh)[0]) if rh else b""
                time.sleep(self._d())
                c.sendall(struct.pack("!H", len(rep)) + rep)
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def _recvn(s, n):
        b = b""
        while len(b) < n:
            x = s.recv(n - len(b))
            if not x:
                return b""
            b += x
        return b

    def stop(self):
        if self.thread:
            os.write(self.stop_w, b"x")
            self.thread.join(5)
            self.thread = None
        for s in (self.udp, self.tcp, self.upsock):
            s.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    up, delay = int(sys.argv[1]), float(sys.argv[2])
    jit = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    import signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with DelayForwarder(up, delay, jit, port) as f:
        print("dnsdelay: 127.0.0.1:%d -> %d, %.1f ms +- %.1f" % (f.port, up, delay, jit),
              flush=True)
        signal.sigwait([signal.SIGINT, signal.SIGTERM])
    return 0


if __name__ == "__main__":
    sys.exit(main())
