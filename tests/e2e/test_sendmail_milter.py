"""End to end: a real Sendmail (Debian's sendmail-bin, unpacked and run as
a private daemon, see mta.Sendmail) consults alignd through alignd-milter
at SMTP time (INPUT_MAIL_FILTER); swaks sends from the scenario's client
address inside the daemon's network namespace."""
import os
import re
import sys
import time
import unittest

import mta
import scenarios as sc

INBOX_USER = sc.INBOX.split("@")[0]


class SendmailMilter(sc.WorldCase):
    # the milter's defaults but for the deadline: the marker header and
    # smfi_quarantine() on a quarantine verdict
    MILTER_ARGS = ["-t", "20000"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.sm = mta.Sendmail(os.path.join(sc.BUILD or "/tmp", "tests", "e2e",
                                               "sendmail-cache"),
                                  cls.daemon.socket, milter_args=cls.MILTER_ARGS)
            why = cls.sm.unavailable()
            if why:
                cls.sm.cleanup()
                raise unittest.SkipTest(why)
            cls.sm.start()
        except BaseException:
            if getattr(cls, "sm", None):
                cls.sm.cleanup()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sm.stop()
            log = cls.sm.milter_text()
            cls.sm.cleanup()
        finally:
            super().tearDownClass()
        # a clean exit on SIGTERM (under ASan: no leak, no error at exit)
        if cls.sm.milter_rc != 0:
            raise AssertionError("alignd-milter exited with %s:\n%s" % (cls.sm.milter_rc, log[-4000:]))

    def send(self, s):
        return self.sm.send(s.mail_from, sc.INBOX, s.msg, s.client_ip, helo=s.helo)

    def delivered(self, subject, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.sm.mailbox(INBOX_USER):
                if m["Subject"] == subject:
                    return m
            if timeout <= 0:
                break
            time.sleep(0.2)
        return None

    def explain(self, r):
        return "\n--- SMTP transcript ---\n%s\n--- milter log ---\n%s\n--- alignd log ---\n%s" % (
            r.transcript, self.sm.milter_text()[-3000:], self.daemon.logtext()[-3000:])

    def test_1_spoofed_from_rejected_at_smtp_time(self):
        s = sc.spoofed()
        r = self.send(s)
        sys.stdout.write("\nSMTP transcript of the spoofed message:\n%s\n" % r.transcript)
        reply = r.final_reply() or ""
        # our reply text, not Sendmail's generic one for a milter reject
        self.assertRegex(reply, r"^550 5\.7\.1 .*DMARC policy of example\.com", self.explain(r))
        # the milter saw the scenario's client address, not the loopback
        self.assertRegex(self.daemon.logtext(), r"ip=203\.0\.113\.99 .*action=reject")
        time.sleep(1)
        self.assertIsNone(self.delivered("urgent wire transfer", timeout=0))

    def test_2_aligned_signed_delivered_with_one_result(self):
        s = sc.aligned(self.world.world_dir)
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("quarterly report")
        self.assertIsNotNone(m, self.explain(r))
        ours = sc.our_ar(m)
        self.assertEqual(len(ours), 1, ours)
        # simple/simple DKIM passes: Sendmail gave the milter the bytes as sent
        self.assertIn("dkim=pass", ours[0])
        self.assertRegex(ours[0], r"spf=pass (\(.*?\) )?smtp\.mailfrom=example\.com;")
        self.assertIn("dmarc=pass", ours[0])
        # the forged result claiming our authserv-id is gone, the other
        # host's result stays
        self.assertNotIn("dkim=pass header.d=example.com; dmarc=pass", " ".join(ours))
        self.assertEqual([v for v in sc.ar_headers(m) if not v.strip().startswith(mta.AUTHSERV_ID)],
                         [sc.OTHER_AR.split(": ", 1)[1]])
        self.assertIn("removed 1 Authentication-Results", self.sm.milter_text())
        # ours sits above the message's own header fields
        names = [k.lower() for k in m.keys()]
        self.assertLess(names.index("authentication-results"), names.index("dkim-signature"))
        self.assertIn("\n.leading dot line", m.get_payload().replace("\r\n", "\n"))

    def test_2b_every_forged_result_removed(self):
        s = sc.many_forged(self.world.world_dir)
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("many results")
        self.assertIsNotNone(m, self.explain(r))
        sc.check_many_forged(self, m.as_string())
        self.assertIn("dkim=pass", sc.our_ar(m)[0])

    def test_3_quarantine_in_sendmail_quarantine(self):
        # smfi_quarantine(): Sendmail accepts the message and keeps it in
        # its queue as quarantined (an hf file whose q line is the reason),
        # undelivered; the header changes are made all the same
        s = sc.quarantined()
        before = len(self.sm.milter_text())
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        qid = re.search(r"250 2\.0\.0 (\S+) Message accepted", r.transcript)
        self.assertIsNotNone(qid, r.transcript)
        qid = qid.group(1)
        try:
            held = dict(self.sm.queue_files("hf"))
            self.assertIn(qid, held, "%s\n%s" % (os.listdir(self.sm.queue_dir), self.explain(r)))
            reason = held[qid]["q"][0]
            self.assertRegex(reason, r"^alignd: quarantine, score [0-9.]+, dmarc=fail "
                             r"\(p=quarantine dis=quarantine\) header\.from=example\.org$")
            self.assertEqual(held[qid]["S"], ["<bob@example.org>"])
            heads = "\n".join(held[qid]["H"])
            self.assertRegex(heads, r"Authentication-Results: %s;.*dmarc=fail"
                             % re.escape(mta.AUTHSERV_ID))
            self.assertIn("X-Alignd-Quarantine:", heads)
            self.assertEqual(self.sm.queue_files("qf"), [])
            # mailq -qQ lists it with the reason (cut to the line's width)
            listing = self.sm.mailq_quarantined()
            sys.stdout.write("\nmailq -qQ:\n%s\n" % listing)
            self.assertRegex(listing, r"(?m)^%s .*<bob@example\.org>\n +QUARANTINE: "
                             r"alignd: quarantine, score " % re.escape(qid))
            self.assertIn("%s: quarantined (hold): %s" % (qid, reason),
                          self.sm.milter_text()[before:])
            time.sleep(1)
            self.assertIsNone(self.delivered("newsletter", timeout=0))
            # released as docs/MTA.md says, it is delivered by a queue run
            # with the headers the milter added
            p = self.sm.run("-qQ", "-Q", "-qI" + qid)
            self.assertEqual(self.sm.queue_files("hf"), [], p.stdout + p.stderr)
            self.assertEqual([q for q, _ in self.sm.queue_files("qf")], [qid])
            self.sm.run("-q", "-qI" + qid)
            m = self.delivered("newsletter")
            self.assertIsNotNone(m, self.explain(r))
            self.assertIn("dmarc=fail", sc.our_ar(m)[0])
            self.assertTrue(m["X-Alignd-Quarantine"])
        finally:
            self.sm.remove_queued(qid)

    def test_4_daemon_down_tempfails_then_retry_accepted(self):
        s = sc.restart_message()
        self.daemon.stop()
        try:
            r = self.send(s)
            self.assertRegex(r.final_reply() or "", r"^451 4\.7\.0 ", self.explain(r))
            self.assertIn("daemon unavailable", self.sm.milter_text())
        finally:
            self.daemon.start()
        r = self.send(s)
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        m = self.delivered("while you were out")
        self.assertIsNotNone(m, self.explain(r))
        self.assertEqual(len(sc.our_ar(m)), 1)

    def test_5_milter_down_tempfails(self):
        # F=T in INPUT_MAIL_FILTER: Sendmail itself defers (from MAIL FROM
        # on) while the milter does not answer
        s = sc.restart_message()
        s.msg = s.msg.replace(b"Subject: while you were out", b"Subject: no milter")
        self.sm.stop_milter()
        self.assertEqual(self.sm.milter_rc, 0, self.sm.milter_text()[-3000:])
        try:
            r = self.send(s)
        finally:
            self.assertEqual(self.sm.restart_milter(self.MILTER_ARGS), 0)
        self.assertRegex(r.transcript, r"(?m)^<\*\* 451 4\.3\.2 ", r.transcript)
        self.assertIsNone(self.delivered("no milter", timeout=0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
