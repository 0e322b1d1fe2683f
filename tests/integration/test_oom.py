"""Allocation failures inside the real daemon: a failing malloc fails the
one request, never the daemon, and never turns a spoof into an accept.

The daemon runs with tests/lib/failalloc.c preloaded. While the control
file exists, every Nth allocation made by the daemon's own code returns
NULL; for several N, a mixed workload (PING, STATS, SCAN of a signed
message and of a direct spoof of a p=reject domain, SIGN, HTTP /metrics
and /checkv2) runs against it. Every request must be answered (any status)
or its connection closed within the scan deadline: a lost callback shows
as a hang. The spoof must never come back as accept. After the control
file is removed the same daemon must give the right verdicts again.

Runs in the normal build only: a sanitizer runtime owns malloc itself."""
import base64
import os
import shutil
import socket
import sys
import tempfile
import time
import unittest

from dnsworld import World
from harness import Daemon, RecvBuffer, field, scan_request
from test_sign_daemon import sign_request, signatures as signature_list

SHIM = os.path.join(os.environ.get("ALIGND_BUILD_ROOT", ""), "tests", "lib", "libfailalloc.so")
ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
EVERY = tuple(int(n) for n in os.environ.get("OOM_EVERY", "2 3 5 7 11 17 29 53 101 211").split())
DEADLINE = float(os.environ.get("OOM_DEADLINE", "20"))   # seconds a request may take: scan_timeout is 3s


def message(frm, subject):
    return ("From: %s\r\nTo: bob@example.net\r\nSubject: %s\r\n"
            "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <%s@example.com>\r\n\r\nHello Bob,\r\n\r\n"
            "the quarterly figures are attached.\r\n" % (frm, subject, subject)).encode()


def exchange(connect, data):
    """Sends data, returns the first reply (bytes), or None if the daemon
    closed the connection without one. Raises on a hang."""
    s = connect()
    try:
        s.settimeout(DEADLINE)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return RecvBuffer(s).reply()
        except ConnectionError:
            return None
    finally:
        s.close()


def http_exchange(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
        return got
    finally:
        s.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutOfMemory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SHIM):
            raise RuntimeError("%s was not built" % SHIM)
        cls.world = World(cache_dir=os.environ.get("ALIGND_BUILD_ROOT"))
        cls.world.__enter__()
        cls.dir = tempfile.mkdtemp(prefix="alignd-oom-")
        keys = {(k["domain"], k["selector"]): k for k in cls.world.info["dkim"]}
        lines = []
        for sel in ("s2048", "ed"):
            k = keys[("example.com", sel)]
            with open(os.path.join(cls.world.world_dir, k["private_key"]), "rb") as f:
                data = f.read()
            if k["alg"] == "ed25519":
                der = ED25519_PKCS8 + base64.b64decode(data.strip())
                data = (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) +
                        b"-----END PRIVATE KEY-----\n")
            path = os.path.join(cls.dir, "%s.pem" % sel)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
            lines.append("example.com %s %s" % (sel, path))
        cls.table = os.path.join(cls.dir, "signing.table")
        with open(cls.table, "w") as f:
            f.write("\n".join(lines) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.world.__exit__(None, None, None)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def daemon(self, every):
        self.ctl = os.path.join(self.dir, "fail-%d" % every)
        self.count = os.path.join(self.dir, "count-%d" % every)
        self.port = free_port()
        env = {"LD_PRELOAD": SHIM, "FAILALLOC_CTL": self.ctl,
               "FAILALLOC_EVERY": str(every), "FAILALLOC_COUNT": self.count}
        # both SPF engines: the guarded libspf2 one for every other N
        conf = ("dkim_sign_table = %s\nscan_timeout = 3s\nhttp_listen = 127.0.0.1:%d\n"
                "spf_engine = %s\n"
                % (self.table, self.port, "libspf2" if EVERY.index(every) % 2 else "native"))
        return Daemon(config=conf, world=self.world, env=env)

    def workload(self, d, signed, spoof, fresh):
        scan = lambda m, **kw: scan_request(m, ip="192.0.2.10", helo="mail.example.com", **kw)
        reqs = [
            ("ping", b"PING\r\n\r\n"),
            ("stats", b"STATS\r\n\r\n"),
            ("signed", scan(signed, mail_from="alice@example.com", rcpt=["bob@example.net"])),
            ("spoof", scan_request(spoof, ip="203.0.113.9", helo="mx.attacker.test",
                                   mail_from="ceo@attacker.test", rcpt=["bob@example.net"])),
            ("sign", sign_request(fresh)),
            ("unsigned", scan(fresh, mail_from="alice@example.com")),
        ]
        answers = {}
        for name, data in reqs * 2:
            try:
                rep = exchange(d.connect, data)
            except TimeoutError:
                self.fail("%s: no reply and no close within %ds:\n%s"
                          % (name, DEADLINE, d.logtext()[-2000:]))
            answers.setdefault(name, []).append(rep)
        for path in (b"/metrics", b"/stat"):
            http_exchange(self.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        http_exchange(self.port, b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIP: 203.0.113.9\r\n"
                      b"From: ceo@attacker.test\r\nContent-Length: %d\r\n\r\n" % len(spoof)
                      + spoof)
        return answers

    def test_allocation_failures(self):
        injected = 0
        for every in EVERY:
            with self.subTest(every=every):
                with self.daemon(every) as d:
                    fresh = message("Alice <alice@example.com>", "oom-%d" % every)
                    rep = d.request(sign_request(fresh))
                    self.assertTrue(rep.startswith(b"ALIGND/1 200"), rep)
                    signed = b"".join(signature_list(rep)) + fresh
                    spoof = message("CEO <ceo@example.com>", "wire-%d" % every)
                    open(self.ctl, "w").close()
                    answers = self.workload(d, signed, spoof, fresh)
                    os.unlink(self.ctl)
                    time.sleep(0.1)
                    self.assertIsNone(d.proc.poll(), "daemon died (N=%d):\n%s"
                                      % (every, d.logtext()[-3000:]))
                    for rep in answers["spoof"]:
                        if rep and rep.startswith(b"ALIGND/1 200"):
                            self.assertNotEqual(field(rep, "Action"), "accept",
                                                "spoof accepted under N=%d:\n%r" % (every, rep))
                    # memory is back: the same daemon is right again
                    self.assertTrue(d.request(b"PING\r\n\r\n").startswith(b"ALIGND/1 200 PONG"))
                    rep = d.request(scan_request(signed, ip="192.0.2.10", helo="mail.example.com",
                                                 mail_from="alice@example.com"))
                    ar = field(rep, "Authentication-Results") or ""
                    self.assertIn("dkim=pass", ar, rep)
                    self.assertIn("dmarc=pass", ar, rep)
                    rep = d.request(scan_request(spoof, ip="203.0.113.9", helo="mx.attacker.test",
                                                 mail_from="ceo@attacker.test"))
                    self.assertEqual(field(rep, "Action"), "reject", rep)
                    with open(self.count) as f:
                        n = int(f.read().strip() or 0)
                    self.assertGreater(n, 0, "no allocation failed under N=%d" % every)
                    injected += n
                    statuses = sorted({(r or b"closed").split(b"\r\n", 1)[0].decode(errors="replace")
                                       + (" " + field(r, "Action") if r and field(r, "Action") else "")
                                       for v in answers.values() for r in v})
                    sys.stdout.write("N=%d: %d allocations failed; replies seen: %s\n"
                                     % (every, n, "; ".join(statuses)))
        sys.stdout.write("%d allocations failed in all, the daemon stayed up\n" % injected)


if __name__ == "__main__":
    unittest.main(verbosity=2)
