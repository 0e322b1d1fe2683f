"""End to end: Exim's built-in content scanner (spamd_address ...
variant=rspamd) asks alignd's rspamd-compatible endpoint, over a UNIX
socket and over TCP on 127.0.0.1, with the data ACL of docs/MTA.md."""
import os
import re
import sys
import unittest

import mta
import scenarios as sc


def replies(out):
    """The SMTP replies of an exim -bh session, multi-line ones joined."""
    res, cur = [], []
    for line in out.splitlines():
        m = re.match(r"^(\d{3})([ -])(.*)$", line)
        if not m:
            continue
        cur.append(m.group(3))
        if m.group(2) == " ":
            res.append(m.group(1) + " " + " ".join(cur))
            cur = []
    return res


class EximBase(sc.WorldCase):
    transport = None

    @classmethod
    def more_daemon_args(cls, daemon_dir):
        if cls.transport == "tcp":
            cls.http_port = mta.free_tcp_port()
            cls.spamd_address = "127.0.0.1 %d variant=rspamd" % cls.http_port
            return ("--set", "http_listen=127.0.0.1:%d" % cls.http_port)
        path = os.path.join(daemon_dir, "http.sock")
        cls.spamd_address = "%s variant=rspamd" % path
        return ("--set", "http_listen=unix:" + path)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.exim = mta.Exim(os.path.join(sc.BUILD or "/tmp", "tests", "e2e", "exim-cache"))
            why = cls.exim.unavailable()
            if why:
                raise unittest.SkipTest(why)
            cls.exim.configure(cls.spamd_address)
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.exim.cleanup()
        finally:
            super().tearDownClass()

    def run_scenario(self, s):
        out, err = self.exim.bh(s.client_ip, s.helo, s.mail_from, sc.INBOX, s.msg)
        return replies(out), out, err

    def test_1_spoofed_rejected(self):
        r, out, err = self.run_scenario(sc.spoofed())
        sys.stdout.write("\nexim -bh transcript (%s):\n%s\n" % (self.transport, out))
        final = [x for x in r if not x.startswith(("220", "221", "250", "354"))]
        self.assertTrue(final, out + err[-3000:])
        self.assertTrue(final[0].startswith("550 5.7.1"), final)
        self.assertIn("DMARC policy of example.com", final[0])

    def test_2_aligned_accepted_with_results(self):
        s = sc.aligned(self.world.world_dir)
        r, out, err = self.run_scenario(s)
        self.assertTrue(any(x.startswith("250 OK id=") for x in r), out + err[-3000:])
        # the ACL trace shows the header value the ACL adds
        m = re.search(r"check set acl_m_ar = .*\n>>> +=\s*(.*)", err)
        self.assertIsNotNone(m, err[-3000:])
        ar = m.group(1)
        self.assertTrue(ar.startswith(mta.AUTHSERV_ID + ";"), ar)
        self.assertIn("dkim=pass", ar)
        self.assertIn("dmarc=pass", ar)
        self.assertIn("add_header = :at_start:Authentication-Results: $acl_m_ar", err)


class EximUnix(EximBase):
    transport = "unix"


class EximTcp(EximBase):
    transport = "tcp"


# only the transports run; the base class holds the shared tests
del EximBase

if __name__ == "__main__":
    unittest.main(verbosity=2)
