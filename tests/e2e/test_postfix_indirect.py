"""End to end, issue 8: indirect mail flows through a real Postfix
(smtpd_milters = alignd-milter) and the real daemon, in each policy mode.

The messages and their expectations come from the daemon-side scenario
table (tests/scenarios/scenarios.py): the same author message of the
p=reject domain aligned.example, the same list that rewrites the Subject
and ARC-seals it (python3-dkim's arc_sign), the same forged chains and
the same envelopes. Here they travel as SMTP through Postfix, which must
turn the daemon's verdict into what a sender and a mailbox see:

  accept      250 at end of DATA, delivered, exactly one
              Authentication-Results of ours, no quarantine marking
  quarantine  250, delivered with X-Alignd-Quarantine (the milter runs with
              -Q header so the test can read it) and the override reason
  reject      550 5.7.1 at end of DATA (logged in the test output), nothing
              delivered and nothing left in the queue

The daemon trusts what the "indirect*" profiles of the scenario runner
trust (TRUST below mirrors run_scenarios.TRUST): the ARC sealers
arclist.example and fwd.example, the forwarders 198.51.100.176/28,
2001:db8:77::/48, helo:mx.alumni.example and from:alumni.example, and the
per-domain exceptions file scenarios.EXCEPTIONS. One test class per policy
mode; each starts its own DNS world, daemon, milter and Postfix and stops
them at the end.
"""
import importlib.util
import os
import re
import sys
import time
import unittest

import mta
import scenarios as sc

SOURCE = os.environ.get("ALIGND_SOURCE_ROOT",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TABLE_DIR = os.path.join(SOURCE, "tests", "scenarios")
sys.path.insert(0, TABLE_DIR)     # scenlib, which the table imports
import scenlib  # noqa: E402


def _load_table():
    """tests/scenarios/scenarios.py under another name: this directory has
    its own scenarios module (the e2e world set-up)."""
    spec = importlib.util.spec_from_file_location(
        "indirect_table", os.path.join(TABLE_DIR, "scenarios.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TABLE = _load_table()
BY_NAME = {s["name"]: s for s in TABLE.SCENARIOS}
FORGED_NAMES = [s["name"] for s in TABLE.FORGED]

TRUST = ["--set", "trusted_arc_sealers=arclist.example fwd.example",
         "--set", "trusted_forwarders=198.51.100.176/28 2001:db8:77::/48 "
                  "helo:mx.alumni.example from:alumni.example"]

QUARANTINE_HEADER = "X-Alignd-Quarantine"
MILTER_REJECT = "milter-reject: END-OF-MESSAGE"
_serial = [0]


def unfold(value):
    """A header value on one line, runs of white space as one space."""
    return re.sub(r"\s+", " ", value).strip()


def build(name, world_dir):
    """The scenario's message with a Message-ID of its own (set before
    signing and sealing, so every signature covers it), and that id."""
    s = BY_NAME[name]
    _serial[0] += 1
    msgid = "<indirect.%s.%d.%d.%d@e2e.test>" % (name, os.getpid(), int(time.time()), _serial[0])
    msg, n = re.subn(rb"(?m)^Message-ID: [^\r\n]*", b"Message-ID: " + msgid.encode(), s["msg"], 1)
    assert n == 1, "no Message-ID in the scenario message %s" % name
    msg = scenlib.sign(msg, s.get("sign", []), world_dir)
    for f in s.get("after", []):
        msg = f(msg, world_dir) if getattr(f, "needs_world", False) else f(msg)
    if s.get("resign"):
        msg = scenlib.sign(msg, s["resign"], world_dir)
    return msg, msgid


class IndirectCase(sc.WorldCase):
    """One policy mode: world, daemon with the trust settings, milter, Postfix."""

    mode = None          # policy_mode; None: the default (rfc9989)
    profile = None       # the scenario table's profile of this mode

    @classmethod
    def more_daemon_args(cls, daemon_dir):
        path = os.path.join(daemon_dir, "policy-exceptions")
        with open(path, "w") as f:
            f.write(TABLE.EXCEPTIONS)
        args = TRUST + ["--set", "policy_exceptions=" + path]
        if cls.mode:
            args += ["--set", "policy_mode=" + cls.mode]
        return args

    @classmethod
    def setUpClass(cls):
        if cls.profile is None:
            raise unittest.SkipTest("base class")
        super().setUpClass()
        try:
            cls.pf = mta.Postfix("milter", cls.daemon.socket,
                                 milter_args=["-Q", "header", "-t", "20000"])
            cls.pf.start()
        except BaseException:
            if getattr(cls, "pf", None):
                cls.pf.cleanup()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.profile is None:
            return
        try:
            cls.pf.stop()
            log = cls.pf.milter_text()
            cls.pf.cleanup()
        finally:
            super().tearDownClass()
        if cls.pf.milter_rc != 0:
            raise AssertionError("alignd-milter exited with %s:\n%s" % (cls.pf.milter_rc, log[-4000:]))

    # ---- helpers ----

    def send(self, name):
        s = BY_NAME[name]
        msg, msgid = build(name, self.world.world_dir)
        mail_from = s.get("mail_from") or ""
        r = self.pf.send(mail_from, sc.INBOX, msg, client_ip=s["ip"], helo=s["helo"])
        return r, msgid

    def find(self, msgid, timeout):
        end = time.monotonic() + timeout
        while True:
            for m in self.pf.mailbox("inbox"):
                if (m["Message-ID"] or "").strip() == msgid:
                    return m
            if time.monotonic() >= end:
                return None
            time.sleep(0.2)

    def explain(self, r, extra=""):
        return "%s\n--- SMTP transcript ---\n%s\n--- milter log ---\n%s\n--- maillog ---\n%s\n" \
            "--- alignd log ---\n%s" % (extra, r.transcript, self.pf.milter_text()[-3000:],
                                        self.pf.log()[-3000:], self.daemon.logtext()[-3000:])

    def our_results(self, m):
        return [unfold(v) for v in sc.our_ar(m)]

    def check_ar(self, name, ours, r):
        s = BY_NAME[name]
        self.assertEqual(len(ours), 1, self.explain(r, "Authentication-Results of ours: %r" % ours))
        for want in s.get("ar", []):
            self.assertIn(want, ours[0], self.explain(r, name))
        for unwanted in s.get("noar", []):
            self.assertNotIn(unwanted, ours[0], self.explain(r, name))

    def expect_delivered(self, name, quarantined):
        """Sends the scenario, which must be accepted at end of DATA and
        delivered; returns the delivered message and our A-R (unfolded)."""
        s = BY_NAME[name]
        self.assertEqual(s["profile"] if "profile" in s else "default", self.profile, name)
        self.assertEqual(s["action"], "quarantine" if quarantined else "accept", name)
        r, msgid = self.send(name)
        reply = r.final_reply() or ""
        self.assertTrue(reply.startswith("250"), self.explain(r, name))
        m = self.find(msgid, timeout=20)
        self.assertIsNotNone(m, self.explain(r, "%s: %s not delivered" % (name, msgid)))
        ours = self.our_results(m)
        self.check_ar(name, ours, r)
        marks = m.get_all(QUARANTINE_HEADER) or []
        if quarantined:
            self.assertEqual(len(marks), 1, self.explain(r, "%s: %r" % (name, dict(m.items()))))
        else:
            self.assertEqual(marks, [], self.explain(r, name))
        return m, ours[0]

    def expect_rejected(self, name):
        """Sends the scenario, which must get 550 5.7.1 at end of DATA;
        the transcript goes to the test output. Nothing may be delivered
        or queued."""
        s = BY_NAME[name]
        self.assertEqual(s["profile"] if "profile" in s else "default", self.profile, name)
        self.assertEqual(s["action"], "reject", name)
        rejects = self.pf.log().count(MILTER_REJECT)
        r, msgid = self.send(name)
        sys.stdout.write("\nSMTP transcript of %s (policy_mode %s):\n%s\n"
                         % (name, self.mode or "rfc9989 (default)", r.transcript))
        sys.stdout.flush()
        reply = r.final_reply()
        self.assertIsNotNone(reply, self.explain(r, name))
        self.assertTrue(reply.startswith(s["smtp"]), self.explain(r, name))
        self.assertTrue(reply.startswith("550 5.7.1"), self.explain(r, name))
        self.assertIn("DMARC", reply, self.explain(r, name))
        # refused at end of DATA by the milter, not earlier by Postfix
        end = time.monotonic() + 10
        while self.pf.log().count(MILTER_REJECT) <= rejects and time.monotonic() < end:
            time.sleep(0.1)
        self.assertEqual(self.pf.log().count(MILTER_REJECT), rejects + 1, self.explain(r, name))
        self.assertIsNone(self.find(msgid, timeout=1), self.explain(r, name + " was delivered"))
        # nothing held or deferred either (earlier deliveries may still be
        # leaving the active queue for a moment)
        end = time.monotonic() + 10
        while self.pf.queue() and time.monotonic() < end:
            time.sleep(0.2)
        self.assertEqual(self.pf.queue(), [], self.explain(r, name + " left mail in the queue"))
        return r


class Rfc9989(IndirectCase):
    """policy_mode rfc9989 (the default)."""

    profile = "indirect"

    def test_1_list_rewrites_subject_trusted_sealer_delivered(self):
        m, ar = self.expect_delivered("arc_list_trusted_sealer", quarantined=False)
        # the list's rewrite arrived, and broke the author's signature
        self.assertEqual(unfold(m["Subject"]), "[team] Quarterly report")
        self.assertTrue(m.get_all("ARC-Seal"))
        self.assertIn("arc=pass", ar)
        self.assertIn("dkim=fail", ar)
        self.assertRegex(ar, r"dmarc=fail \([^)]*override=trusted_forwarder\)")
        self.assertIn("arclist.example", ar)
        # the list MTA's own result (another authserv-id) stays below ours
        others = [v for v in sc.ar_headers(m) if v.strip().startswith("lists.arclist.example")]
        self.assertEqual(len(others), 1, sc.ar_headers(m))

    def test_2_untrusted_sealer_rejected(self):
        # a valid chain from a sealer nobody trusts lowers nothing
        # (untrusted_arc = ignore): anyone can seal their own forgery
        self.expect_rejected("arc_list_other_sealer_untrusted")

    def test_3_list_without_arc_rejected(self):
        self.expect_rejected("arc_list_no_arc")

    def test_4_forged_arc_chains_rejected(self):
        # bad seal first (the brief's case), then wrong cv=, instance gaps,
        # duplicates, an edited AAR and a broken newest AMS
        self.assertEqual(FORGED_NAMES[0], "arc_forged_bad_seal")
        for name in FORGED_NAMES:
            with self.subTest(name):
                self.expect_rejected(name)

    def test_5_trusted_forwarder_delivered(self):
        # by address (XCLIENT ADDR inside 198.51.100.176/28), by HELO and
        # by SPF-authenticated envelope domain
        for name in ("fwd_trusted_by_prefix", "fwd_trusted_by_helo",
                     "fwd_trusted_by_envelope_domain"):
            with self.subTest(name):
                m, ar = self.expect_delivered(name, quarantined=False)
                self.assertRegex(ar, r"dmarc=fail \([^)]*override=trusted_forwarder\)")

    def test_6_direct_forgery_rejected(self):
        self.expect_rejected("direct_forgery_rfc9989")

    def test_7_forged_forwarder_identity_rejected(self):
        # claiming the trusted forwarder's HELO or envelope domain from an
        # unrelated address earns no override
        for name in ("fwd_forged_helo", "fwd_forged_envelope_domain"):
            with self.subTest(name):
                self.expect_rejected(name)

    def test_8_enforced_partner_domain_rejected_from_trusted_forwarder(self):
        self.expect_rejected("exc_enforce_beats_trusted_forwarder")


class Strict(IndirectCase):
    """policy_mode strict: RFC 7489 6.3 literally, no override at all."""

    mode = "strict"
    profile = "indirect-strict"

    def test_1_trusted_sealer_rejected(self):
        self.expect_rejected("arc_list_trusted_sealer_strict")

    def test_5_trusted_forwarder_rejected(self):
        self.expect_rejected("fwd_trusted_strict")

    def test_6_direct_forgery_rejected(self):
        self.expect_rejected("direct_forgery_strict")


class QuarantineOnly(IndirectCase):
    """policy_mode quarantine-only: never rejects on DMARC alone."""

    mode = "quarantine-only"
    profile = "indirect-qonly"

    def test_1_trusted_sealer_delivered(self):
        m, ar = self.expect_delivered("arc_list_trusted_sealer_qonly", quarantined=False)
        self.assertRegex(ar, r"dmarc=fail \([^)]*override=trusted_forwarder\)")

    def test_5_trusted_forwarder_delivered(self):
        m, ar = self.expect_delivered("fwd_trusted_qonly", quarantined=False)
        self.assertIn("override=trusted_forwarder", ar)

    def test_6_direct_forgery_quarantined(self):
        m, ar = self.expect_delivered("direct_forgery_qonly", quarantined=True)
        self.assertRegex(ar, r"dmarc=fail \([^)]*override=local_policy\)")

    def test_7_enforced_partner_domain_still_rejected(self):
        self.expect_rejected("exc_enforce_qonly")


if __name__ == "__main__":
    unittest.main(verbosity=2)
