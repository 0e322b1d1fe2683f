"""End to end: a real Postfix consults alignd through alignd-milter at
SMTP time (smtpd_milters); swaks is the sending client."""
import glob
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest

import mta
import scenarios as sc
from tlscerts import TlsCerts


class PostfixMilter(sc.WorldCase):
    @classmethod
    def more_daemon_args(cls, daemon_dir):
        # listen_tcp over TLS with client certificates, for test_10
        cls.certs = TlsCerts(daemon_dir)
        cls.tls_port = mta.free_tcp_port()
        return ["--set", "listen_tcp=127.0.0.1:%d" % cls.tls_port] + cls.certs.daemon_args()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            # deliver quarantined mail with its marker (no hold) so the test
            # can read it; the default is header,hold
            cls.pf = mta.Postfix("milter", cls.daemon.socket,
                                 milter_args=cls.BASE_MILTER_ARGS,
                                 message_size_limit=cls.MESSAGE_SIZE_LIMIT)
            cls.pf.start()
        except BaseException:
            if getattr(cls, "pf", None):
                cls.pf.cleanup()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.pf.stop()
            log = cls.pf.milter_text()
            cls.pf.cleanup()
        finally:
            super().tearDownClass()
        # a clean exit on SIGTERM (under ASan: no leak, no error at exit)
        if cls.pf.milter_rc != 0:
            raise AssertionError("alignd-milter exited with %s:\n%s" % (cls.pf.milter_rc, log[-4000:]))

    BASE_MILTER_ARGS = ["-Q", "header", "-t", "20000"]

    def restart_milter(self, extra, base=None):
        """The milter again with more options (after base, by default
        BASE_MILTER_ARGS); Postfix connects to it anew for each SMTP
        session. Its exit must have been clean."""
        rc = self.pf.restart_milter(list(self.BASE_MILTER_ARGS if base is None else base) +
                                    list(extra))
        self.assertEqual(rc, 0, self.pf.milter_text()[-3000:])

    def send(self, s):
        return self.pf.send(s.mail_from, sc.INBOX, s.msg, client_ip=s.client_ip, helo=s.helo)

    def delivered(self, subject, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.pf.mailbox("inbox"):
                if m["Subject"] == subject:
                    return m
            time.sleep(0.2)
        return None

    def explain(self, r):
        return "\n--- SMTP transcript ---\n%s\n--- milter log ---\n%s\n--- maillog ---\n%s\n" \
            "--- alignd log ---\n%s" % (r.transcript, self.pf.milter_text()[-3000:],
                                        self.pf.log()[-3000:], self.daemon.logtext()[-3000:])

    def test_1_spoofed_from_rejected_at_smtp_time(self):
        s = sc.spoofed()
        r = self.send(s)
        # the transcript goes to the test log: the 550 5.7.1 at end of DATA
        sys.stdout.write("\nSMTP transcript of the spoofed message:\n%s\n" % r.transcript)
        reply = r.final_reply()
        self.assertIsNotNone(reply, self.explain(r))
        self.assertTrue(reply.startswith("550 5.7.1"), self.explain(r))
        self.assertIn("DMARC", reply)
        time.sleep(1)
        self.assertIsNone(self.delivered("urgent wire transfer", timeout=0.5))

    def test_2_aligned_signed_delivered_with_one_result(self):
        s = sc.aligned(self.world.world_dir)
        r = self.send(s)
        reply = r.final_reply() or ""
        self.assertTrue(reply.startswith("250"), self.explain(r))
        m = self.delivered("quarterly report")
        self.assertIsNotNone(m, self.explain(r))
        ours = sc.our_ar(m)
        self.assertEqual(len(ours), 1, ours)
        self.assertIn("dkim=pass", ours[0])
        self.assertIn("dmarc=pass", ours[0])
        self.assertIn("header.d=example.com", ours[0])
        # the forged one is gone, the other host's result stays
        self.assertNotIn("dkim=pass header.d=example.com; dmarc=pass", " ".join(ours))
        self.assertTrue(any(v.strip().startswith("other.example") for v in sc.ar_headers(m)))
        # ours sits above the message's own header fields
        names = [k.lower() for k in m.keys()]
        self.assertLess(names.index("authentication-results"), names.index("dkim-signature"))
        # the body arrived intact (dot-stuffing undone by Postfix)
        self.assertIn("\n.leading dot line", m.get_payload().replace("\r\n", "\n"))

    def test_3_quarantine_marked(self):
        s = sc.quarantined()
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("newsletter")
        self.assertIsNotNone(m, self.explain(r))
        self.assertTrue(m["X-Alignd-Quarantine"], dict(m.items()))
        self.assertEqual(len(m.get_all("X-Alignd-Quarantine")), 1)
        self.assertIn("dmarc=fail", sc.our_ar(m)[0])

    def held(self, subject, timeout=20):
        """(postqueue -j entry, header section as postcat prints it) of
        the message with this Subject in Postfix's hold queue, or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.pf.queue():
                if e.get("queue_name") != "hold":
                    continue
                p = subprocess.run(["postcat", "-c", self.pf.dir, "-h", "-q", e["queue_id"]],
                                   env=self.pf.env, capture_output=True, timeout=30)
                text = p.stdout.decode("utf-8", "replace")
                if "\nSubject: %s\n" % subject in "\n" + text:
                    return e, text
            time.sleep(0.2)
        return None

    def test_3b_quarantine_held(self):
        # the default (-Q header,hold) and -Q hold: smfi_quarantine() puts
        # the message in Postfix's hold queue, with our results and the
        # daemon's marker; the reason (alignd, score, dmarc= result) is
        # logged, since Postfix keeps no text with a milter hold
        def quarantined(subject):
            s = sc.quarantined()
            s.msg = s.msg.replace(b"Subject: newsletter", b"Subject: " + subject.encode())
            return s
        try:
            for mode, base in (("default", ["-t", "20000"]),
                               ("hold", ["-t", "20000", "-Q", "hold"])):
                self.restart_milter([], base=base)
                subject = "held newsletter " + mode
                before = len(self.pf.milter_text())
                r = self.send(quarantined(subject))
                self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
                got = self.held(subject)
                self.assertIsNotNone(got, "%s: not in the hold queue: %s%s"
                                     % (mode, self.pf.queue(), self.explain(r)))
                entry, head = got
                self.assertEqual(entry["sender"], "bob@example.org")
                qid = entry["queue_id"]
                ours = [l for l in head.splitlines()
                        if l.startswith("Authentication-Results: " + mta.AUTHSERV_ID)]
                self.assertEqual(len(ours), 1, head)
                self.assertIn("dmarc=fail (p=quarantine", ours[0])
                self.assertRegex(head, r"(?m)^X-Alignd-Quarantine: yes \(.*dmarc=fail")
                self.assertIn("%s: milter-hold: END-OF-MESSAGE" % qid, self.pf.log())
                log = self.pf.milter_text()[before:]
                self.assertRegex(log, r"%s: quarantined \(hold\): alignd: quarantine, score "
                                 r"[0-9.]+, dmarc=fail \(p=quarantine dis=quarantine\) "
                                 r"header\.from=example\.org\n" % qid, log)
                self.assertIsNone(self.delivered(subject, timeout=0.5))
            # held mode holds only quarantine verdicts
            s = sc.aligned(self.world.world_dir, subject="held mode aligned")
            r = self.send(s)
            self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
            self.assertIsNotNone(self.delivered("held mode aligned"), self.explain(r))
        finally:
            subprocess.run(["postsuper", "-c", self.pf.dir, "-d", "ALL", "hold"],
                           env=self.pf.env, capture_output=True, timeout=30)
            self.restart_milter([])

    def test_4_dns_timeout_tempfails(self):
        s = sc.dns_timeout()
        r = self.send(s)
        reply = r.final_reply() or ""
        self.assertRegex(reply, r"^451 4\.7\.\d", self.explain(r))
        self.assertIsNone(self.delivered("silence", timeout=0.5))

    def test_5_daemon_down_tempfails_then_retry_accepted(self):
        s = sc.restart_message()
        self.daemon.stop()
        try:
            r = self.send(s)
            reply = r.final_reply() or ""
            self.assertRegex(reply, r"^451 4\.7\.\d", self.explain(r))
            self.assertIn("daemon unavailable", self.pf.milter_text())
        finally:
            self.daemon.start()
        # the sender retries the same message; the milter reconnects by itself
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("while you were out")
        self.assertIsNotNone(m, self.explain(r))
        self.assertEqual(len(sc.our_ar(m)), 1)
        self.assertEqual(len([x for x in self.pf.mailbox("inbox")
                              if x["Subject"] == "while you were out"]), 1)

    def test_2b_every_forged_result_removed(self):
        # RFC 8601 5: the 65th and later, quoted, commented, folded,
        # upper-case, with a root dot or a version, or unreadable
        s = sc.many_forged(self.world.world_dir)
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("many results")
        self.assertIsNotNone(m, self.explain(r))
        sc.check_many_forged(self, m.as_string())
        self.assertIn("dkim=pass", sc.our_ar(m)[0])
        self.assertIn("removed %d Authentication-Results" % len(sc.FORGED_VARIANTS),
                      self.pf.milter_text())

    def test_7_oversized_tempfails_by_default(self):
        self.restart_milter(["-S", "4096"])
        try:
            r = self.send(sc.oversized(self.world.world_dir))
            self.assertRegex(r.final_reply() or "", r"^451 4\.3\.4 ", self.explain(r))
            self.assertIn("larger than 4096 bytes: deferred", self.pf.milter_text())
            self.restart_milter(["-S", "4096", "-O", "reject"])
            r = self.send(sc.oversized(self.world.world_dir))
            self.assertRegex(r.final_reply() or "", r"^552 5\.3\.4 ", self.explain(r))
            self.assertIsNone(self.delivered("oversized", timeout=0.5))
            # accepted unjudged on request: no result of ours, and the
            # forged one is gone (all of them, with no -a to tell them apart)
            self.restart_milter(["-S", "4096", "-O", "accept", "-a", mta.AUTHSERV_ID])
            r = self.send(sc.oversized(self.world.world_dir))
            self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
            m = self.delivered("oversized")
            self.assertIsNotNone(m, self.explain(r))
            self.assertEqual(sc.ar_headers(m), [sc.OTHER_AR.split(": ", 1)[1]])
            self.assertIn("accepted without a verdict", self.pf.milter_text())
            self.restart_milter(["-S", "4096", "-O", "accept"])
            s = sc.oversized(self.world.world_dir)
            s.msg = s.msg.replace(b"Subject: oversized", b"Subject: oversized 2")
            r = self.send(s)
            self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
            m = self.delivered("oversized 2")
            self.assertIsNotNone(m, self.explain(r))
            self.assertEqual(sc.ar_headers(m), [])
        finally:
            self.restart_milter([])
        # under the limit, the same message gets a verdict
        s = sc.oversized(self.world.world_dir)
        s.msg = s.msg.replace(b"Subject: oversized", b"Subject: oversized 3")
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("oversized 3")
        self.assertIsNotNone(m, self.explain(r))
        self.assertEqual(len(sc.our_ar(m)), 1)

    def test_8_daemon_unreachable_or_hung_tempfails(self):
        s = sc.restart_message()
        s.msg = s.msg.replace(b"Subject: while you were out", b"Subject: unreachable")
        # no such socket, and a socket nobody listens on (a crashed daemon's)
        stale = os.path.join(self.pf.dir, "stale.sock")
        import socket as so
        st = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        st.bind(stale)
        st.close()
        try:
            for sock in (os.path.join(self.pf.dir, "none.sock"), stale):
                self.restart_milter(["-s", sock])
                before = len(self.pf.milter_text())
                r = self.send(s)
                self.assertRegex(r.final_reply() or "", r"^451 4\.7\.0 ", self.explain(r))
                self.assertIn("daemon unavailable: cannot connect",
                              self.pf.milter_text()[before:])
            # a daemon that takes the connection and never answers
            self.restart_milter(["-t", "2000"])
            self.daemon.signal(signal.SIGSTOP)
            try:
                r = self.send(s)
            finally:
                self.daemon.signal(signal.SIGCONT)
            self.assertRegex(r.final_reply() or "", r"^451 4\.7\.0 ", self.explain(r))
            self.assertIn("timed out", self.pf.milter_text())
        finally:
            self.restart_milter([])
        self.assertIsNone(self.delivered("unreachable", timeout=0.5))

    # a 50 MB message: below the milter's --max-size and the daemon's
    # max_message_size (both 50 MiB by default), above Postfix's default
    # message_size_limit (10 MB), which the fixture raises to the milter's
    # limit (not above it, as docs/MTA.md advises)
    LARGE_SIZE = 50 * 1000 * 1000
    MESSAGE_SIZE_LIMIT = 50 << 20
    # what the milter's peak RSS may grow by while it carries the message
    LARGE_RSS_GROWTH = 16 << 20

    def test_10_over_tls_with_client_certificate(self):
        """The milter reaches the daemon's TLS listener as a second host's
        would: verdicts as over the socket; refused (another CA's client
        certificate) it tempfails."""
        c = self.certs
        tls = ["-s", "tls:127.0.0.1:%d" % self.tls_port, "--tls-ca", c.ca]
        try:
            self.restart_milter(tls + ["--tls-cert", c.client_cert, "--tls-key", c.client_key])
            s = sc.aligned(self.world.world_dir, subject="over tls")
            r = self.send(s)
            self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
            m = self.delivered("over tls")
            self.assertIsNotNone(m, self.explain(r))
            ours = sc.our_ar(m)
            self.assertEqual(len(ours), 1, ours)
            self.assertIn("dmarc=pass", ours[0])
            self.assertIn("client certificate CN=mta1.test", self.daemon.logtext())
            r = self.send(sc.spoofed())
            self.assertTrue((r.final_reply() or "").startswith("550 5.7.1"), self.explain(r))
            self.restart_milter(tls + ["--tls-cert", c.rogue_cert, "--tls-key", c.rogue_key])
            before = len(self.pf.milter_text())
            s = sc.aligned(self.world.world_dir, subject="rogue over tls")
            r = self.send(s)
            self.assertRegex(r.final_reply() or "", r"^451 4\.7\.0 ", self.explain(r))
            self.assertIn("daemon unavailable", self.pf.milter_text()[before:])
        finally:
            self.restart_milter([])
        self.assertIsNone(self.delivered("rogue over tls", timeout=0.5))

    def test_9_large_message_spooled_in_little_memory(self):
        # the milter keeps LIM_CLIENT_MEMORY of the message in memory and the
        # rest in an unlinked file, so its peak RSS grows by far less than
        # the size
        t0 = time.monotonic()
        spool = os.path.join(self.pf.dir, "spool")
        os.makedirs(spool)
        env = dict(os.environ, TMPDIR=spool)
        if "ASAN_OPTIONS" in env:
            # freed chunks stay resident in ASan's quarantine: keep it small,
            # so that the figure is the milter's memory and not the tool's
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=1"
        self.pf.milter_env = env
        line = b"x" * 76 + b"\r\n"
        head = mta.make_message("Alice <alice@example.com>", sc.INBOX, "large one", body="")
        # room for the DKIM-Signature and the Received: Postfix adds
        body = line * ((self.LARGE_SIZE - len(head) - 2048) // len(line))
        msg = mta.dkim_sign(head + body, self.world.world_dir, "example.com", "s2048",
                            canon=b"simple")
        self.assertLess(len(msg), self.LARGE_SIZE)
        try:
            self.restart_milter([])
            before = self.milter_hwm_kb()
            t1 = time.monotonic()
            r = self.pf.send("alice@example.com", sc.INBOX, msg, client_ip="192.0.2.25",
                             helo="mail.example.com")
            t_smtp = time.monotonic() - t1
            grown = self.milter_hwm_kb() - before
            spooled = os.listdir(spool)
        finally:
            self.pf.milter_env = None
            self.restart_milter([])
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        # read as bytes, not through self.delivered(): parsing 50 MB with
        # the email package on every poll would take most of the time
        path = self.delivered_file("large one")
        self.assertIsNotNone(path, self.explain(r))
        with open(path, "rb") as f:
            got = f.read()
        os.unlink(path)             # the later tests read the inbox
        got_head, _, got_body = got.partition(b"\n\n")
        ours = [l for l in got_head.decode().split("\n")
                if l.startswith("Authentication-Results: " + mta.AUTHSERV_ID)]
        # simple/simple DKIM passes: the daemon saw every byte as sent
        self.assertEqual(len(ours), 1, got_head)
        self.assertIn("dkim=pass", ours[0])
        self.assertEqual(got_body, body.replace(b"\r\n", b"\n"))
        sys.stdout.write("\nmilter peak RSS grew by %d KB for a %d KB message; SMTP "
                         "transaction %.1f s, whole test %.1f s\n"
                         % (grown, len(msg) >> 10, t_smtp, time.monotonic() - t0))
        self.assertLess(grown * 1024, self.LARGE_RSS_GROWTH, "peak RSS grew by %d KB" % grown)
        # the spool file was unlinked at once, and nothing is left after
        self.assertEqual(spooled, [])
        self.assertEqual(os.listdir(spool), [])

    def delivered_file(self, subject, timeout=60):
        """Path of the delivered message with this Subject, found by its
        header section alone."""
        want = ("\nSubject: %s\n" % subject).encode()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for p in glob.glob(os.path.join(self.pf.mail, "inbox", "new", "*")):
                with open(p, "rb") as f:
                    head = f.read(64 * 1024).partition(b"\n\n")[0]
                if want in b"\n" + head + b"\n":
                    return p
            time.sleep(0.2)
        return None

    def milter_hwm_kb(self):
        with open("/proc/%d/status" % self.pf.milter.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def test_6_several_messages_per_session_and_concurrent_sessions(self):
        good = sc.aligned(self.world.world_dir, subject="batch good")
        bad = sc.spoofed()
        results = {}

        def session(n):
            out = []
            c = smtplib.SMTP("127.0.0.1", self.pf.port, timeout=mta.SMTP_TIMEOUT)
            try:
                c.ehlo("client.test")
                code, _ = c.docmd("XCLIENT", "ADDR=%s HELO=%s" % (good.client_ip, good.helo))
                out.append(code)
                c.ehlo(good.helo)
                for i in range(3):
                    for s in (good, bad):
                        try:
                            c.sendmail(s.mail_from, [sc.INBOX], s.msg)
                            out.append(250)
                        except smtplib.SMTPDataError as e:
                            out.append(e.smtp_code)
                c.quit()
            except Exception as e:  # reported below
                out.append(repr(e))
            results[n] = out

        threads = [threading.Thread(target=session, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for n in range(4):
            # the aligned message passes each time; the spoofed one (sent
            # from the aligned host's address here) still fails DMARC
            self.assertEqual(results.get(n), [220, 250, 550, 250, 550, 250, 550],
                             "%s\n%s" % (results, self.pf.milter_text()[-3000:]))
        end = time.monotonic() + 20
        while time.monotonic() < end and len([m for m in self.pf.mailbox("inbox")
                                              if m["Subject"] == "batch good"]) < 12:
            time.sleep(0.2)
        got = [m for m in self.pf.mailbox("inbox") if m["Subject"] == "batch good"]
        self.assertEqual(len(got), 12)
        for m in got:
            self.assertEqual(len(sc.our_ar(m)), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
