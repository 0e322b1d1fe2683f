"""alignd-filter on its own, as pipe(8) runs it, with a recording sendmail:
exit statuses, the re-injection command line, header handling, LF line
ends, and streaming of a large message in little memory."""
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import unittest

import mta
import scenarios as sc
from tlscerts import TlsCerts

FAKE_SENDMAIL = textwrap.dedent("""\
    #!/usr/bin/python3
    import os, sys
    out = os.environ["FAKE_SENDMAIL_OUT"]
    with open(out + ".args", "w") as f:
        f.write("\\n".join(sys.argv[1:]))
    with open(out, "wb") as f:
        while True:
            b = sys.stdin.buffer.read(1 << 20)
            if not b:
                break
            f.write(b)
    sys.exit(int(os.environ.get("FAKE_SENDMAIL_EXIT", "0")))
    """)

RUN_MEASURED = textwrap.dedent("""\
    import resource, subprocess, sys
    with open(sys.argv[1], "rb") as f:
        p = subprocess.run(sys.argv[2:], stdin=f, capture_output=True)
    sys.stdout.write("%d %d\\n" % (p.returncode,
                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    """)


class Filter(sc.WorldCase):
    # test_long_forged_result_removed sends a header field longer than the
    # daemon parses, so the daemon sees no From (bad_from); it must still
    # be re-injected for the test to see what the filter removed
    daemon_args = ("--set", "bad_from=quarantine")

    @classmethod
    def more_daemon_args(cls, daemon_dir):
        # listen_tcp over TLS with client certificates, for the tls: cases
        cls.certs = TlsCerts(daemon_dir)
        cls.tls_port = mta.free_tcp_port()
        return ["--set", "listen_tcp=127.0.0.1:%d" % cls.tls_port] + cls.certs.daemon_args()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="alignd-filter-test-")
        cls.sendmail = os.path.join(cls.tmp, "sendmail")
        with open(cls.sendmail, "w") as f:
            f.write(FAKE_SENDMAIL)
        os.chmod(cls.sendmail, 0o755)
        cls.out = os.path.join(cls.tmp, "reinjected")

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def run_filter(self, s, socket=None, sendmail_exit=0, extra=(), stdin=None):
        for p in (self.out, self.out + ".args"):
            if os.path.exists(p):
                os.unlink(p)
        env = dict(os.environ, FAKE_SENDMAIL_OUT=self.out,
                   FAKE_SENDMAIL_EXIT=str(sendmail_exit), TMPDIR=self.tmp)
        cmd = [mta.FILTER, "-s", socket or self.daemon.socket, "-S", self.sendmail,
               "-c", s.client_ip, "-h", s.helo, "-i", "QID1", "-f", s.mail_from] + \
            list(extra) + ["--", sc.INBOX, "second@test.example"]
        # pipe(8) hands the message over with UNIX line ends
        data = s.msg.replace(b"\r\n", b"\n") if stdin is None else stdin
        return subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120)

    def reinjected(self):
        with open(self.out, "rb") as f:
            return f.read()

    def test_accept_reinjects_with_result_on_top(self):
        s = sc.aligned(self.world.world_dir)
        p = self.run_filter(s)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(self.out + ".args") as f:
            args = f.read().split("\n")
        self.assertEqual(args, ["-G", "-i", "-f", "alice@example.com", "--",
                                sc.INBOX, "second@test.example"])
        out = self.reinjected()
        self.assertNotIn(b"\r", out)
        lines = out.split(b"\n")
        self.assertTrue(lines[0].startswith(b"Authentication-Results: mx.test.example;"), lines[0])
        self.assertIn(b"dkim=pass", lines[0])
        self.assertIn(b"dmarc=pass", lines[0])
        self.assertNotIn(sc.FORGED_AR.encode(), out)
        self.assertIn(sc.OTHER_AR.encode(), out)
        # the rest is the message as received
        self.assertTrue(out.endswith(s.msg.replace(b"\r\n", b"\n").split(
            sc.FORGED_AR.encode() + b"\n", 1)[1]))
        # nothing left behind in the spool directory
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         sorted(["sendmail", "reinjected", "reinjected.args"]))

    def test_reject_exits_69_with_status_text(self):
        p = self.run_filter(sc.spoofed())
        self.assertEqual(p.returncode, 69, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^5\.7\.1 Rejected: .*DMARC")
        self.assertFalse(os.path.exists(self.out))

    def test_quarantine_marked(self):
        p = self.run_filter(sc.quarantined())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = self.reinjected()
        self.assertEqual(out.count(b"\nX-Alignd-Quarantine:"), 1, out[:600])

    def test_daemon_unreachable_exits_75(self):
        p = self.run_filter(sc.aligned(self.world.world_dir),
                            socket=os.path.join(self.tmp, "no-such.sock"))
        self.assertEqual(p.returncode, 75)
        self.assertRegex(p.stdout.decode(), r"^4\.7\.0 ")

    def test_dns_timeout_exits_75(self):
        p = self.run_filter(sc.dns_timeout())
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^4\.7\.\d ")

    def test_over_tls_with_client_certificate(self):
        s = sc.aligned(self.world.world_dir)
        tls = "tls:127.0.0.1:%d" % self.tls_port
        c = self.certs
        p = self.run_filter(s, socket=tls, extra=["--tls-ca", c.ca, "--tls-cert", c.client_cert,
                                                  "--tls-key", c.client_key])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        first = self.reinjected().split(b"\n", 1)[0]
        self.assertTrue(first.startswith(b"Authentication-Results: mx.test.example;"), first)
        self.assertIn(b"dmarc=pass", first)
        self.assertIn("client certificate CN=mta1.test", self.daemon.logtext())
        # refused by the daemon (another CA's certificate), a daemon
        # certificate the filter cannot check, TLS settings it cannot
        # use: the mail waits (75), nothing is re-injected
        for extra, why in (
                (["--tls-ca", c.ca, "--tls-cert", c.rogue_cert, "--tls-key", c.rogue_key],
                 b"daemon unavailable: "),   # closed, or a failed send: timing
                (["--tls-ca", c.other_ca, "--tls-cert", c.client_cert, "--tls-key", c.client_key],
                 b"daemon unavailable: TLS handshake with " + tls.encode()),
                (["--tls-ca", os.path.join(self.tmp, "none.pem")], b"daemon unavailable: --tls-ca")):
            p = self.run_filter(s, socket=tls, extra=extra)
            self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
            self.assertRegex(p.stdout.decode(), r"^4\.7\.0 ")
            self.assertIn(why, p.stderr)
            self.assertFalse(os.path.exists(self.out))

    def test_reinjection_failure_exits_75(self):
        p = self.run_filter(sc.aligned(self.world.world_dir), sendmail_exit=75)
        self.assertEqual(p.returncode, 75)
        self.assertIn(b"re-injection failed", p.stdout)

    def test_every_forged_result_removed(self):
        # RFC 8601 5: however many, quoted, commented, folded, upper-case
        s = sc.many_forged(self.world.world_dir)
        p = self.run_filter(s)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = self.reinjected().decode()
        sc.check_many_forged(self, out)
        self.assertIn("dkim=pass", out.split("\n", 1)[0])
        # the rest of the header section and the body as received
        self.assertTrue(out.endswith("Subject: many results\n" + s.msg.decode().replace(
            "\r\n", "\n").split("Subject: many results\n", 1)[1]))

    def test_long_forged_result_removed(self):
        # one field longer than the filter examines (a megabyte of comment
        # before the id): it is dropped, not passed on unexamined
        s = sc.aligned(self.world.world_dir)
        comment = "(" + "c" * 1000 + ")\r\n\t"
        forged = "Authentication-Results: %s%s; dmarc=pass (forged-long)\r\n" % (
            comment * 1100, mta.AUTHSERV_ID)
        s.msg = forged.encode() + s.msg
        p = self.run_filter(s, extra=["-a", mta.AUTHSERV_ID])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = self.reinjected()
        self.assertNotIn(b"forged-long", out)
        self.assertNotIn(b"cccccccc", out)
        self.assertIn(sc.OTHER_AR.encode(), out)
        self.assertIn(b"over 1048576 bytes removed", p.stderr)

    def test_oversized_tempfails_by_default(self):
        s = sc.oversized(self.world.world_dir)
        p = self.run_filter(s, extra=["-M", "4096"])
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^4\.3\.4 ")
        self.assertIn(b"QID1: message larger than 4096 bytes: deferred", p.stderr)
        self.assertFalse(os.path.exists(self.out))
        p = self.run_filter(s, extra=["-M", "4096", "-O", "reject"])
        self.assertEqual(p.returncode, 69, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^5\.3\.4 ")
        self.assertFalse(os.path.exists(self.out))
        # accepted unjudged on request: re-injected whole, without our
        # forged result (all results, with no -a to tell them apart)
        for extra, kept in (([], b""), (["-a", mta.AUTHSERV_ID], sc.OTHER_AR.encode() + b"\n")):
            p = self.run_filter(s, extra=["-M", "4096", "-O", "accept"] + extra)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn(b"accepted without a verdict", p.stderr)
            want = s.msg.replace(b"\r\n", b"\n").replace(
                sc.FORGED_AR.encode() + b"\n", b"").replace(sc.OTHER_AR.encode() + b"\n", kept)
            self.assertEqual(self.reinjected(), want)
        # within the limit, a verdict
        p = self.run_filter(s)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(self.reinjected().startswith(b"Authentication-Results: mx.test.example;"))

    def test_daemon_stale_or_hung_exits_75(self):
        s = sc.aligned(self.world.world_dir)
        # a socket file nobody listens on (a crashed daemon's)
        import socket as so
        stale = os.path.join(self.tmp, "stale.sock")
        st = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        st.bind(stale)
        st.close()
        try:
            p = self.run_filter(s, socket=stale)
        finally:
            os.unlink(stale)
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^4\.7\.0 ")
        self.assertIn(b"cannot connect", p.stderr)
        # a daemon that takes the connection and never answers
        import signal
        self.daemon.signal(signal.SIGSTOP)
        try:
            p = self.run_filter(s, extra=["-t", "2000"])
        finally:
            self.daemon.signal(signal.SIGCONT)
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertRegex(p.stdout.decode(), r"^4\.7\.0 ")
        self.assertIn(b"timed out", p.stderr)
        self.assertFalse(os.path.exists(self.out))

    def test_usage_errors(self):
        for args in ([], ["-f", "a@b"], ["-t", "0", "-f", "a@b", "--", "x@y"],
                     ["-O", "maybe", "-f", "a@b", "--", "x@y"]):
            p = subprocess.run([mta.FILTER] + args, capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 64, args)

    def test_large_message_streams_in_little_memory(self):
        size = 40 << 20
        line = b"x" * 76 + b"\n"
        body = line * (size // len(line))
        head = (b"From: Alice <alice@example.com>\nTo: inbox@test.example\n"
                b"Subject: big\nMessage-ID: <big@example.com>\n\n")
        path = os.path.join(self.tmp, "big.eml")
        with open(path, "wb") as f:
            f.write(head + body)
        try:
            env = dict(os.environ, FAKE_SENDMAIL_OUT=self.out, TMPDIR=self.tmp)
            cmd = [sys.executable, "-c", RUN_MEASURED, path, mta.FILTER,
                   "-s", self.daemon.socket, "-S", self.sendmail, "-c", "192.0.2.25",
                   "-h", "mail.example.com", "-f", "alice@example.com", "--", sc.INBOX]
            p = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
            rc, maxrss_kb = map(int, p.stdout.split())
        finally:
            os.unlink(path)
        self.assertEqual(rc, 0, p.stderr)
        out_size = os.path.getsize(self.out)
        self.assertGreater(out_size, len(head) + len(body))
        # the largest child is the recording sendmail (1 MB reads) or the
        # filter: neither may hold a copy of the 40 MB message. Counted
        # above the filter's RSS at rest (its libraries; under ASan alone
        # that is some 20 MB)
        p = subprocess.run([sys.executable, "-c", RUN_MEASURED, os.devnull, mta.FILTER, "--help"],
                           capture_output=True, timeout=60)
        rest_kb = int(p.stdout.split()[1])
        self.assertLess((maxrss_kb - rest_kb) * 1024, size // 2,
                        "peak RSS %d KB, %d KB at rest" % (maxrss_kb, rest_kb))
        os.unlink(self.out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
