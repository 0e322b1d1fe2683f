"""Outbound DKIM signing through the real daemon: the signing table with
keys of the test DNS world, the SIGN request, and the signed message
verified twice, by the same daemon's SCAN against the world's published
records (DMARC aligned) and by python3-dkim. Key file checks at start-up,
and reloads on SIGHUP."""
import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import dkim

from dnsworld import World
import re

from harness import Daemon, RecvBuffer, field, run_alignc, scan_request

# PKCS#8 for an Ed25519 private key: this prefix, then the 32-byte seed
ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def sign_request(msg):
    return b"SIGN ALIGND/1\r\nContent-Length: %d\r\n\r\n" % len(msg) + msg


def message(frm, subject="outbound"):
    return ("From: Alice <%s>\r\nTo: bob@example.net\r\nSubject: %s\r\n"
            "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <%s@example.com>\r\n\r\nHello Bob,\r\n\r\n"
            "a message that leaves signed.\r\n" % (frm, subject, subject)).encode()


def signatures(reply):
    """The DKIM-Signature fields of a SIGN reply, as bytes to prepend."""
    head = reply.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    out, cur = [], None
    for line in head.split(b"\r\n")[1:]:
        if line.startswith(b"DKIM-Signature:"):
            cur = [line]
            out.append(cur)
        elif line[:1] in (b" ", b"\t") and cur is not None:
            cur.append(line)
        else:
            cur = None
    return [b"\r\n".join(c) + b"\r\n" for c in out]


class SignDaemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.world = World(cache_dir=os.environ.get("ALIGND_BUILD_ROOT"))
        cls.world.__enter__()
        cls.keys = {(k["domain"], k["selector"]): k for k in cls.world.info["dkim"]}
        cls.txt = {"%s._domainkey.%s." % (k["selector"], k["domain"]): k["txt"]
                   for k in cls.world.info["dkim"]}

    @classmethod
    def tearDownClass(cls):
        cls.world.__exit__(None, None, None)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="alignd-sign-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def key_file(self, domain, selector, mode=0o600):
        k = self.keys[(domain, selector)]
        with open(os.path.join(self.world.world_dir, k["private_key"]), "rb") as f:
            data = f.read()
        if k["alg"] == "ed25519":
            der = ED25519_PKCS8 + base64.b64decode(data.strip())
            data = (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) +
                    b"-----END PRIVATE KEY-----\n")
        path = os.path.join(self.dir, "%s.%s.pem" % (domain, selector))
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def table(self, lines):
        path = os.path.join(self.dir, "signing.table")
        with open(path, "w") as f:
            f.write("# domain selector keyfile [subdomains]\n")
            for ln in lines:
                f.write(ln + "\n")
        return path

    def standard_table(self):
        return self.table([
            "example.com s2048 %s subdomains" % self.key_file("example.com", "s2048"),
            "example.com ed    %s" % self.key_file("example.com", "ed"),
            "esp.example esp1  %s" % self.key_file("esp.example", "esp1"),
        ])

    def daemon(self, table, extra=""):
        conf = "dkim_sign_table = %s\ndkim_sign_fallback = esp.example\n%s" % (table, extra)
        return Daemon(config=conf, world=self.world)

    def dns(self, name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return self.txt.get(n, "").encode()

    def py_verify_each(self, sigs, msg):
        """python3-dkim's verdict on each signature alone."""
        return [dkim.verify(s + msg, dnsfunc=self.dns, minkey=1024) for s in sigs]

    def test_sign_then_verify(self):
        with self.daemon(self.standard_table()) as d:
            msg = message("alice@example.com")
            rep = d.request(sign_request(msg))
            self.assertTrue(rep.startswith(b"ALIGND/1 200 OK\r\n"), rep)
            self.assertEqual(field(rep, "Sign-Domain"), "example.com")
            self.assertEqual(field(rep, "Signatures"), "2")
            sigs = signatures(rep)
            self.assertEqual(len(sigs), 2)
            self.assertIn(b"a=rsa-sha256", sigs[0])
            self.assertIn(b"a=ed25519-sha256", sigs[1])
            self.assertIn(b"c=relaxed/relaxed", sigs[0])
            self.assertEqual(self.py_verify_each(sigs, msg), [True, True])
            # counted in STATS (and /metrics, from the same counters)
            st = d.request(b"STATS\r\n\r\n")
            self.assertEqual(field(st, "Sign-Signed"), "1")
            self.assertEqual(field(st, "Signatures-RSA-SHA256"), "1")
            self.assertEqual(field(st, "Signatures-Ed25519-SHA256"), "1")
            self.assertEqual(field(st, "Sign-Refused"), "0")
            signed = b"".join(sigs) + msg
            # the same daemon verifies it against the published records
            rep = d.request(scan_request(signed, ip="192.0.2.10", helo="mail.example.com",
                                         mail_from="alice@example.com"))
            ar = field(rep, "Authentication-Results")
            self.assertIn("dkim=pass", ar)
            self.assertIn("header.s=s2048", ar)
            self.assertIn("header.s=ed", ar)
            self.assertIn("dmarc=pass", ar)
            self.assertNotIn("dkim=fail", ar)
            # changed after signing: neither verifier passes it
            bad = signed.replace(b"leaves signed", b"leaves changed")
            self.assertEqual(self.py_verify_each(
                sigs, msg.replace(b"leaves signed", b"leaves changed")), [False, False])
            rep = d.request(scan_request(bad, ip="192.0.2.10", helo="mail.example.com",
                                         mail_from="alice@example.com"))
            self.assertNotIn("dkim=pass", field(rep, "Authentication-Results"))

    def test_subdomain_and_fallback(self):
        with self.daemon(self.standard_table()) as d:
            # a subdomain: only the entry marked subdomains, d= the parent
            msg = message("news@news.example.com")
            rep = d.request(sign_request(msg))
            self.assertEqual(field(rep, "Sign-Domain"), "example.com", rep)
            sigs = signatures(rep)
            self.assertEqual(len(sigs), 1)
            self.assertIn(b"s=s2048", sigs[0])
            self.assertEqual(self.py_verify_each(sigs, msg), [True])
            # a domain without an entry: the fallback domain signs
            msg = message("shop@shop.example")
            rep = d.request(sign_request(msg))
            self.assertEqual(field(rep, "Sign-Domain"), "esp.example", rep)
            sigs = signatures(rep)
            self.assertEqual(self.py_verify_each(sigs, msg), [True])

    def test_no_fallback_and_errors(self):
        table = self.table(["example.com s2048 %s" % self.key_file("example.com", "s2048")])
        with Daemon(config="dkim_sign_table = %s\n" % table, world=self.world) as d:
            with d.connect() as s:
                buf = RecvBuffer(s)
                # not in the table, no fallback: answered, nothing to add
                s.sendall(sign_request(message("x@other.example")))
                rep = buf.reply()
                self.assertTrue(rep.startswith(b"ALIGND/1 200"), rep)
                self.assertEqual(field(rep, "Signatures"), "0")
                self.assertIsNone(field(rep, "Sign-Domain"))
                # no subdomains option: a subdomain is not signed
                s.sendall(sign_request(message("a@news.example.com")))
                self.assertEqual(field(buf.reply(), "Signatures"), "0")
                # no From: refused, the connection stays usable
                s.sendall(sign_request(b"To: a@example.com\r\n\r\nbody\r\n"))
                rep = buf.reply()
                self.assertTrue(rep.startswith(b"ALIGND/1 400 cannot sign"), rep)
                s.sendall(b"PING\r\n\r\n")
                self.assertTrue(buf.reply().startswith(b"ALIGND/1 200 PONG"))
                s.sendall(b"STATS\r\n\r\n")
                st = buf.reply()
                self.assertEqual(field(st, "Sign-Refused"), "1")
                self.assertEqual(field(st, "Sign-Signed"), "2")    # with nothing to add
                self.assertEqual(field(st, "Signatures-RSA-SHA256"), "0")
                # SIGN needs a Content-Length
                s.sendall(b"SIGN ALIGND/1\r\n\r\n")
                self.assertTrue(buf.reply().startswith(b"ALIGND/1 411"))
        with Daemon(world=self.world) as d:
            rep = d.request(sign_request(message("alice@example.com")))
            self.assertTrue(rep.startswith(b"ALIGND/1 403"), rep)

    def refuses(self, table, words):
        d = self.daemon(table)
        d.start(wait=False)
        try:
            rc = d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            d.stop()
            self.fail("the daemon started with a bad key file")
        self.assertNotEqual(rc, 0)
        log = d.logtext()
        d.log.close()
        shutil.rmtree(d.dir, ignore_errors=True)
        for w in words:
            self.assertIn(w, log)
        return log

    def test_refuses_bad_key_files(self):
        loose = self.key_file("example.com", "s2048", mode=0o640)
        self.refuses(self.table(["example.com s2048 %s" % loose]), [loose, "0640"])
        world_readable = self.key_file("example.com", "ed", mode=0o644)
        self.refuses(self.table(["example.com ed %s" % world_readable]), [world_readable])
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        os.chmod(junk, 0o600)
        self.refuses(self.table(["example.com s1 %s" % junk]), [junk, "not a PEM private key"])
        # an encrypted key is refused, never asked a passphrase for
        enc = os.path.join(self.dir, "encrypted.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-aes256",
                        "-pass", "pass:secret", "-out", enc], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
        os.chmod(enc, 0o600)
        self.refuses(self.table(["example.com s1 %s" % enc]), [enc, "encrypted"])
        missing = os.path.join(self.dir, "missing.pem")
        self.refuses(self.table(["example.com s1 %s" % missing]), [missing])

    def test_reload_on_sighup(self):
        table = self.standard_table()
        with self.daemon(table) as d:
            self.assertEqual(field(d.request(sign_request(message("a@example.com"))),
                                   "Signatures"), "2")
            # the ed25519 line removed: after SIGHUP one signature
            with open(table, "w") as f:
                f.write("example.com s2048 %s\n" % self.key_file("example.com", "s2048"))
                f.write("esp.example esp1 %s\n" % self.key_file("esp.example", "esp1"))
            d.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            n = None
            while time.monotonic() < deadline:
                n = field(d.request(sign_request(message("a@example.com"))), "Signatures")
                if n == "1":
                    break
                time.sleep(0.1)
            self.assertEqual(n, "1")
            # a reload with a bad key keeps the running table
            bad = self.key_file("example.com", "ed", mode=0o644)
            with open(table, "a") as f:
                f.write("example.com ed %s\n" % bad)
            d.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "reload failed" not in d.logtext():
                time.sleep(0.1)
            self.assertIn("reload failed", d.logtext())
            self.assertIn(bad, d.logtext())
            rep = d.request(sign_request(message("a@example.com")))
            self.assertEqual(field(rep, "Signatures"), "1")
            self.assertEqual(self.py_verify_each(signatures(rep), message("a@example.com")),
                             [True])

    def test_next_selector(self):
        """A 'next' entry signs only once its record is published and holds
        its key: ed (published, matching) is taken up after the first SIGN
        looked it up; s1024 (published, another key) and unpublished ones
        never are."""
        fresh = os.path.join(self.dir, "fresh.key")
        r = run_alignc("keygen", "--domain", "example.com", "--selector", "x",
                       "--type", "ed25519", "--out", fresh)
        self.assertEqual(r.returncode, 0, r.stderr)
        table = self.table([
            "example.com s2048 %s" % self.key_file("example.com", "s2048"),
            "example.com ed %s next" % self.key_file("example.com", "ed"),
            "example.com s1024 %s next" % fresh,
            "example.com unpublished %s subdomains next" % fresh,
        ])
        with Daemon(config="dkim_sign_table = %s\n" % table, world=self.world) as d:
            msg = message("alice@example.com")
            # nothing is looked up before a SIGN asks
            time.sleep(0.3)
            self.assertNotIn("is published and matches", d.logtext())
            self.assertNotIn("next selector", d.logtext())
            rep = d.request(sign_request(msg))
            # the first SIGN starts the lookups when its header arrives; the
            # answer may come before its body has, so it signs with s2048
            # and perhaps already ed, never with the others
            sigs = signatures(rep)
            self.assertIn(len(sigs), (1, 2), rep)
            self.assertIn(b"s=s2048", sigs[0])
            self.assertTrue(all(b"s=s1024" not in g and b"s=unpublished" not in g
                                for g in sigs), rep)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "is published and matches" not in d.logtext():
                time.sleep(0.1)
            rep = d.request(sign_request(msg))
            sigs = signatures(rep)
            self.assertEqual(len(sigs), 2, rep + d.logtext().encode())
            self.assertIn(b"s=s2048", sigs[0])
            self.assertIn(b"s=ed", sigs[1])
            self.assertEqual(self.py_verify_each(sigs, msg), [True, True])
            log = d.logtext()
            self.assertIn("next selector s1024._domainkey.example.com: the record does not match", log)
            self.assertIn("unpublished._domainkey.example.com: nxdomain", log)

    def test_alignc_sign(self):
        with self.daemon(self.standard_table()) as d:
            path = os.path.join(self.dir, "out.eml")
            msg = message("alice@example.com")
            with open(path, "wb") as f:
                f.write(msg)
            r = run_alignc("sign", "-s", d.socket, path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.endswith(msg))
            self.assertTrue(r.stdout.startswith(b"DKIM-Signature: v=1;"))
            self.assertTrue(dkim.verify(r.stdout, dnsfunc=self.dns, minkey=1024))
            r = run_alignc("sign", "--fields", "-s", d.socket, path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.count(b"DKIM-Signature:"), 2)
            self.assertNotIn(b"Hello Bob", r.stdout)
            # a message with LF line ends gets LF fields, from standard input
            lf = msg.replace(b"\r\n", b"\n")
            r = run_alignc("sign", "-s", d.socket, input=lf)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(b"\r", r.stdout)
            self.assertTrue(dkim.verify(r.stdout, dnsfunc=self.dns, minkey=1024))
            # nothing to sign with (the fallback is only for the table's
            # own daemon): exit 1, the message unchanged
        table = self.table(["example.com s2048 %s" % self.key_file("example.com", "s2048")])
        with Daemon(config="dkim_sign_table = %s\n" % table, world=self.world) as d:
            other = message("a@example.net")
            r = run_alignc("sign", "-s", d.socket, input=other)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stdout, other)

    def test_alignc_keygen_and_keycheck(self):
        for typ, alg in (("rsa", b"rsa-sha256"), ("ed25519", b"ed25519-sha256")):
            key = os.path.join(self.dir, "fresh-%s.key" % typ)
            r = run_alignc("keygen", "--domain", "example.com", "--selector", "fresh",
                           "--type", typ, "--out", key)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
            out = r.stdout.decode()
            self.assertIn("fresh._domainkey.example.com. IN TXT", out)
            record = "".join(re.findall(r'"([^"]*)"', out))
            # the new key signs in the daemon; its printed record verifies it
            table = self.table(["example.com fresh %s" % key])
            with Daemon(config="dkim_sign_table = %s\n" % table, world=self.world) as d:
                msg = message("alice@example.com")
                rep = d.request(sign_request(msg))
                sigs = signatures(rep)
                self.assertEqual(len(sigs), 1, rep)
                self.assertIn(b"a=" + alg, sigs[0])
                keys = {"fresh._domainkey.example.com.": record}
                self.assertTrue(dkim.verify(sigs[0] + msg, minkey=1024,
                                            dnsfunc=lambda n, timeout=5: keys.get(
                                                n.decode(), "").encode()))
            # an existing file is never overwritten
            r = run_alignc("keygen", "--domain", "example.com", "--selector", "fresh",
                           "--type", typ, "--out", key)
            self.assertNotEqual(r.returncode, 0)
        with Daemon(world=self.world) as d:
            # the world publishes s2048 and ed for example.com: they match
            for sel in ("s2048", "ed"):
                r = run_alignc("keycheck", "-s", d.socket, "--domain", "example.com",
                               "--selector", sel, "--key", self.key_file("example.com", sel))
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn(b"matches", r.stdout)
            # a fresh key does not match the published s2048 record
            r = run_alignc("keycheck", "-s", d.socket, "--domain", "example.com",
                           "--selector", "s2048", "--key",
                           os.path.join(self.dir, "fresh-rsa.key"))
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(b"does NOT match", r.stdout)
            # nothing published at this selector
            r = run_alignc("keycheck", "-s", d.socket, "--domain", "example.com",
                           "--selector", "none", "--key",
                           os.path.join(self.dir, "fresh-rsa.key"))
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
