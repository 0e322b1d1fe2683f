"""listen_tcp over TLS with client certificates, on loopback: the real
daemon on the test DNS world, certificates made with the openssl command,
alignc as the client. Refusals (no client certificate, one from another
CA, plain text, a daemon certificate the client cannot trust), the
handshake deadline, a TLS client that never reads, configuration checks
and a certificate reload on SIGHUP. Every daemon is stopped by its test."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from dnsworld import World
from harness import ALIGND, Daemon, run_alignc
from tlscerts import TlsCerts

MB = 1024 * 1024
SLACK = 4 if os.environ.get("ALIGND_SANITIZED") or "asan" in os.environ.get("ALIGND", "") else 1
HANDSHAKE_MS = 1500
# SPF pass for example.com from 192.0.2.1 in the test DNS world
MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
           b"Subject: over tls\r\nMessage-ID: <tls@example.com>\r\n\r\nHello.\r\n")


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stat(d, name):
    r = d.request(b"STATS\r\n\r\n").decode()
    m = re.search(r"^%s: (\d+)\r?$" % re.escape(name), r, re.M)
    if not m:
        raise AssertionError("no %s in STATS:\n%s" % (name, r))
    return int(m.group(1))


class TlsClient:
    """A TLS client over a plain socket through memory BIOs, so that one
    thread may push ciphertext made in advance while the test reads."""

    def __init__(self, port, certs, cert=True, version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if version:
            ctx.minimum_version = ctx.maximum_version = version
        ctx.load_verify_locations(certs.ca)
        if cert:
            ctx.load_cert_chain(certs.client_cert, certs.client_key)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="127.0.0.1")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                self.inc.write(chunk)
        self.sock.sendall(self.out.read())

    def encrypt(self, data):
        self.obj.write(data)
        return self.out.read()

    def read_plain(self, done, timeout=30):
        """Decrypted bytes until done(bytes) holds (or the peer closed)."""
        got = bytearray()
        self.sock.settimeout(timeout)
        closed = False
        while not done(got) and not closed:
            try:
                while True:
                    b = self.obj.read(1 << 20)
                    if not b:           # close_notify
                        closed = True
                        break
                    got += b
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                break
            if done(got) or closed:
                break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                break
            self.inc.write(chunk)
        return bytes(got)

    def close(self):
        self.sock.close()


class TlsListener(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="alignd-tls-")
        cls.certs = TlsCerts(cls.tmp)
        cls.world = World(cache_dir=os.environ.get("ALIGND_BUILD_ROOT"))
        cls.world.__enter__()
        cls.port = free_tcp_port()
        env = None
        if "ASAN_OPTIONS" in os.environ:
            # freed chunks stay resident in ASan's quarantine (OpenSSL frees
            # and takes its record buffers often): keep it small, so that
            # the memory measured is the daemon's and not the tool's
            env = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=1"}
        try:
            cls.d = Daemon("--set", "listen_tcp=127.0.0.1:%d" % cls.port,
                           "--set", "tls_handshake_timeout=%dms" % HANDSHAKE_MS,
                           "--set", "spf_helo=no",
                           *cls.certs.daemon_args(), world=cls.world, env=env).start()
        except BaseException:
            cls.world.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.world.__exit__(None, None, None)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def alignc(self, *args, host="127.0.0.1", port=None, cert=True, ca=None):
        a = ["-s", "tls:%s:%d" % (host, port or self.port), "--tls-ca", ca or self.certs.ca]
        if cert:
            a += ["--tls-cert", self.certs.client_cert, "--tls-key", self.certs.client_key]
        return run_alignc(*(a + list(args)), timeout=30)

    def assert_serving(self):
        self.assertIsNone(self.d.proc.poll(), "daemon died:\n" + self.d.logtext()[-3000:])
        self.assertEqual(self.d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")
        p = self.alignc("--ping")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_scan_with_client_certificate(self):
        before = stat(self.d, "TLS-Handshakes")
        for host in ("127.0.0.1", "localhost"):
            p = run_alignc("-s", "tls:%s:%d" % (host, self.port), "--tls-ca", self.certs.ca,
                           "--tls-cert", self.certs.client_cert, "--tls-key", self.certs.client_key,
                           "--ip", "192.0.2.1", "--helo", "mail.example.com",
                           "--from", "alice@example.com", "-", input=MESSAGE, timeout=30)
            out = p.stdout.decode()
            self.assertRegex(out, r"spf=pass \(.*\) smtp\.mailfrom=example\.com;", p.stderr)
            self.assertIn("dmarc=pass", out)
            self.assertRegex(out, r"(?m)^Action: accept$")
        # SIGN goes the same way (no signing table here: the daemon refuses it)
        p = run_alignc("sign", "-s", "tls:127.0.0.1:%d" % self.port, "--tls-ca", self.certs.ca,
                       "--tls-cert", self.certs.client_cert, "--tls-key", self.certs.client_key,
                       "-", input=MESSAGE, timeout=30)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertGreaterEqual(stat(self.d, "TLS-Handshakes"), before + 3)
        self.assertIn("client certificate CN=mta1.test", self.d.logtext())

    def test_tls_1_2_and_1_3(self):
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            c = TlsClient(self.port, self.certs, version=v)
            c.sock.sendall(c.encrypt(b"PING\r\n\r\nQUIT\r\n\r\n"))
            got = c.read_plain(lambda b: b.endswith(b"BYE\r\n\r\n"), timeout=10)
            c.close()
            self.assertEqual(got, b"ALIGND/1 200 PONG\r\n\r\nALIGND/1 200 BYE\r\n\r\n", v)
        self.assertIn("TLSv1.2 ", self.d.logtext())

    def test_no_client_certificate_refused(self):
        before = stat(self.d, "TLS-Handshake-Failures")
        p = self.alignc("--ping", cert=False)
        self.assertEqual(p.returncode, 69, p.stdout)
        self.assertIn(b"certificate required", p.stderr)
        self.assertGreater(stat(self.d, "TLS-Handshake-Failures"), before)
        self.assertIn("TLS handshake failed: TLS: peer did not return a certificate",
                      self.d.logtext())
        self.assert_serving()

    def test_client_certificate_of_another_ca_refused(self):
        before = stat(self.d, "TLS-Handshake-Failures")
        p = run_alignc("-s", "tls:127.0.0.1:%d" % self.port, "--tls-ca", self.certs.ca,
                       "--tls-cert", self.certs.rogue_cert, "--tls-key", self.certs.rogue_key,
                       "--ip", "192.0.2.1", "--from", "alice@example.com", "-",
                       input=MESSAGE, timeout=30)
        self.assertEqual(p.returncode, 69, p.stdout)
        self.assertNotIn(b"Action:", p.stdout)
        self.assertGreater(stat(self.d, "TLS-Handshake-Failures"), before)
        self.assertIn("TLS handshake failed: client certificate: unable to get local issuer",
                      self.d.logtext())
        self.assertNotIn("CN=rogue.test", self.d.logtext())
        self.assert_serving()

    def test_client_does_not_trust_the_daemon(self):
        # the daemon's certificate is not from the CA the client trusts
        p = self.alignc("--ping", ca=self.certs.other_ca)
        self.assertEqual(p.returncode, 69)
        self.assertIn(b"the daemon's certificate:", p.stderr)
        # no CA given: the system's store does not know the test CA either
        p = run_alignc("-s", "tls:127.0.0.1:%d" % self.port, "--ping", timeout=30)
        self.assertEqual(p.returncode, 69)
        self.assertIn(b"the daemon's certificate:", p.stderr)
        self.assert_serving()

    def test_daemon_certificate_for_another_name(self):
        port = free_tcp_port()
        with Daemon("--set", "listen_tcp=127.0.0.1:%d" % port,
                    "--set", "tls_cert_file=" + self.certs.wrong_cert,
                    "--set", "tls_key_file=" + self.certs.wrong_key,
                    "--set", "tls_client_ca_file=" + self.certs.ca,
                    "--set", "dns_forwarders=127.0.0.1@9", "--set", "dns_timeout=200ms") as d:
            for host in ("127.0.0.1", "localhost"):
                p = self.alignc("--ping", host=host, port=port)
                self.assertEqual(p.returncode, 69, p.stdout)
                self.assertIn(b"the daemon's certificate: ", p.stderr)
                self.assertIn(b"mismatch", p.stderr)
            self.assertEqual(d.request(b"PING\r\n\r\n"), b"ALIGND/1 200 PONG\r\n\r\n")

    def test_plain_text_client_refused(self):
        before = stat(self.d, "TLS-Handshake-Failures")
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"PING\r\n\r\n")
            got = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        self.assertNotIn(b"ALIGND", got)
        p = run_alignc("-s", "tcp:127.0.0.1:%d" % self.port, "--ping", "--timeout", "5")
        self.assertEqual(p.returncode, 69)
        self.assertGreaterEqual(stat(self.d, "TLS-Handshake-Failures"), before + 2)
        self.assertIn("TLS handshake failed: TLS: wrong version number", self.d.logtext())
        self.assert_serving()

    def test_handshake_slowloris_ended(self):
        """Clients that start a handshake and trickle it, or send nothing:
        closed at tls_handshake_timeout, however slowly bytes come."""
        before = stat(self.d, "TLS-Handshake-Failures")
        hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + b"\x00" * 64
        socks = [socket.create_connection(("127.0.0.1", self.port), timeout=10) for _ in range(20)]
        t0 = time.monotonic()
        closed = {}
        i = 0
        while len(closed) < len(socks) and time.monotonic() - t0 < 10:
            for k, s in enumerate(socks):
                if k in closed or k % 2 == 0:
                    continue            # even ones send nothing at all
                try:
                    s.send(hello[i:i + 1])
                except OSError:
                    closed[k] = time.monotonic() - t0
            i = min(i + 1, len(hello) - 1)
            for k, s in enumerate(socks):
                if k in closed:
                    continue
                s.setblocking(False)
                try:
                    if s.recv(4096) == b"":
                        closed[k] = time.monotonic() - t0
                except BlockingIOError:
                    pass
                except OSError:
                    closed[k] = time.monotonic() - t0
                s.setblocking(True)
            time.sleep(0.1)
        for s in socks:
            s.close()
        self.assertEqual(len(closed), len(socks), "not all closed within 10 s: %r" % closed)
        sys.stderr.write("  [tls-slowloris] closed after %.2f..%.2f s\n"
                         % (min(closed.values()), max(closed.values())))
        self.assertGreater(min(closed.values()), HANDSHAKE_MS / 1000 - 0.3)
        self.assertLess(max(closed.values()), HANDSHAKE_MS / 1000 + 3)
        self.assertIn("TLS handshake not finished within %dms" % HANDSHAKE_MS, self.d.logtext())
        self.assertGreaterEqual(stat(self.d, "TLS-Handshake-Failures"), before + len(socks))
        self.assert_serving()

    def test_tls_client_that_never_reads_stays_bounded(self):
        """2,000,000 PINGs over TLS (16 MB, more than the sockets' buffers
        hold; 42 MB of replies) from a client that reads nothing: reading
        pauses on the write backlog as without TLS, so the daemon stops
        reading and its memory grows by a bounded amount; every reply
        arrives, in order, once the client reads."""
        n = 2000000
        base = rss(self.d.proc.pid)
        c = TlsClient(self.port, self.certs)
        data = c.encrypt(b"PING\r\n\r\n" * n)
        sent = [0]

        def writer():
            try:
                while sent[0] < len(data):
                    sent[0] += c.sock.send(data[sent[0]:sent[0] + 65536])
            except OSError:
                pass

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        last, still = -1, 0
        while still < 10:
            time.sleep(0.1)
            still = still + 1 if sent[0] == last else 0
            last = sent[0]
        grown = rss(self.d.proc.pid) - base
        sys.stderr.write("  [tls-no-reader] sent_bytes=%d of %d rss_growth_mb=%.1f\n"
                         % (sent[0], len(data), grown / MB))
        self.assertLess(sent[0], len(data), "the daemon never stopped reading")
        self.assertLess(grown, 16 * MB * SLACK, "VmRSS grew %d MB" % (grown // MB))
        self.assert_serving()
        one = b"ALIGND/1 200 PONG\r\n\r\n"
        got = c.read_plain(lambda b: len(b) >= n * len(one), timeout=60)
        w.join(30)
        c.close()
        self.assertEqual(len(got), n * len(one))
        self.assertTrue(got == one * n, "replies lost or out of order")


class TlsConfig(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="alignd-tlscfg-")
        self.certs = TlsCerts(self.tmp)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, *sets):
        args = [ALIGND, "--check-config"]
        for s in sets:
            args += ["--set", s]
        return subprocess.run(args, capture_output=True, timeout=20)

    def test_check_config(self):
        c = self.certs
        ok = self.check("tls_cert_file=" + c.server_cert, "tls_key_file=" + c.server_key,
                        "tls_client_ca_file=" + c.ca)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        cases = [
            (("tls_cert_file=" + c.server_cert,), b"tls_cert_file and tls_key_file go together"),
            (("tls_cert_file=" + c.server_cert, "tls_key_file=" + c.client_key),
             b"tls_key_file " + c.client_key.encode() + b": key values mismatch"),
            (("tls_cert_file=" + c.server_cert, "tls_key_file=" + self.tmp + "/none.key"),
             b"No such file or directory"),
            (("tls_cert_file=" + c.server_key, "tls_key_file=" + c.server_key),
             b"tls_cert_file " + c.server_key.encode() + b": no start line"),
            (("tls_cert_file=" + c.server_cert, "tls_key_file=" + c.server_key,
              "tls_client_ca_file=" + c.server_key), b"no PEM certificate in it"),
            (("tls_client_ca_file=" + c.ca,), b"tls_client_ca_file needs tls_cert_file"),
            (("tls_cert_file=" + c.server_cert, "tls_key_file=" + c.server_key,
              "tls_ciphers=NO-SUCH-CIPHER"), b"tls_ciphers"),
            (("tls_min_version=1.1",), b"tls_min_version"),
        ]
        for sets, want in cases:
            p = self.check(*sets)
            self.assertEqual(p.returncode, 1, sets)
            self.assertIn(want, p.stderr, sets)

    def test_client_options_checked(self):
        p = run_alignc("-s", "tcp:127.0.0.1:1", "--tls-ca", self.certs.ca, "--ping")
        self.assertEqual(p.returncode, 64)
        self.assertIn(b"need a tls:HOST:PORT", p.stderr)
        p = run_alignc("-s", "tls:127.0.0.1:1", "--tls-cert", self.certs.client_cert, "--ping")
        self.assertEqual(p.returncode, 64)
        self.assertIn(b"--tls-cert and --tls-key go together", p.stderr)
        p = run_alignc("-s", "tls:127.0.0.1:1", "--tls-ca", self.tmp + "/none.pem", "--ping")
        self.assertEqual(p.returncode, 64)
        self.assertIn(b"--tls-ca", p.stderr)

    def test_reload_reads_the_certificate_again(self):
        """SIGHUP: new connections get the certificate now in the file; a
        file that no longer loads keeps the running configuration."""
        c = self.certs
        cert, key = os.path.join(self.tmp, "live.pem"), os.path.join(self.tmp, "live.key")
        shutil.copy(c.server_cert, cert)
        shutil.copy(c.server_key, key)
        port = free_tcp_port()
        with Daemon("--set", "listen_tcp=127.0.0.1:%d" % port, "--set", "tls_cert_file=" + cert,
                    "--set", "tls_key_file=" + key, "--set", "tls_client_ca_file=" + c.ca,
                    "--set", "dns_forwarders=127.0.0.1@9", "--set", "dns_timeout=200ms") as d:
            args = ["-s", "tls:127.0.0.1:%d" % port, "--tls-ca", c.ca, "--tls-cert",
                    c.client_cert, "--tls-key", c.client_key, "--ping"]
            self.assertEqual(run_alignc(*args).returncode, 0)
            # a broken pair: the reload fails, the old certificate stays
            shutil.copy(c.wrong_cert, cert)
            d.signal(signal.SIGHUP)
            self.wait_log(d, "reload failed")
            self.assertEqual(run_alignc(*args).returncode, 0)
            shutil.copy(c.wrong_key, key)
            d.signal(signal.SIGHUP)
            self.wait_log(d, "TLS certificate, key and client CA read again")
            p = run_alignc(*args)
            self.assertEqual(p.returncode, 69)
            self.assertIn(b"mismatch", p.stderr)

    def wait_log(self, d, text, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in d.logtext():
                return
            time.sleep(0.05)
        raise AssertionError("no %r in the log:\n%s" % (text, d.logtext()[-3000:]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
