"""Hostile clients against the real daemon (issue 7): garbage, malformed
fields, huge headers, lying Content-Length, oversized messages, a client
that stops reading, slowloris, more connections than the limit. Each case
checks the error the client gets, a ceiling on the daemon's memory (VmRSS /
VmHWM from /proc) and that another client is still served quickly."""
import os
import random
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Daemon, RecvBuffer, recv_reply, scan_request  # noqa: E402

MB = 1024 * 1024
# DNS goes to a closed port: lookups fail fast and scans never wait on the net
FAST_DNS = ("--set", "dns_forwarders=127.0.0.1@9", "--set", "dns_timeout=300ms",
            "--set", "scan_timeout=2s")
SMALL = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: x\r\n\r\nhello\r\n"
# Under ASan/valgrind every allocation costs more; the ceilings scale.
SLACK = 4 if os.environ.get("ALIGND_SANITIZED") or "asan" in os.environ.get("ALIGND", "") else 1


def mem(pid):
    """(VmRSS, VmHWM) of a process in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


def report(what, **kw):
    """Figures for the log of the test run."""
    sys.stderr.write("  [%s] %s\n" % (what, " ".join("%s=%s" % kv for kv in kw.items())))


def status_code(reply):
    return int(reply[9:12])


def ping_latency(d, timeout=5.0):
    """Seconds for one PING on a fresh connection."""
    t = time.monotonic()
    r = d.request(b"PING\r\n\r\n", timeout=timeout)
    dt = time.monotonic() - t
    if not r.startswith(b"ALIGND/1 200 PONG"):
        raise AssertionError("bad PONG: %r" % r[:100])
    return dt


class Pinger(threading.Thread):
    """Another, well-behaved client: PINGs on one connection (and a new
    connection every tenth time) while an attack runs; keeps latencies."""

    def __init__(self, d, interval=0.01):
        super().__init__(daemon=True)
        self.d, self.interval = d, interval
        self.lat, self.errors = [], []
        self.stop_ev = threading.Event()

    def run(self):
        s = None
        rb = None
        i = 0
        while not self.stop_ev.is_set():
            try:
                if s is None or i % 10 == 0:
                    if s:
                        s.close()
                    s = self.d.connect(timeout=5.0)
                    rb = RecvBuffer(s)
                t = time.monotonic()
                s.sendall(b"PING\r\n\r\n")
                r = rb.reply()
                self.lat.append(time.monotonic() - t)
                if not r.startswith(b"ALIGND/1 200 PONG"):
                    self.errors.append(r[:80])
            except OSError as e:
                self.errors.append(repr(e))
                s = None
            i += 1
            time.sleep(self.interval)
        if s:
            s.close()

    def finish(self):
        self.stop_ev.set()
        self.join(10)

    def p99(self):
        if not self.lat:
            return float("inf")
        v = sorted(self.lat)
        return v[min(len(v) - 1, int(len(v) * 0.99))]


class HostileBase(unittest.TestCase):
    ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(*(FAST_DNS + tuple(cls.ARGS))).start()
        cls.base_rss, _ = mem(cls.d.proc.pid)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def assert_serving(self, max_latency=1.0):
        self.assertIsNone(self.d.proc.poll(), "daemon died:\n" + self.d.logtext()[-3000:])
        self.assertLess(ping_latency(self.d), max_latency)

    def assert_rss_below(self, limit):
        rss, hwm = mem(self.d.proc.pid)
        self.assertLess(rss, limit * SLACK, "VmRSS %d MB" % (rss // MB))
        return rss, hwm


class GarbageTest(HostileBase):
    ARGS = ("--set", "max_message_size=4M", "--set", "request_timeout=3s")

    def test_binary_garbage(self):
        rnd = random.Random(7)
        for n in (1, 17, 4096, 65536, 300000):
            junk = bytes(rnd.getrandbits(8) for _ in range(n))
            with self.d.connect(timeout=10) as s:
                try:
                    s.sendall(junk + b"\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass   # closed after its error while we were still sending
                rb = RecvBuffer(s)
                try:
                    r = rb.reply()
                except (ConnectionError, OSError):
                    self.fail("no error reply for %d bytes of garbage" % n)
                self.assertTrue(400 <= status_code(r) < 500, r[:80])
        self.assert_serving()
        self.assert_rss_below(64 * MB)

    def test_nul_and_control_bytes(self):
        cases = [
            b"PI\x00NG\r\n\r\n",
            b"SCAN ALIGND/1\r\nHelo: a\x00b\r\nContent-Length: 0\r\n\r\n",
            b"SCAN ALIGND/1\r\nMail-From: <a\x01@b>\r\nContent-Length: 0\r\n\r\n",
            b"SCAN ALIGND/1\r\nClient-IP: 1.2.3.4\x00\r\nContent-Length: 0\r\n\r\n",
            b"SCAN ALIGND/1\r\nQueue-Id: \x1b[31m\r\nContent-Length: 0\r\n\r\n",
            b"\x00\x00\x00\x00\r\n\r\n",
        ]
        for c in cases:
            r = self.d.request(c)
            self.assertTrue(400 <= status_code(r) < 500, (c, r))
            # the reason is printable: no byte of the request echoed raw
            line = r.split(b"\r\n", 1)[0]
            self.assertTrue(all(0x20 <= b < 0x7f for b in line), r)
        self.assert_serving()

    def test_every_field_malformed(self):
        """Each malformed field gets its 4xx; 'kept' connections still
        answer a PING afterwards, 'closed' ones are closed (PROTOCOL.md)."""
        cases = [  # (request, status, kept)
            (b"SCAN ALIGND/9\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nno colon here\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nClient-IP: 999.1.1.1\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nFormat: xml\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nExplain: perhaps\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"SCAN ALIGND/1\r\nHelo: a\r\nHelo: b\r\nContent-Length: 0\r\n\r\n", 400, True),
            (b"PING\r\nContent-Length: 3\r\n\r\nabc", 400, True),
            (b"FROB\r\n\r\n", 405, True),
            (b"SCAN ALIGND/1\r\nContent-Length: -1\r\n\r\n", 400, False),
            (b"SCAN ALIGND/1\r\nContent-Length: 1e3\r\n\r\n", 400, False),
            (b"SCAN ALIGND/1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, False),
            (b"SCAN ALIGND/1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, False),
            (b"SCAN ALIGND/1\r\nHelo: x\r\n\r\n", 411, False),
            (b"SCAN ALIGND/1\r\nContent-Length: 99999999\r\n\r\n", 413, False),
            (b"SCAN ALIGND/1\r\nHelo: " + b"h" * 5000 + b"\r\n\r\n", 414, False),
            (b"SCAN ALIGND/1\r\n" + b"Rcpt-To: <a@b>\r\n" * 300 + b"Content-Length: 0\r\n\r\n", 431, False),
        ]
        for req, want, kept in cases:
            with self.d.connect(timeout=5) as s:
                rb = RecvBuffer(s)
                s.sendall(req)
                r = rb.reply()
                self.assertEqual(status_code(r), want, (req[:60], r))
                if kept:
                    s.sendall(b"PING\r\n\r\n")
                    self.assertTrue(rb.reply().startswith(b"ALIGND/1 200 PONG"), req[:60])
                else:
                    self.assertTrue(rb.closed(timeout=3), "not closed after %r" % req[:60])
        self.assert_serving()


class HugeHeaderTest(HostileBase):
    ARGS = ("--set", "max_message_size=8M")

    def scan(self, msg):
        t = time.monotonic()
        r = self.d.request(scan_request(msg, ip="192.0.2.1", mail_from="a@example.com",
                                        explain=True), timeout=30)
        return r, time.monotonic() - t

    def test_100000_header_lines(self):
        msg = b"From: a@example.com\r\n" + b"X-Filler: 1\r\n" * 100000 + b"\r\nbody\r\n"
        p = Pinger(self.d)
        p.start()
        r, dt = self.scan(msg)
        p.finish()
        rss, hwm = mem(self.d.proc.pid)
        report("100k-headers", secs=round(dt, 2), p99_ms=round(p.p99() * 1000, 1),
               rss_mb=rss // MB, hwm_mb=hwm // MB, base_mb=self.base_rss // MB)
        self.assertEqual(status_code(r), 200, r[:200])
        # never accepted unscanned: the header section could not be used
        self.assertNotIn(b"Action: accept", r)
        self.assertIn(b"Symbol: HEADER_UNPARSED", r)
        self.assertLess(dt, 10)
        self.assertEqual(p.errors, [])
        self.assertLess(p.p99(), 0.2)
        rss, hwm = self.assert_rss_below(self.base_rss + 48 * MB)
        self.assertLess(hwm, (self.base_rss + 64 * MB) * SLACK)
        self.assert_serving()

    def test_1mb_header_line(self):
        msg = b"From: a@example.com\r\nX-Long: " + b"a" * MB + b"\r\n\r\nbody\r\n"
        r, dt = self.scan(msg)
        self.assertEqual(status_code(r), 200, r[:200])
        self.assertNotIn(b"Action: accept", r)
        self.assertIn(b"Symbol: HEADER_UNPARSED", r)
        self.assertLess(dt, 10)
        # a folded line of 1 MB, and a header section of only one line
        msg = b"X-Folded: a" + b"\r\n b" * (MB // 4) + b"\r\n\r\n"
        r, dt = self.scan(msg)
        self.assertEqual(status_code(r), 200, r[:200])
        self.assertNotIn(b"Action: accept", r)
        self.assertLess(dt, 10)
        self.assert_rss_below(self.base_rss + 48 * MB)
        self.assert_serving()

    def test_message_without_blank_line(self):
        msg = b"X: 1\r\n" * 200000
        r, _ = self.scan(msg)
        self.assertEqual(status_code(r), 200, r[:200])
        self.assertNotIn(b"Action: accept", r)
        self.assert_serving()


class LengthTest(HostileBase):
    ARGS = ("--set", "max_message_size=1M", "--set", "request_timeout=2s")

    def test_content_length_larger_than_sent(self):
        with self.d.connect(timeout=10) as s:
            t = time.monotonic()
            s.sendall(b"SCAN ALIGND/1\r\nContent-Length: 1000\r\n\r\n" + SMALL)
            rb = RecvBuffer(s)
            r = rb.reply()
            self.assertEqual(status_code(r), 408, r)
            self.assertIn(b"request timeout", r)
            self.assertLess(time.monotonic() - t, 5)
            self.assertTrue(rb.closed(timeout=3))
        # the same, but the client half-closes: nothing to scan, no hang
        with self.d.connect(timeout=10) as s:
            s.sendall(b"SCAN ALIGND/1\r\nContent-Length: 1000\r\n\r\n" + SMALL)
            s.shutdown(socket.SHUT_WR)
            rb = RecvBuffer(s)
            self.assertTrue(rb.closed(timeout=4))
            self.assertTrue(rb.buf == b"" or 400 <= status_code(rb.buf) < 500, rb.buf)
        self.assert_serving()

    def test_content_length_smaller_than_sent(self):
        # the extra bytes are the next request: an error for it, in order
        extra = b"this is not a request\r\n\r\n"
        with self.d.connect(timeout=10) as s:
            s.sendall(scan_request(SMALL, ip="192.0.2.1", mail_from="a@example.com")[:-len(b"hello\r\n")]
                      .replace(b"Content-Length: %d" % len(SMALL),
                               b"Content-Length: %d" % (len(SMALL) - 7)) + b"hello\r\n" + extra)
            rb = RecvBuffer(s)
            r1 = rb.reply()
            self.assertEqual(status_code(r1), 200, r1)
            r2 = rb.reply()
            self.assertTrue(400 <= status_code(r2) < 500, r2)
        self.assert_serving()

    def test_message_over_the_limit(self):
        # announced: refused at once, before any body byte
        with self.d.connect(timeout=10) as s:
            s.sendall(b"SCAN ALIGND/1\r\nContent-Length: %d\r\n\r\n" % (2 * MB))
            rb = RecvBuffer(s)
            r = rb.reply()
            self.assertEqual(status_code(r), 413, r)
            self.assertTrue(rb.closed(timeout=3))
        # and sent anyway: the daemon must not buffer it
        with self.d.connect(timeout=10) as s:
            payload = b"SCAN ALIGND/1\r\nContent-Length: %d\r\n\r\n" % (20 * MB)
            try:
                s.sendall(payload + b"x" * (20 * MB))
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = RecvBuffer(s).reply()
            self.assertEqual(status_code(r), 413, r)
        self.assert_rss_below(self.base_rss + 32 * MB)
        # exactly at the limit is scanned
        body = b"From: a@example.com\r\n\r\n" + b"x" * (MB - 23)
        self.assertEqual(len(body), MB)
        r = self.d.request(scan_request(body, ip="192.0.2.1"), timeout=20)
        self.assertEqual(status_code(r), 200, r[:100])
        self.assert_serving()


class NoReaderTest(HostileBase):
    def test_client_stops_reading(self):
        n = 10000
        s = self.d.connect(timeout=2.0)
        sent, total = [0], [0]
        done = threading.Event()

        def writer():
            # PINGs, then STATS (bigger replies); gives up when paused
            data = b"PING\r\n\r\n" * n + b"STATS\r\n\r\n" * (10 * n)
            total[0] = len(data)
            try:
                while sent[0] < len(data):
                    sent[0] += s.send(data[sent[0]:sent[0] + 65536])
            except OSError:
                pass
            done.set()

        w = threading.Thread(target=writer, daemon=True)
        p = Pinger(self.d)
        p.start()
        w.start()
        time.sleep(3)
        rss, hwm = self.assert_rss_below(self.base_rss + 32 * MB)
        p.finish()
        report("no-reader", sent_bytes=sent[0], pings=len(p.lat), p99_ms=round(p.p99() * 1000, 1),
               rss_growth_mb=(rss - self.base_rss) // MB)
        # the daemon stopped reading: back-pressure, not buffering
        self.assertLess(sent[0], total[0])
        self.assertEqual(p.errors, [])
        self.assertGreater(len(p.lat), 20)
        self.assertLess(p.p99(), 0.2, "p99 %.3fs" % p.p99())
        # read everything back now: every reply, in order, nothing lost
        s.settimeout(10)
        rb = RecvBuffer(s)
        got = 0
        while got < n:
            r = rb.reply()
            self.assertTrue(r.startswith(b"ALIGND/1 200 PONG"), r[:40])
            got += 1
        w.join(20)
        s.close()
        self.assertLess(mem(self.d.proc.pid)[1], (self.base_rss + 48 * MB) * SLACK)
        self.assert_serving()


class PingFloodTest(HostileBase):
    def test_ping_flood_without_reading(self):
        """400,000 PINGs (3.2 MB) from a client that reads nothing: the
        replies it does not read cost the daemon a bounded amount of memory
        (16 MB at most), and none is lost once it reads."""
        n = 400000
        req = b"PING\r\n\r\n"
        s = self.d.connect(timeout=2.0)
        sent = [0]

        def writer():
            data = req * n
            try:
                while sent[0] < len(data):
                    sent[0] += s.send(data[sent[0]:sent[0] + 65536])
            except OSError:
                pass

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        # until the daemon stops reading (the writer blocks), then a while
        last, still = -1, 0
        while still < 10:
            time.sleep(0.1)
            still = still + 1 if sent[0] == last else 0
            last = sent[0]
        rss, hwm = mem(self.d.proc.pid)
        report("ping-flood", sent_bytes=sent[0], rss_growth_mb=round((rss - self.base_rss) / MB, 1))
        self.assertLess(rss - self.base_rss, 16 * MB * SLACK,
                        "VmRSS grew %d MB for one client that does not read" % ((rss - self.base_rss) // MB))
        self.assert_serving()
        # now read: every reply, in order
        one = None
        got = bytearray()
        s.settimeout(20)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
            if one is None and b"\r\n\r\n" in got:
                one = bytes(got[:got.index(b"\r\n\r\n") + 4])
            if one is not None and len(got) >= n * len(one):
                break
        w.join(30)
        s.close()
        self.assertEqual(one, b"ALIGND/1 200 PONG\r\n\r\n")
        self.assertEqual(len(got), n * len(one))
        self.assertEqual(bytes(got), one * n)


def connect_patiently(d, test, i):
    """Connection number i to the daemon's socket. A UNIX socket's full
    listen queue answers EAGAIN at once instead of waiting: retry while the
    daemon catches up, for 5 s at most."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    for attempt in range(500):
        try:
            s.connect(d.socket)
            return s
        except BlockingIOError:
            time.sleep(0.01)
    s.close()
    test.fail("connection %d: listen queue stayed full for 5 s" % i)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class SlowlorisTest(unittest.TestCase):
    N = 5000

    def test_slowloris_5000(self):
        # the daemon inherits the raised limit
        if raise_nofile(2 * self.N + 500) < 2 * self.N + 100:
            self.skipTest("RLIMIT_NOFILE hard limit too low for %d connections" % self.N)
        d = Daemon(*FAST_DNS, "--set", "max_connections=6000",
                   "--set", "request_timeout=4s", "--set", "idle_timeout=4s").start()
        socks = []
        try:
            base, _ = mem(d.proc.pid)
            p = Pinger(d, interval=0.005)
            p.start()
            t0 = time.monotonic()
            for i in range(self.N):
                s = connect_patiently(d, self, i)
                s.sendall(b"SCAN ALIGND/1\r\nHe")
                s.setblocking(False)
                socks.append(s)
            # trickle: one byte per connection and second, never finishing
            while time.monotonic() - t0 < 2.5:
                for s in socks:
                    try:
                        s.send(b"l")
                    except OSError:
                        pass
                time.sleep(0.5)
            rss, hwm = mem(d.proc.pid)
            p.finish()
            report("slowloris", conns=len(socks), pings=len(p.lat), p99_ms=round(p.p99() * 1000, 1),
                   rss_growth_mb=(rss - base) // MB, hwm_mb=hwm // MB)
            self.assertEqual(p.errors, [])
            self.assertGreater(len(p.lat), 20)
            self.assertLess(p.p99(), 0.2, "PING p99 %.3fs during the attack" % p.p99())
            # 5,000 open requests cost a bounded amount of memory
            self.assertLess(rss - base, 160 * MB * SLACK, "VmRSS grew %d MB" % ((rss - base) // MB))
            # the request timeout ends every one of them with a 408
            sel = selectors.DefaultSelector()
            for s in socks:
                sel.register(s, selectors.EVENT_READ, [b""])
            closed, got408 = 0, 0
            end = time.monotonic() + 15
            while closed < self.N and time.monotonic() < end:
                for key, _ in sel.select(timeout=1):
                    try:
                        chunk = key.fileobj.recv(4096)
                    except OSError:
                        chunk = b""
                    if chunk:
                        key.data[0] += chunk
                        continue
                    if key.data[0].startswith(b"ALIGND/1 408"):
                        got408 += 1
                    sel.unregister(key.fileobj)
                    closed += 1
            sel.close()
            report("slowloris", closed=closed, got408=got408)
            self.assertEqual(closed, self.N, "connections still open after request_timeout")
            self.assertEqual(got408, self.N)
            self.assertLess(ping_latency(d), 0.5)
        finally:
            for s in socks:
                s.close()
            d.cleanup()


class ConnectionLimitTest(unittest.TestCase):
    def test_busy_connections_over_the_limit_refused(self):
        """20 connections each in the middle of a request fill
        max_connections = 20: none is idle, so a new one gets 421."""
        d = Daemon(*FAST_DNS, "--set", "max_connections=20").start()
        held = []
        try:
            # the readiness probe's connection may still be closing
            time.sleep(0.2)
            for _ in range(20):
                s = d.connect(timeout=5)
                s.sendall(b"SCAN ALIGND/1\r\nContent-Length: 100\r\n\r\nFrom: a")
                held.append(s)
            time.sleep(0.2)
            refused = 0
            for _ in range(50):
                with d.connect(timeout=5) as s:
                    rb = RecvBuffer(s)
                    try:
                        s.sendall(b"PING\r\n\r\n")
                    except OSError:
                        pass
                    r = rb.reply()
                    self.assertEqual(status_code(r), 421, r)
                    self.assertIn(b"too many connections", r)
                    self.assertTrue(rb.closed(timeout=3))
                    refused += 1
            self.assertEqual(refused, 50)
            # the admitted ones finish their requests
            for s in held:
                s.sendall(b"x" * 93)
                self.assertTrue(recv_reply(s).startswith(b"ALIGND/1 200"))
            # freeing slots admits new clients again
            for s in held[:5]:
                s.close()
            held = held[5:]
            time.sleep(0.3)
            self.assertLess(ping_latency(d), 0.5)
        finally:
            for s in held:
                s.close()
            d.cleanup()

    def test_idle_flood_cannot_lock_out_clients(self):
        """1,100 idle connections against max_connections = 1024 (the
        default): every new client is still served, because the longest
        idle connection is closed to admit it (with a 421 saying why)."""
        if raise_nofile(3000) < 2500:
            self.skipTest("RLIMIT_NOFILE hard limit too low")
        d = Daemon(*FAST_DNS).start()
        idle = []
        try:
            time.sleep(0.2)
            for i in range(1100):
                idle.append(connect_patiently(d, self, i))
            time.sleep(0.5)
            lat = [ping_latency(d, timeout=3) for _ in range(30)]
            report("idle-flood", idle=len(idle), max_ms=round(max(lat) * 1000, 1))
            # the oldest idle ones were told and closed; the newest stay
            first = RecvBuffer(idle[0])
            r = first.reply()
            self.assertEqual(status_code(r), 421, r)
            self.assertIn(b"idle connection closed", r)
            self.assertTrue(first.closed(timeout=3))
            stats = d.request(b"STATS\r\n\r\n")
            shed = int(re.search(rb"Connections-Shed: (\d+)", stats).group(1))
            report("idle-flood", shed=shed)
            self.assertGreaterEqual(shed, 1100 - 1024)
            idle[-1].sendall(b"PING\r\n\r\n")
            self.assertTrue(recv_reply(idle[-1]).startswith(b"ALIGND/1 200 PONG"))
        finally:
            for s in idle:
                s.close()
            d.cleanup()


class InflightBudgetTest(unittest.TestCase):
    """max_inflight_bytes bounds the message bytes of all requests
    together: one more that does not fit gets 503 and the connection stays
    usable; once bytes are given back, the same request is served."""

    def test_budget(self):
        d = Daemon(*FAST_DNS, "--set", "max_inflight_bytes=100K",
                   "--set", "max_message_size=80K").start()
        try:
            big = SMALL + b"x" * (70 * 1024)
            a = d.connect(timeout=5)
            # 70 KB announced and half sent: held against the budget
            req = scan_request(big)
            a.sendall(req[:len(req) // 2])
            time.sleep(0.2)
            b = d.connect(timeout=5)
            rb = RecvBuffer(b)
            b.sendall(scan_request(SMALL + b"y" * (40 * 1024)))
            r = rb.reply()
            self.assertEqual(status_code(r), 503, r)
            self.assertIn(b"max_inflight_bytes", r)
            stats = d.request(b"STATS\r\n\r\n")
            self.assertRegex(stats, rb"Requests-Busy: 1\r\n")
            self.assertRegex(stats, rb"Message-Bytes-In-Flight: %d\r\n" % len(big))
            # small ones still fit
            b.sendall(scan_request(SMALL))
            self.assertEqual(status_code(rb.reply()), 200)
            # the held message completes and gives its bytes back
            a.sendall(req[len(req) // 2:])
            self.assertEqual(status_code(recv_reply(a)), 200)
            a.close()
            time.sleep(0.2)
            b.sendall(scan_request(SMALL + b"y" * (40 * 1024)))
            self.assertEqual(status_code(rb.reply()), 200)
            b.close()
            stats = d.request(b"STATS\r\n\r\n")
            self.assertRegex(stats, rb"Message-Bytes-In-Flight: 0\r\n")
        finally:
            d.cleanup()

    def test_message_size_above_budget_refused_at_start(self):
        p = subprocess.run([os.environ["ALIGND"], "--check-config", "--set", "max_inflight_bytes=1M",
                            "--set", "max_message_size=2M"], capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("above max_inflight_bytes", p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
