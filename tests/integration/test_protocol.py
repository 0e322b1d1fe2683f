"""The daemon's protocol, framing, limits and bad input, against the real
alignd on a temporary socket (issue: daemon, line protocol, CLI client)."""
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

import msgpack

from harness import (Daemon, RecvBuffer, SIMPLE_MESSAGE, field, fields, recv_reply,
                     run_alignc, scan_request)


class ProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--set", "idle_timeout=2s").start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_ping_with_netcat(self):
        out = subprocess.run(["nc", "-N", "-U", self.d.socket], input=b"PING\r\n\r\n",
                             capture_output=True, timeout=10)
        self.assertEqual(out.stdout, b"ALIGND/1 200 PONG\r\n\r\n")

    def test_ping_lf_only(self):
        self.assertEqual(self.d.request(b"PING\n\n"), b"ALIGND/1 200 PONG\r\n\r\n")

    def test_scan_text(self):
        r = self.d.request(scan_request(SIMPLE_MESSAGE, ip="192.0.2.1", helo="mail.example.org",
                                        mail_from="alice@example.org", rcpt=["bob@example.net"],
                                        queue_id="Q1"))
        status, fl = fields(r)
        self.assertEqual(status, "ALIGND/1 200 OK")
        names = [n for n, _ in fl]
        self.assertIn("Action", names)
        self.assertIn("Score", names)
        self.assertIn("Authentication-Results", names)
        self.assertEqual(field(r, "Queue-Id"), "Q1")
        self.assertIn(field(r, "Action"), ("accept", "quarantine", "reject", "tempfail"))
        self.assertTrue(field(r, "Authentication-Results").startswith("mx.test.example;"))

    def test_scan_msgpack(self):
        r = self.d.request(scan_request(SIMPLE_MESSAGE, ip="192.0.2.1", fmt="msgpack", queue_id="M1"))
        head, _, body = r.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"ALIGND/1 200 OK\r\n"))
        self.assertIn(b"Content-Type: application/msgpack", head)
        obj = msgpack.unpackb(body, raw=False)
        self.assertEqual(obj["status"], 200)
        self.assertEqual(obj["queue_id"], "M1")
        self.assertIn(obj["action"], ("accept", "quarantine", "reject", "tempfail"))
        self.assertIsInstance(obj["symbols"], list)
        self.assertTrue(obj["authentication_results"].startswith("mx.test.example;"))

    def test_100_pipelined_scans_in_order(self):
        data = b"".join(scan_request(SIMPLE_MESSAGE + b"n=%d\r\n" % i, ip="192.0.2.1",
                                     queue_id="P%03d" % i) for i in range(100))
        with self.d.connect() as s:
            s.sendall(data)
            rb = RecvBuffer(s)
            for i in range(100):
                r = rb.reply()
                self.assertEqual(field(r, "Queue-Id"), "P%03d" % i)

    def test_pipeline_mixed_commands_in_order(self):
        data = (scan_request(SIMPLE_MESSAGE, queue_id="A") + b"PING\r\n\r\n" +
                b"FROB\r\n\r\n" + scan_request(SIMPLE_MESSAGE, queue_id="B") +
                b"STATS\r\n\r\n" + b"QUIT\r\n\r\n")
        with self.d.connect() as s:
            s.sendall(data)
            rb = RecvBuffer(s)
            self.assertEqual(field(rb.reply(), "Queue-Id"), "A")
            self.assertEqual(rb.reply(), b"ALIGND/1 200 PONG\r\n\r\n")
            self.assertTrue(rb.reply().startswith(b"ALIGND/1 405 "))
            self.assertEqual(field(rb.reply(), "Queue-Id"), "B")
            st = rb.reply()
            self.assertTrue(st.startswith(b"ALIGND/1 200 OK"))
            self.assertIsNotNone(field(st, "Scans-Total"))
            self.assertEqual(rb.reply(), b"ALIGND/1 200 BYE\r\n\r\n")
            self.assertTrue(rb.closed())

    def test_persistent_connection_many_requests(self):
        with self.d.connect() as s:
            rb = RecvBuffer(s)
            for i in range(20):
                s.sendall(scan_request(SIMPLE_MESSAGE, queue_id="K%d" % i))
                self.assertEqual(field(rb.reply(), "Queue-Id"), "K%d" % i)

    def test_byte_at_a_time(self):
        data = scan_request(SIMPLE_MESSAGE, ip="198.51.100.9", queue_id="slow")
        with self.d.connect() as s:
            for i in range(len(data)):
                s.send(data[i:i + 1])
            self.assertEqual(field(recv_reply(s), "Queue-Id"), "slow")

    def test_errors_that_keep_the_connection(self):
        cases = [
            (b"FROB\r\n\r\n", 405),
            (b"PING ALIGND/9\r\n\r\n", 400),
            (b"SCAN\r\nthis line has no colon\r\nContent-Length: 2\r\n\r\nab", 400),
            (b"SCAN\r\nHelo: a\x00b\r\nContent-Length: 2\r\n\r\nab", 400),
            (b"SCAN\r\nClient-IP: not-an-ip\r\nContent-Length: 2\r\n\r\nab", 400),
            (b"SCAN\r\nFormat: xml\r\nContent-Length: 2\r\n\r\nab", 400),
        ]
        with self.d.connect() as s:
            rb = RecvBuffer(s)
            for data, code in cases:
                s.sendall(data)
                r = rb.reply()
                self.assertTrue(r.startswith(b"ALIGND/1 %d " % code), (data, r))
                # the connection stays usable
                s.sendall(b"PING\r\n\r\n")
                self.assertEqual(rb.reply(), b"ALIGND/1 200 PONG\r\n\r\n")

    def test_fatal_errors_close(self):
        cases = [
            (b"SCAN\r\nHelo: x\r\n\r\nbody", 411),
            (b"SCAN\r\nContent-Length: 12abc\r\n\r\n", 400),
            (b"SCAN\r\nContent-Length: -5\r\n\r\n", 400),
            (b"SCAN\r\nContent-Length: 99999999999\r\n\r\n", 413),
            (b"SCAN\r\nX-Long: " + b"a" * 5000 + b"\r\n\r\n", 414),
            (b"SCAN" + b"a" * 5000, 414),
        ]
        for data, code in cases:
            with self.d.connect() as s:
                s.sendall(data)
                rb = RecvBuffer(s)
                r = rb.reply()
                self.assertTrue(r.startswith(b"ALIGND/1 %d " % code), (data[:40], r))
                self.assertTrue(rb.closed(), data[:40])

    def test_header_block_too_large(self):
        data = b"SCAN\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
        with self.d.connect() as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            rb = RecvBuffer(s)
            self.assertTrue(rb.reply().startswith(b"ALIGND/1 431 "))
            self.assertTrue(rb.closed())

    def test_too_many_fields(self):
        data = b"SCAN\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n"
        with self.d.connect() as s:
            s.sendall(data)
            self.assertTrue(recv_reply(s).startswith(b"ALIGND/1 431 "))

    def test_disconnect_mid_body_does_not_disturb_others(self):
        other = self.d.connect()
        orb = RecvBuffer(other)
        for _ in range(5):
            s = self.d.connect()
            s.sendall(b"SCAN\r\nContent-Length: 1000\r\n\r\n" + b"x" * 300)
            s.close()
        other.sendall(scan_request(SIMPLE_MESSAGE, queue_id="after"))
        self.assertEqual(field(orb.reply(), "Queue-Id"), "after")
        other.close()
        time.sleep(0.2)
        self.assertIn("client disconnected in the middle of a message", self.d.logtext())

    def test_stats_counts(self):
        with self.d.connect() as s:
            rb = RecvBuffer(s)
            s.sendall(b"STATS\r\n\r\n")
            before = int(field(rb.reply(), "Scans-Total"))
            s.sendall(scan_request(SIMPLE_MESSAGE))
            rb.reply()
            s.sendall(b"STATS\r\n\r\n")
            st = rb.reply()
            self.assertEqual(int(field(st, "Scans-Total")), before + 1)
            for name in ("Connections-Current", "Errors-4xx", "Uptime-Seconds", "Workers"):
                self.assertIsNotNone(field(st, name), name)


class LimitsTest(unittest.TestCase):
    def test_message_size_limit(self):
        with Daemon("--set", "max_message_size=2048") as d:
            ok = d.request(scan_request(b"Subject: x\r\n\r\n" + b"a" * 1000))
            self.assertTrue(ok.startswith(b"ALIGND/1 200 OK"))
            with d.connect() as s:
                try:
                    s.sendall(scan_request(b"Subject: x\r\n\r\n" + b"a" * 5000))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                rb = RecvBuffer(s)
                self.assertTrue(rb.reply().startswith(b"ALIGND/1 413 "))
                self.assertTrue(rb.closed())
            self.assertEqual(d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")

    def test_max_connections(self):
        with Daemon("--set", "max_connections=3") as d:
            time.sleep(0.3)  # let the readiness probe's connection close
            keep = [d.connect() for _ in range(3)]
            for s in keep:
                s.sendall(b"PING\r\n\r\n")
                self.assertEqual(recv_reply(s), b"ALIGND/1 200 PONG\r\n\r\n")
            # all three idle: the oldest is closed to admit a fourth
            extra = d.connect()
            extra.sendall(b"PING\r\n\r\n")
            self.assertEqual(recv_reply(extra), b"ALIGND/1 200 PONG\r\n\r\n")
            rb = RecvBuffer(keep[0])
            self.assertTrue(rb.reply().startswith(b"ALIGND/1 421 idle connection closed"))
            self.assertTrue(rb.closed())
            # the others are undisturbed
            keep[1].sendall(b"PING\r\n\r\n")
            self.assertEqual(recv_reply(keep[1]), b"ALIGND/1 200 PONG\r\n\r\n")
            # with every connection inside a request, a newcomer gets 421
            busy = keep[1:] + [extra]
            for s in busy:
                s.sendall(b"SCAN ALIGND/1\r\nContent-Length: 10\r\n\r\nab")
            time.sleep(0.1)
            more = d.connect()
            rb = RecvBuffer(more)
            self.assertTrue(rb.reply().startswith(b"ALIGND/1 421 too many connections"))
            self.assertTrue(rb.closed())
            for s in keep + [extra, more]:
                s.close()
            time.sleep(0.2)
            self.assertEqual(d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")

    def test_idle_timeout(self):
        with Daemon("--set", "idle_timeout=300ms") as d:
            with d.connect() as s:
                t0 = time.monotonic()
                rb = RecvBuffer(s)
                self.assertTrue(rb.reply().startswith(b"ALIGND/1 408 idle timeout"))
                self.assertTrue(rb.closed())
                self.assertLess(time.monotonic() - t0, 3.0)

    def test_request_timeout_slowloris(self):
        with Daemon("--set", "request_timeout=600ms") as d:
            slow = d.connect()
            t0 = time.monotonic()
            closed_at = None
            head = b"SCAN\r\nHelo: " + b"x" * 100
            srb = RecvBuffer(slow)
            for i in range(len(head)):
                try:
                    slow.send(head[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.monotonic()
                    break
                # another client is served promptly meanwhile
                if i % 20 == 0:
                    t1 = time.monotonic()
                    self.assertEqual(d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")
                    self.assertLess(time.monotonic() - t1, 0.5)
                time.sleep(0.02)
            r = srb.reply()
            self.assertTrue(r.startswith(b"ALIGND/1 408 request timeout"), r)
            elapsed = (closed_at or time.monotonic()) - t0
            self.assertLess(elapsed, 2.5)
            slow.close()

    def test_body_never_completes(self):
        with Daemon("--set", "request_timeout=500ms") as d:
            with d.connect() as s:
                s.sendall(b"SCAN\r\nContent-Length: 100\r\n\r\nonly a little")
                rb = RecvBuffer(s)
                self.assertTrue(rb.reply().startswith(b"ALIGND/1 408 "))
                self.assertTrue(rb.closed())


class LifecycleTest(unittest.TestCase):
    def test_socket_mode_and_stale_socket(self):
        d = Daemon("--set", "socket_mode=0600")
        try:
            # a stale socket file from a dead instance is replaced
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(d.socket)
            stale.close()
            d.start()
            self.assertEqual(stat.S_IMODE(os.stat(d.socket).st_mode), 0o600)
            self.assertIn("removed stale socket", d.logtext())
            # a second instance on the same socket refuses to start
            p = subprocess.run([os.environ["ALIGND"], "--socket", d.socket, "--set", "history=off"], capture_output=True,
                               timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"another instance is listening", p.stderr)
            self.assertEqual(d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")
        finally:
            d.cleanup()

    def test_refuses_non_socket_path(self):
        d = Daemon()
        try:
            with open(d.socket, "w") as f:
                f.write("precious")
            p = subprocess.run([os.environ["ALIGND"], "--socket", d.socket, "--set", "history=off"], capture_output=True,
                               timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"not a socket", p.stderr)
            with open(d.socket) as f:
                self.assertEqual(f.read(), "precious")
        finally:
            d.cleanup()

    def test_json_log_lines(self):
        """log_format = json: every line the daemon writes is one JSON
        object; a scan's fields are typed, hostile text stays inside its
        string, and the text format has the same scan fields."""
        hostile = 'Q"\\{x}'
        lines = {}
        for fmt in ("json", "text"):
            d = Daemon("--set", "log_format=" + fmt).start()
            try:
                r = d.request(scan_request(SIMPLE_MESSAGE, ip="192.0.2.1", helo='h"lo\\',
                                           mail_from="alice@example.org", queue_id=hostile))
                self.assertTrue(r.startswith(b"ALIGND/1 200 OK"), r[:80])
                d.signal(signal.SIGTERM)
                self.assertEqual(d.proc.wait(10), 0)
                lines[fmt] = d.logtext().splitlines()
            finally:
                d.cleanup()
        objs = [json.loads(l) for l in lines["json"]]   # each line parses on its own
        self.assertGreater(len(objs), 3)
        for o in objs:
            self.assertRegex(o["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(o["level"], ("error", "warning", "info", "debug"))
            self.assertTrue("msg" in o or "event" in o, o)
        scans = [o for o in objs if o.get("event") == "scan"]
        self.assertEqual(len(scans), 1, lines["json"])
        sc = scans[0]
        self.assertEqual(sc["ip"], "192.0.2.1")
        self.assertEqual(sc["mfrom"], "example.org")
        self.assertIsInstance(sc["size"], int)
        self.assertIsInstance(sc["score"], float)
        self.assertIsInstance(sc["ms"], int)
        for k in ("qid", "helo", "spf", "dkim", "dmarc", "from", "action"):
            self.assertIsInstance(sc[k], str, k)
        self.assertIn('"', sc["helo"])
        self.assertTrue(any("listening on" in o.get("msg", "") for o in objs))
        text = [l for l in lines["text"] if " info: scan qid=" in l]
        self.assertEqual(len(text), 1, lines["text"])
        self.assertRegex(text[0], r" ms=\d+$")
        for k in ("ip", "mfrom", "spf", "dkim", "dmarc", "from", "size", "action", "score"):
            self.assertIn(" %s=%s" % (k, sc[k] if not isinstance(sc[k], float) else "%.2f" % sc[k]),
                          text[0])

    def test_sigterm_exits_zero_and_removes_socket(self):
        d = Daemon().start()
        try:
            idle = d.connect()
            d.signal(signal.SIGTERM)
            self.assertEqual(d.proc.wait(10), 0)
            self.assertFalse(os.path.exists(d.socket))
            idle.close()
        finally:
            d.cleanup()

    def test_sigterm_finishes_received_requests(self):
        d = Daemon().start()
        try:
            s = d.connect()
            data = b"".join(scan_request(SIMPLE_MESSAGE, queue_id="T%d" % i) for i in range(30))
            s.sendall(data)
            rb = RecvBuffer(s)
            # once the first reply is back, the daemon holds all 30 requests
            self.assertEqual(field(rb.reply(), "Queue-Id"), "T0")
            d.signal(signal.SIGTERM)
            for i in range(1, 30):
                self.assertEqual(field(rb.reply(), "Queue-Id"), "T%d" % i)
            self.assertTrue(rb.closed())
            self.assertEqual(d.proc.wait(15), 0)
            # no new connections after SIGTERM
            self.assertFalse(os.path.exists(d.socket))
        finally:
            d.cleanup()

    def test_check_config(self):
        d = Daemon(config="max_message_size = huge\n")
        try:
            p = subprocess.run([os.environ["ALIGND"], "--check-config", "--config", d.config_path],
                               capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"alignd.conf:1: max_message_size", p.stderr)
            with open(d.config_path, "w") as f:
                f.write("max_message_size = 10M\n")
            p = subprocess.run([os.environ["ALIGND"], "--check-config", "--config", d.config_path],
                               capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0, p.stderr)
        finally:
            d.cleanup()


class ReloadTest(unittest.TestCase):
    def test_sighup(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="alignd-reload-")
        conf = os.path.join(tmp, "alignd.conf")
        with open(conf, "w") as f:
            f.write("authserv_id = first.example\n")
        sock = os.path.join(tmp, "a.sock")
        log = open(os.path.join(tmp, "log"), "wb")
        p = subprocess.Popen([os.environ["ALIGND"], "--config", conf, "--socket", sock,
                              "--set", "history=off"],
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            rb = RecvBuffer(s)
            s.sendall(scan_request(SIMPLE_MESSAGE))
            self.assertTrue(field(rb.reply(), "Authentication-Results").startswith("first.example;"))
            with open(conf, "w") as f:
                f.write("authserv_id = second.example\n")
            p.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            # same connection, new configuration
            s.sendall(scan_request(SIMPLE_MESSAGE))
            self.assertTrue(field(rb.reply(), "Authentication-Results").startswith("second.example;"))
            s.sendall(b"STATS\r\n\r\n")
            self.assertEqual(field(rb.reply(), "Config-Reloads"), "1")
            # a broken file keeps the running configuration
            with open(conf, "w") as f:
                f.write("authserv_id = third.example\nbogus_key = 1\n")
            p.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            s.sendall(scan_request(SIMPLE_MESSAGE))
            self.assertTrue(field(rb.reply(), "Authentication-Results").startswith("second.example;"))
            s.close()
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            log.close()
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


class AlignCTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()
        cls.msgfile = os.path.join(cls.d.dir, "m.eml")
        with open(cls.msgfile, "wb") as f:
            f.write(b"Return-Path: <bounce@example.org>\r\n"
                    b"Received: from mail.example.org (mail.example.org [192.0.2.25])\r\n"
                    b"\tby mx.example.net with ESMTP id 1; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                    + SIMPLE_MESSAGE)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_scan_file(self):
        p = run_alignc("-s", self.d.socket, "--ip", "192.0.2.1", "--from", "a@example.org",
                       self.msgfile)
        self.assertIn(p.returncode, (0, 1, 2, 3), p.stderr)
        self.assertIn(b"Action: ", p.stdout)
        self.assertIn(b"Authentication-Results: mx.test.example;", p.stdout)

    def test_envelope_from_headers(self):
        p = run_alignc("-s", self.d.socket, "--explain", self.msgfile)
        self.assertIn(b"client 192.0.2.25, HELO mail.example.org taken from the topmost Received",
                      p.stderr)
        self.assertIn(b"MAIL FROM <bounce@example.org> taken from Return-Path", p.stderr)
        self.assertIn(b"ip=192.0.2.25 helo=mail.example.org mail-from=<bounce@example.org>",
                      p.stdout)

    def test_json(self):
        p = run_alignc("-s", self.d.socket, "--json", self.msgfile, "-", input=SIMPLE_MESSAGE)
        lines = p.stdout.decode().strip().split("\n")
        self.assertEqual(len(lines), 2)
        for line in lines:
            o = json.loads(line)
            self.assertEqual(o["status"], 200)
            self.assertIn(o["action"], ("accept", "quarantine", "reject", "tempfail"))
            self.assertIsInstance(o["symbols"], list)
        self.assertEqual(json.loads(lines[1])["file"], "-")

    def test_stdin_and_ping_stats(self):
        p = run_alignc("-s", self.d.socket, input=SIMPLE_MESSAGE)
        self.assertIn(b"Action: ", p.stdout)
        p = run_alignc("-s", self.d.socket, "--ping")
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"200 PONG", p.stdout)
        p = run_alignc("-s", self.d.socket, "--stats", "--json")
        self.assertEqual(p.returncode, 0)
        self.assertIn("Scans-Total", json.loads(p.stdout))

    def test_unreachable(self):
        p = run_alignc("-s", os.path.join(self.d.dir, "nobody.sock"), input=SIMPLE_MESSAGE)
        self.assertEqual(p.returncode, 69)
        self.assertIn(b"cannot connect", p.stderr)

    def test_missing_file_and_usage(self):
        p = run_alignc("-s", self.d.socket, "/nonexistent/message")
        self.assertEqual(p.returncode, 66)
        p = run_alignc("--no-such-option")
        self.assertEqual(p.returncode, 64)
        p = run_alignc("--ip", "999.0.0.1")
        self.assertEqual(p.returncode, 64)

    def test_env_socket(self):
        p = run_alignc("--ping", env={"ALIGND_SOCKET": self.d.socket})
        self.assertEqual(p.returncode, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
