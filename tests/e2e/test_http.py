"""The rspamd-compatible HTTP endpoint on its own: request framing and
limits, keep-alive, byte-at-a-time input, JSON and legacy replies, and the
loopback-only rule. The real daemon on a UNIX socket; no DNS world needed
for framing (scans then see no DNS and still answer)."""
import json
import os
import re
import socket
import subprocess
import time
import unittest

import harness
import mta

MSG = mta.make_message("Alice <alice@example.com>", "bob@example.net", "hi")


def head(first, n=len(MSG), extra=b""):
    return first + b"\r\nContent-Length: %d\r\nIP: 192.0.2.25\r\nFrom: <alice@example.com>\r\n" \
        b"Rcpt: <bob@example.net>\r\nHelo: mail.example.com\r\n" % n + extra + b"\r\n"


class HttpEndpoint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon("--set", "max_message_size=4096",
                               "--set", "max_request_header=2048",
                               "--set", "dns_timeout=300ms")
        cls.path = os.path.join(cls.d.dir, "http.sock")
        cls.d.args += ["--set", "http_listen=unix:" + cls.path]
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def conn(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(self.path)
        return s

    def read_http(self, s, buf=b""):
        """One HTTP response: (status, headers dict, body, rest)."""
        while b"\r\n\r\n" not in buf:
            c = s.recv(65536)
            if not c:
                raise ConnectionError("closed: %r" % buf)
            buf += c
        h, _, rest = buf.partition(b"\r\n\r\n")
        lines = h.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:])}
        n = int(hdrs.get("content-length", "0"))
        while len(rest) < n:
            c = s.recv(65536)
            if not c:
                raise ConnectionError("closed in body")
            rest += c
        return status, hdrs, rest[:n], rest[n:]

    def closed(self, s):
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True

    def test_json_reply_and_keep_alive_pipelined(self):
        s = self.conn()
        s.sendall(head(b"POST /checkv2 HTTP/1.1") + MSG + head(b"POST /symbols HTTP/1.1") + MSG)
        st, h, body, rest = self.read_http(s)
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "application/json")
        j = json.loads(body)
        for k in ("score", "required_score", "action", "symbols", "milter", "alignd"):
            self.assertIn(k, j)
        self.assertIn(j["action"], ("no action", "add header", "reject", "soft reject"))
        self.assertIn("Authentication-Results", j["milter"]["add_headers"])
        st2, _, body2, _ = self.read_http(s, rest)
        self.assertEqual(st2, 200)
        self.assertEqual(json.loads(body2)["action"], j["action"])
        s.close()

    def test_one_byte_at_a_time(self):
        s = self.conn()
        for b in head(b"POST /checkv2 HTTP/1.1", extra=b"Connection: close\r\n") + MSG:
            s.sendall(bytes([b]))
        st, h, body, _ = self.read_http(s)
        self.assertEqual(st, 200)
        self.assertEqual(h["connection"], "close")
        self.assertTrue(self.closed(s))

    def test_legacy_rspamc_reply(self):
        # Exim sends an mbox "From " line first, counted in Content-length
        s = self.conn()
        mbox = b"From alice@example.com Mon Nov 20 10:00:00 2023\n" + MSG
        s.sendall(head(b"CHECK RSPAMC/1.3", n=len(mbox)) + mbox)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
        text = out.decode()
        self.assertRegex(text, r"^RSPAMD/1\.3 0 EX_OK\r\nMetric: default; (True|False); "
                               r"-?[0-9.]+ / [0-9.]+ / [0-9.]+\r\nAction: ")
        self.assertIn("\r\nAuthentication-Results: mx.test.example;", text)
        # the From: header was seen (not hidden behind the mbox line)
        self.assertNotIn("no From field", text)

    def test_ping(self):
        s = self.conn()
        s.sendall(b"GET /ping HTTP/1.1\r\n\r\n")
        st, _, body, _ = self.read_http(s)
        self.assertEqual((st, body), (200, b"pong\n"))

    def check_error(self, data, status):
        s = self.conn()
        s.sendall(data)
        st, h, body, _ = self.read_http(s)
        self.assertEqual(st, status, body)
        self.assertIn("error", json.loads(body))
        self.assertTrue(self.closed(s))

    def test_errors(self):
        self.check_error(b"POST /checkv2 HTTP/1.1\r\nIP: 192.0.2.1\r\n\r\n", 411)
        self.check_error(head(b"POST /checkv2 HTTP/1.1", extra=b"Transfer-Encoding: chunked\r\n"), 411)
        self.check_error(head(b"POST /checkv2 HTTP/1.1", n=5000), 413)
        self.check_error(head(b"POST /nothing HTTP/1.1"), 404)
        self.check_error(head(b"DELETE /checkv2 HTTP/1.1"), 405)
        self.check_error(head(b"POST /checkv2 HTTP/2.0"), 505)
        self.check_error(head(b"POST /checkv2 HTTP/1.1", extra=b"X-A: 1\r\n folded\r\n"), 400)
        self.check_error(head(b"POST /checkv2 HTTP/1.1", extra=b"IP: 192.0.2.2\r\n"), 400)
        self.check_error(head(b"POST /checkv2 HTTP/1.1").replace(b"192.0.2.25", b"999.1.1.1"), 400)
        self.check_error(b"POST /checkv2 HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400)
        self.check_error(b"POST /checkv2 HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400)
        self.check_error(b"POST /checkv2 HTTP/1.1\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431)
        self.check_error(b"garbage\r\n\r\n", 400)
        # the daemon is still fine
        s = self.conn()
        s.sendall(head(b"POST /checkv2 HTTP/1.1") + MSG)
        self.assertEqual(self.read_http(s)[0], 200)

    def test_client_gone_mid_body(self):
        for _ in range(5):
            s = self.conn()
            s.sendall(head(b"POST /checkv2 HTTP/1.1") + MSG[:10])
            s.close()
        s = self.conn()
        s.sendall(head(b"POST /checkv2 HTTP/1.1") + MSG)
        self.assertEqual(self.read_http(s)[0], 200)


class HttpSlowloris(unittest.TestCase):
    def test_trickle_does_not_extend_the_deadline(self):
        """One byte at a time, each within request_timeout of the last: the
        request still ends with 408 once request_timeout has passed since
        its first byte (before, every byte re-armed the timer)."""
        d = harness.Daemon("--set", "request_timeout=600ms", "--set", "idle_timeout=60s")
        path = os.path.join(d.dir, "http.sock")
        d.args += ["--set", "http_listen=unix:" + path]
        d.start()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            req = head(b"POST /checkv2 HTTP/1.1") + MSG
            sent = 0
            got = b""
            for i in range(len(req)):
                try:
                    s.send(req[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1
                time.sleep(0.05)
                s.setblocking(False)
                try:
                    got += s.recv(4096)
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    break
                finally:
                    s.setblocking(True)
                if got:
                    break
            if not got:
                try:
                    got = s.recv(4096)
                except ConnectionResetError:
                    pass
            s.close()
            print("trickled %d of %d bytes before the daemon answered %r" % (sent, len(req), got[:40]))
            self.assertLess(sent, len(req), "the whole trickled request was read")
            self.assertTrue(got.startswith(b"HTTP/1.1 408"), got[:80])
        finally:
            d.cleanup()


class HttpLimits(unittest.TestCase):
    """The daemon-wide limits hold on the HTTP endpoint too: idle keep-alive
    connections are shed at max_connections, and max_inflight_bytes
    refuses a message that does not fit with 503."""

    def start(self, *args):
        d = harness.Daemon("--set", "dns_timeout=300ms", *args)
        path = os.path.join(d.dir, "http.sock")
        d.args += ["--set", "http_listen=unix:" + path]
        d.start()
        return d, path

    def http_conn(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        return s

    def test_idle_keepalive_connections_are_shed(self):
        d, path = self.start("--set", "max_connections=6")
        idle = []
        try:
            time.sleep(0.2)
            for _ in range(6):
                s = self.http_conn(path)
                s.sendall(b"GET /ping HTTP/1.1\r\n\r\n")
                self.assertIn(b"pong", s.recv(4096))
                idle.append(s)
            time.sleep(0.1)
            # a line-protocol client still gets in: the oldest idle HTTP
            # connection is closed for it
            self.assertTrue(d.request(b"PING\r\n\r\n").startswith(b"ALIGND/1 200 PONG"))
            idle[0].settimeout(3)
            self.assertEqual(idle[0].recv(4096), b"", "the oldest idle connection was not closed")
            idle[-1].sendall(b"GET /ping HTTP/1.1\r\n\r\n")
            self.assertIn(b"pong", idle[-1].recv(4096))
            m = re.search(rb"\nalignd_connections_shed_total (\d+)\n", self.metrics(path))
            self.assertGreaterEqual(int(m.group(1)), 1)
        finally:
            for s in idle:
                s.close()
            d.cleanup()

    def metrics(self, path):
        with self.http_conn(path) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            out = b""
            while True:
                c = s.recv(65536)
                if not c:
                    return out
                out += c

    def test_inflight_budget(self):
        d, path = self.start("--set", "max_inflight_bytes=64K", "--set", "max_message_size=60K")
        try:
            held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.settimeout(10)
            held.connect(d.socket)
            big = MSG + b"x" * 50000
            req = harness.scan_request(big)
            held.sendall(req[:len(req) // 2])
            time.sleep(0.2)
            small = MSG + b"y" * 20000
            with self.http_conn(path) as s:
                s.sendall(head(b"POST /checkv2 HTTP/1.1", n=len(small)) + small)
                got = s.recv(4096)
            self.assertTrue(got.startswith(b"HTTP/1.1 503 busy"), got[:80])
            self.assertIn(b"alignd_requests_busy_total 1", self.metrics(path))
            held.sendall(req[len(req) // 2:])
            self.assertTrue(harness.recv_reply(held).startswith(b"ALIGND/1 200"))
            held.close()
            time.sleep(0.2)
            with self.http_conn(path) as s:
                s.sendall(head(b"POST /checkv2 HTTP/1.1", n=len(small)) + small)
                got = s.recv(4096)
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:80])
        finally:
            d.cleanup()


class HttpListenRules(unittest.TestCase):
    def start_fails(self, value, allow=False):
        d = harness.Daemon("--set", "http_listen=" + value,
                           *(["--set", "http_allow_remote=yes"] if allow else []))
        try:
            d.start(wait=False)
            rc = d.proc.wait(20)
            return rc, d.logtext()
        finally:
            shutil_rm(d)

    def test_non_loopback_refused(self):
        rc, log = self.start_fails("192.0.2.1:11333")
        self.assertNotEqual(rc, 0)
        self.assertIn("not a loopback address", log)

    def test_bad_values(self):
        for v in ("unix:relative", "localhost:80", "127.0.0.1:0", "127.0.0.1"):
            rc, log = self.start_fails(v)
            self.assertNotEqual(rc, 0, v)
            self.assertIn("http_listen", log)

    def test_tcp_loopback_works(self):
        port = mta.free_tcp_port()
        d = harness.Daemon("--set", "http_listen=127.0.0.1:%d" % port)
        try:
            d.start()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                time.sleep(0.2)
                self.assertIn(b"pong", s.recv(1000))
        finally:
            d.cleanup()


def shutil_rm(d):
    import shutil
    if d.proc and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()
    if d.proc:
        d.log.close()
    shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
