"""End to end: a real Postfix hands each queued message to alignd-filter
through pipe(8) (content_filter); the filter re-injects with Postfix's own
sendmail, or makes Postfix bounce (69) or keep the message queued (75)."""
import time
import unittest

import mta
import scenarios as sc


class PostfixFilter(sc.WorldCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pf = None
        cls.alt = None
        try:
            cls.pf = mta.Postfix("filter", cls.daemon.socket, filter_args=["-t", "20000", "-M", "16384"])
            cls.alt = mta.AltConfigDir(cls.pf.dir)
            if not cls.alt.usable():
                raise unittest.SkipTest("%s exists: re-injection through sendmail needs "
                                        "alternate_config_directories there" % mta.DEFAULT_MAIN_CF)
            cls.alt.__enter__()
            cls.pf.start()
        except BaseException:
            cls._stop_mta()
            super().tearDownClass()
            raise

    @classmethod
    def _stop_mta(cls):
        try:
            if cls.pf:
                cls.pf.cleanup()
        finally:
            if cls.alt:
                cls.alt.release()

    @classmethod
    def tearDownClass(cls):
        try:
            cls._stop_mta()
        finally:
            super().tearDownClass()

    def send(self, s):
        r = self.pf.send(s.mail_from, sc.INBOX, s.msg, client_ip=s.client_ip, helo=s.helo)
        # after-queue filtering: Postfix always takes the message first
        self.assertTrue((r.final_reply() or "").startswith("250"), self.explain(r))
        return r

    def queue_id(self, r):
        return r.final_reply().rsplit(" ", 1)[-1]

    def find(self, box, subject, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.pf.mailbox(box):
                if subject in (m["Subject"] or "") or subject in m.as_string():
                    return m
            time.sleep(0.2)
        return None

    def explain(self, r=None):
        return "\n--- SMTP transcript ---\n%s\n--- maillog ---\n%s\n--- alignd log ---\n%s" % (
            r.transcript if r else "", self.pf.log()[-4000:], self.daemon.logtext()[-3000:])

    def test_1_spoofed_bounced_to_sender(self):
        r = self.send(sc.spoofed())
        qid = self.queue_id(r)
        self.assertTrue(self.pf.wait_log("%s: to=<%s>, relay=alignd" % (qid, sc.INBOX)),
                        self.explain(r))
        self.assertTrue(self.pf.wait_log("status=bounced"), self.explain(r))
        self.assertIn("dsn=5.7.1", self.pf.log())
        # the non-delivery report reaches the envelope sender, with the reason
        ndr = self.find("attacker", "urgent wire transfer")
        self.assertIsNotNone(ndr, self.explain(r))
        self.assertIn("5.7.1", ndr.as_string())
        self.assertIn("DMARC", ndr.as_string())
        self.assertIsNone(self.find("inbox", "urgent wire transfer", timeout=0.5))

    def test_2_aligned_signed_reinjected_with_one_result(self):
        r = self.send(sc.aligned(self.world.world_dir))
        m = self.find("inbox", "quarterly report")
        self.assertIsNotNone(m, self.explain(r))
        ours = sc.our_ar(m)
        self.assertEqual(len(ours), 1, ours)
        self.assertIn("dkim=pass", ours[0])
        self.assertIn("dmarc=pass", ours[0])
        self.assertTrue(any(v.strip().startswith("other.example") for v in sc.ar_headers(m)))
        self.assertIn("\n.leading dot line", m.get_payload().replace("\r\n", "\n"))
        # re-injected once, not filtered again
        self.assertEqual(len([x for x in self.pf.mailbox("inbox")
                              if x["Subject"] == "quarterly report"]), 1)

    def test_2b_every_forged_result_removed(self):
        r = self.send(sc.many_forged(self.world.world_dir))
        m = self.find("inbox", "many results")
        self.assertIsNotNone(m, self.explain(r))
        sc.check_many_forged(self, m.as_string())
        self.assertIn("dkim=pass", sc.our_ar(m)[0])

    def test_2c_oversized_stays_queued(self):
        # over -M: deferred (4.3.4) by default, never delivered unjudged
        r = self.send(sc.oversized(self.world.world_dir, size=40000))
        qid = self.queue_id(r)
        self.assertTrue(self.pf.wait_log("%s: to=<%s>, relay=alignd" % (qid, sc.INBOX)),
                        self.explain(r))
        line = [l for l in self.pf.log().splitlines() if qid in l and "relay=alignd" in l][0]
        self.assertIn("status=deferred", line)
        self.assertIn("dsn=4.3.4", line)
        self.assertIn(qid, [q["queue_id"] for q in self.pf.queue()])
        self.assertIsNone(self.find("inbox", "oversized", timeout=0.5))

    def test_3_quarantine_marked(self):
        r = self.send(sc.quarantined())
        m = self.find("inbox", "newsletter")
        self.assertIsNotNone(m, self.explain(r))
        self.assertEqual(len(m.get_all("X-Alignd-Quarantine") or []), 1, dict(m.items()))
        self.assertIn("dmarc=fail", sc.our_ar(m)[0])

    def test_4_dns_timeout_stays_queued(self):
        r = self.send(sc.dns_timeout())
        qid = self.queue_id(r)
        self.assertTrue(self.pf.wait_log("%s: to=<%s>, relay=alignd" % (qid, sc.INBOX)),
                        self.explain(r))
        log = self.pf.log()
        line = [l for l in log.splitlines() if qid in l and "relay=alignd" in l][0]
        self.assertIn("status=deferred", line)
        self.assertRegex(line, r"dsn=4\.7\.\d")
        self.assertIn(qid, [q["queue_id"] for q in self.pf.queue()])

    def test_5_daemon_down_stays_queued_then_flush_delivers(self):
        s = sc.restart_message()
        self.daemon.stop()
        try:
            r = self.send(s)
            qid = self.queue_id(r)
            self.assertTrue(self.pf.wait_log("%s: to=<%s>, relay=alignd" % (qid, sc.INBOX)),
                            self.explain(r))
            line = [l for l in self.pf.log().splitlines() if qid in l and "relay=alignd" in l][0]
            self.assertIn("status=deferred", line)
            # the filter's status line comes before its diagnostics
            self.assertIn("dsn=4.7.0", line)
            self.assertIn("unavailable", line)
            self.assertIn(qid, [q["queue_id"] for q in self.pf.queue()])
        finally:
            self.daemon.start()
        self.pf.flush()
        m = self.find("inbox", "while you were out")
        self.assertIsNotNone(m, self.explain(r))
        self.assertEqual(len(sc.our_ar(m)), 1)
        self.assertNotIn(qid, [q["queue_id"] for q in self.pf.queue()])


if __name__ == "__main__":
    unittest.main(verbosity=2)
