"""End to end: one alignd-milter on a real Postfix signs outbound mail and
verifies inbound mail. Outbound: a client that authenticated (SASL, given
to Postfix by XCLIENT LOGIN) or one in the --internal network; its mail
leaves with alignd's DKIM signatures (RSA and Ed25519 of the world's
example.com keys), which python3-dkim verifies against the published
records, and is not DMARC-enforced. Inbound: verified as always, not
signed."""
import base64
import os
import time
import unittest

import dkim

import mta
import scenarios as sc

ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
INTERNAL_NET = "198.51.100.0/28"


class PostfixSign(sc.WorldCase):
    @classmethod
    def more_daemon_args(cls, daemon_dir):
        wd = cls.world.world_dir
        lines = []
        for sel in ("s2048", "ed"):
            k = [x for x in cls.world.info["dkim"]
                 if x["domain"] == "example.com" and x["selector"] == sel][0]
            with open(os.path.join(wd, k["private_key"]), "rb") as f:
                data = f.read()
            if k["alg"] == "ed25519":
                der = ED25519_PKCS8 + base64.b64decode(data.strip())
                data = (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) +
                        b"-----END PRIVATE KEY-----\n")
            path = os.path.join(daemon_dir, "example.com.%s.key" % sel)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
            lines.append("example.com %s %s\n" % (sel, path))
        table = os.path.join(daemon_dir, "signing.table")
        with open(table, "w") as f:
            f.writelines(lines)
        return ["--set", "dkim_sign_table=" + table]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.txt = {"%s._domainkey.%s." % (k["selector"], k["domain"]): k["txt"]
                   for k in cls.world.info["dkim"]}
        try:
            cls.pf = mta.Postfix("milter", cls.daemon.socket,
                                 milter_args=["-Q", "header", "-t", "20000", "-A",
                                              "-I", INTERNAL_NET])
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
        if cls.pf.milter_rc != 0:
            raise AssertionError("alignd-milter exited with %s:\n%s" % (cls.pf.milter_rc, log[-4000:]))

    def dns(self, name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return self.txt.get(n, "").encode()

    def delivered_raw(self, subject, timeout=20):
        end = time.monotonic() + timeout
        new = os.path.join(self.pf.mail, "inbox", "new")
        while time.monotonic() < end:
            for p in os.listdir(new) if os.path.isdir(new) else ():
                with open(os.path.join(self.pf.mail, "inbox", "new", p), "rb") as f:
                    data = f.read()
                if b"\nSubject: " + subject.encode() + b"\n" in data:
                    return data
            time.sleep(0.2)
        return None

    def explain(self, r):
        return "\n--- SMTP transcript ---\n%s\n--- milter log ---\n%s\n--- maillog ---\n%s\n" \
            "--- alignd log ---\n%s" % (r.transcript, self.pf.milter_text()[-3000:],
                                        self.pf.log()[-3000:], self.daemon.logtext()[-3000:])

    def check_signed(self, data, r):
        self.assertIsNotNone(data, self.explain(r))
        # Maildir holds LF line ends; verifiers read the message as sent
        msg = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.assertEqual(msg.count(b"\r\nDKIM-Signature: ") + msg.startswith(b"DKIM-Signature: "),
                         2, msg[:2000])
        self.assertNotIn(b"Authentication-Results: " + mta.AUTHSERV_ID.encode(), msg)
        # each signature on its own, verified by python3-dkim (it checks
        # the topmost signature: drop the other one first)
        head, body = msg.split(b"\r\n\r\n", 1)
        fields, cur = [], None
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and cur is not None:
                cur.append(line)
            else:
                cur = [line]
                fields.append(cur)
        sigs = [f for f in fields if f[0].startswith(b"DKIM-Signature:")]
        rest = [f for f in fields if not f[0].startswith(b"DKIM-Signature:")]
        algs = []
        for s in sigs:
            one = b"\r\n".join(b"\r\n".join(f) for f in [s] + rest) + b"\r\n\r\n" + body
            self.assertTrue(dkim.verify(one, dnsfunc=self.dns, minkey=1024),
                            b"\r\n".join(s).decode() + self.explain(r))
            algs.append(b"a=rsa-sha256" in b"".join(s) and "rsa" or "ed25519")
        self.assertEqual(sorted(algs), ["ed25519", "rsa"])

    def test_1_authenticated_client_is_signed_not_enforced(self):
        # from an address example.com's SPF does not allow: inbound, this
        # would be rejected (p=reject); outbound it is signed and leaves
        msg = mta.make_message("Alice <alice@example.com>", sc.INBOX, "from the road",
                               body="Sent from a hotel.\r\n")
        r = self.pf.send("alice@example.com", sc.INBOX, msg, client_ip="203.0.113.50",
                         helo="laptop.example.net", login="alice")
        self.assertTrue(r.final_reply().startswith("250"), self.explain(r))
        self.check_signed(self.delivered_raw("from the road"), r)
        self.assertIn("outbound (authenticated)", self.pf.milter_text())

    def test_2_internal_network_is_signed(self):
        msg = mta.make_message("Printer <scanner@example.com>", sc.INBOX, "scan 0042",
                               body="Your scan.\r\n")
        r = self.pf.send("scanner@example.com", sc.INBOX, msg, client_ip="198.51.100.7",
                         helo="printer.example.com")
        self.assertTrue(r.final_reply().startswith("250"), self.explain(r))
        self.check_signed(self.delivered_raw("scan 0042"), r)
        self.assertIn("outbound (internal network)", self.pf.milter_text())

    def test_3_outside_mail_is_verified_not_signed(self):
        s = sc.spoofed()
        r = self.pf.send(s.mail_from, sc.INBOX, s.msg, client_ip=s.client_ip, helo=s.helo)
        self.assertTrue(r.final_reply().startswith("550 5.7.1"), self.explain(r))
        # an aligned message from outside: verified, results added, no
        # signature of ours
        s = sc.aligned(self.world.world_dir, subject="inbound aligned")
        r = self.pf.send(s.mail_from, sc.INBOX, s.msg, client_ip=s.client_ip, helo=s.helo)
        self.assertTrue(r.final_reply().startswith("250"), self.explain(r))
        data = self.delivered_raw("inbound aligned")
        self.assertIsNotNone(data, self.explain(r))
        self.assertIn(b"Authentication-Results: " + mta.AUTHSERV_ID.encode(), data)
        self.assertIn(b"dmarc=pass", data)
        self.assertEqual(data.count(b"DKIM-Signature:"), 1)   # only the sender's own


if __name__ == "__main__":
    unittest.main(verbosity=2)
