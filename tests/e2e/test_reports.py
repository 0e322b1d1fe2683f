"""DMARC aggregate reports end to end: the real daemon scans messages into
its SQLite history store, alignd-report builds the day's reports from it,
looks up the rua= destinations through the validating DNS world, and
submits the reports to a real Postfix on loopback, which delivers them to
Maildir mailboxes. Checked: the files validate against the RFC 9990
schema (xmllint), the counts match what was scanned, the mails parse, the
external destination without consent and the one whose size limit is too
small get nothing, a second run sends nothing again, and --dry-run sends
nothing at all."""
import datetime
import glob
import json
import gzip
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

import harness
import mta
from dnsworld import World

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
REPORT = os.path.join(BUILD, "server", "alignd-report")
SOURCE = os.environ.get("ALIGND_SOURCE_ROOT",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA = os.path.join(SOURCE, "..", "shared", "conformance", "dmarc-reports", "dmarc-2.0.xsd")
WORLD_CACHE = os.path.join(BUILD, "tests", "e2e", "world-cache") if BUILD else None
NS = {"d": "urn:ietf:params:xml:ns:dmarc-2.0"}

BOXES = {"agg@reports.example": "agg/", "ext@thirdparty.example": "ext/",
         "nover@unverified.example": "nover/", "tiny@reports.example": "tiny/",
         "dmarc@example.com": "examplecom/", "ruf@failures.example": "ruf/",
         "ruf@thirdparty.example": "rufext/", "ruf@unverified.example": "rufnover/"}


def message(frm, subject):
    return mta.make_message(frm, "inbox@test.example", subject)


class ReportCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = mta.missing_tools()
        if why:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="alignd-reports-")
        mta.world_dir_readable(cls.tmp)
        cls.history = "sqlite:" + os.path.join(cls.tmp, "history.sqlite")
        cls.world = World(cache_dir=WORLD_CACHE)
        cls.world.start()
        cls.postfix = None
        try:
            cls.daemon = harness.Daemon("--set", "history=" + cls.history, world=cls.world)
            cls.daemon.start()
            cls.scan_day()
            # the writer drains its queue on SIGTERM: every record is in
            rc = cls.daemon.stop()
            assert rc == 0, "alignd exited with %s:\n%s" % (rc, cls.daemon.logtext()[-4000:])
            cls.postfix = mta.Postfix("plain", None, boxes=BOXES)
            cls.postfix.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.postfix:
                cls.postfix.cleanup()
            cls.daemon.cleanup()
        finally:
            cls.world.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def scan_day(cls):
        """5 messages of reports.example (3 from its SPF-allowed address,
        2 spoofed from elsewhere) and 2 spoofs of example.com."""
        cls.expected = {"reports.example": 5, "example.com": 2}
        sends = [("192.0.2.60", "ok@reports.example", "<ok@reports.example>")] * 3 + \
                [("203.0.113.66", "x@evil.example.net", "<boss@reports.example>")] * 2 + \
                [("203.0.113.67", "y@evil.example.net", "<ceo@example.com>")] * 2
        for i, (ip, mfrom, hfrom) in enumerate(sends):
            r = cls.daemon.request(harness.scan_request(
                message(hfrom, "day %d" % i), ip=ip, helo="mail.test", mail_from=mfrom,
                rcpt=["inbox@test.example"], queue_id="Q%d" % i))
            assert b" 200 " in r.split(b"\r\n", 1)[0], r

    def run_report(self, *extra, out=None):
        cmd = [REPORT]
        cmd += ["--set", "history=" + self.history,
                "--set", "authserv_id=mx.test.example",
                "--set", "unbound_config=" + self.world.unbound_conf,
                "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive",
                "--set", "report_dir=" + os.path.join(self.tmp, "reports"),
                "--set", "report_smtp=smtp://127.0.0.1:%d" % self.postfix.port,
                "--set", "report_smtp_tls=off", "--set", "report_pace=0",
                "--day", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")]
        if out:
            cmd += ["--out", out]
        cmd += list(extra)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print("$ alignd-report %s\n%s%s" % (" ".join(extra), p.stdout, p.stderr))
        return p

    def files(self, out):
        return sorted(glob.glob(os.path.join(out, "*.xml.gz")))

    def check_report(self, path, domain, count):
        self.assertTrue(os.path.basename(path).startswith("mx.test.example!%s!" % domain), path)
        with open(path, "rb") as f:
            xml = gzip.decompress(f.read())
        plain = path[:-3]
        with open(plain, "wb") as f:
            f.write(xml)
        v = subprocess.run(["xmllint", "--noout", "--schema", SCHEMA, plain],
                           capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stderr)
        root = ET.fromstring(xml)
        self.assertEqual(root.find("d:policy_published/d:domain", NS).text, domain)
        total = sum(int(c.text) for c in root.findall("d:record/d:row/d:count", NS))
        self.assertEqual(total, count)
        return root

    def test_1_dry_run_sends_nothing(self):
        out = os.path.join(self.tmp, "dry")
        p = self.run_report("--dry-run", out=out)
        self.assertEqual(p.returncode, 0)
        files = self.files(out)
        self.assertEqual(len(files), 2, files)
        for f in files:
            dom = "example.com" if "!example.com!" in f else "reports.example"
            root = self.check_report(f, dom, self.expected[dom])
            if dom == "reports.example":
                # 3 aligned SPF passes from one source, 2 spoofs from another
                rows = {r.find("d:source_ip", NS).text: r for r in root.findall("d:record/d:row", NS)}
                self.assertEqual(rows["192.0.2.60"].find("d:count", NS).text, "3")
                self.assertEqual(rows["192.0.2.60"].find("d:policy_evaluated/d:spf", NS).text, "pass")
                self.assertEqual(rows["192.0.2.60"].find("d:policy_evaluated/d:disposition", NS).text, "pass")
                self.assertEqual(rows["203.0.113.66"].find("d:policy_evaluated/d:disposition", NS).text,
                                 "quarantine")
        self.assertIn("would send", p.stdout)
        self.assertIn("nover@unverified.example: not sent, external destination without", p.stdout)
        time.sleep(1)
        self.assertEqual(self.postfix.mailbox("agg/"), [])

    def test_2_send_once(self):
        p = self.run_report()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        agg = self.postfix.wait_mail("agg/", 1)
        ext = self.postfix.wait_mail("ext/", 1)
        ecom = self.postfix.wait_mail("examplecom/", 1)
        self.assertEqual((len(agg), len(ext), len(ecom)), (1, 1, 1))
        m = agg[0]
        self.assertTrue(m["Subject"].startswith(
            "Report Domain: reports.example Submitter: mx.test.example Report-ID: <"), m["Subject"])
        parts = m.get_payload()
        self.assertEqual([x.get_content_type() for x in parts], ["text/plain", "application/gzip"])
        sent = parts[1].get_payload(decode=True)
        on_disk = [f for f in self.files(os.path.join(self.tmp, "reports", "out"))
                   if "!reports.example!" in f]
        self.assertEqual(len(on_disk), 1)
        with open(on_disk[0], "rb") as f:
            self.assertEqual(sent, f.read())
        self.check_report(on_disk[0], "reports.example", 5)
        # no consent, and a size limit of 1 byte: nothing
        self.assertEqual(self.postfix.mailbox("nover/"), [])
        self.assertEqual(self.postfix.mailbox("tiny/"), [])
        self.assertIn("tiny@reports.example: not sent", p.stdout)
        # a re-run (after a crash, or by mistake) sends nothing twice
        p2 = self.run_report()
        self.assertEqual(p2.returncode, 0)
        self.assertIn("already done", p2.stdout)
        time.sleep(2)
        self.assertEqual(len(self.postfix.mailbox("agg/")), 1)
        self.assertEqual(len(self.postfix.mailbox("ext/")), 1)

    def test_3_suppressed(self):
        out = os.path.join(self.tmp, "supp")
        p = self.run_report("--dry-run", "--set", "report_suppress=reports.example", out=out)
        self.assertEqual(p.returncode, 0)
        self.assertIn("reports.example: suppressed", p.stdout)
        self.assertEqual(len(self.files(out)), 1)

    def test_4_errors(self):
        p = subprocess.run([REPORT, "--set", "history=off"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 78)
        self.assertIn("history = off", p.stderr)
        p = subprocess.run([REPORT, "--day", "2026-13-45", "--set", "history=" + self.history],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 64)

    def test_5_summary(self):
        """alignd-report --summary: the same records, per author domain,
        with the sources that failed most; text and JSON."""
        base = [REPORT, "--set", "history=" + self.history, "--summary", "--since", "1d"]
        p = subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["messages"], 7)
        self.assertEqual(doc["failing"], 4)
        doms = {d["domain"]: d for d in doc["domains"]}
        self.assertEqual(set(doms), {"reports.example", "example.com"})
        r = doms["reports.example"]
        self.assertEqual((r["messages"], r["pass"], r["failing"]), (5, 3, 2))
        self.assertEqual([(s["ip"], s["failing"], s["envelope_from"]) for s in r["sources"]],
                         [("203.0.113.66", 2, "evil.example.net")])
        e = doms["example.com"]
        self.assertEqual((e["messages"], e["failing"]), (2, 2))
        self.assertEqual(e["failing_dispositions"]["reject"], 2)
        self.assertEqual(e["sources"][0]["ip"], "203.0.113.67")
        # the order: most failures first (2 each: more messages first)
        self.assertEqual(doc["domains"][0]["domain"], "reports.example")
        p = subprocess.run(base + ["--domain", "example.com"], capture_output=True, text=True,
                           timeout=60)
        print(p.stdout)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("example.com: 2 messages, 0 pass, 2 fail (2 rejected", p.stdout)
        self.assertIn("203.0.113.67", p.stdout)
        self.assertNotIn("reports.example", p.stdout)
        # nothing in the period
        p = subprocess.run(base[:-1] + ["2000-01-01", "--json"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["messages"], 7)
        p = subprocess.run([REPORT, "--summary", "--day", "2026-01-01"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 64, p.stderr)
        p = subprocess.run(base[:-1] + ["yesterday"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 64, p.stderr)

    def test_6_retry_backoff_expiry(self):
        """A report that fails for now is kept in the ledger, not retried
        before its back-off, sent when due, and expires after
        report_retry_days; --status shows each step."""
        rdir = os.path.join(self.tmp, "reports-retry")
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

        def report(*extra, smtp=None, day=True):
            cmd = [REPORT, "--set", "history=" + self.history,
                   "--set", "authserv_id=mx.test.example",
                   "--set", "unbound_config=" + self.world.unbound_conf,
                   "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive",
                   "--set", "report_dir=" + rdir,
                   "--set", "report_smtp=" + (smtp or "smtp://127.0.0.1:%d" % self.postfix.port),
                   "--set", "report_smtp_tls=off", "--set", "report_pace=0",
                   "--domain", "example.com"] + (["--day", today] if day else []) + list(extra)
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            print("$ alignd-report %s\n%s%s" % (" ".join(extra), p.stdout, p.stderr))
            return p

        def status():
            p = subprocess.run([REPORT, "--set", "report_dir=" + rdir, "--status"],
                               capture_output=True, text=True, timeout=60)
            print(p.stdout, p.stderr)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout

        def ledger():
            d = os.path.join(rdir, "ledger")
            out = {}
            for n in os.listdir(d):
                with open(os.path.join(d, n)) as f:
                    out[n] = f.read()
            return out

        before = len(self.postfix.mailbox("examplecom/"))
        # nobody listens on port 9: failed for now, exit 75
        p = report(smtp="smtp://127.0.0.1:9")
        self.assertEqual(p.returncode, 75, p.stdout)
        self.assertIn("dmarc@example.com: failed for now", p.stdout)
        (name, line), = ledger().items()
        self.assertTrue(name.endswith("!dmarc@example.com"), name)
        self.assertTrue(line.startswith("failed 1 "), line)
        self.assertIn(" example.com ", line)
        st = status()
        self.assertIn("failed, retry in", st)
        self.assertIn("0 sent, 0 refused for good, 1 failed for now, 0 expired", st)
        # before its back-off: not tried again, nothing sent
        p = report()
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("failed for now (1 attempts), next try in", p.stdout)
        time.sleep(1)
        self.assertEqual(len(self.postfix.mailbox("examplecom/")), before)
        # an hour later (the ledger's clock turned back): sent, second attempt
        word = line.split(" ")
        word[2] = str(int(word[2]) - 3601)
        with open(os.path.join(rdir, "ledger", name), "w") as f:
            f.write(" ".join(word))
        p = report()
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("dmarc@example.com: sent", p.stdout)
        self.postfix.wait_mail("examplecom/", before + 1)
        self.assertTrue(ledger()[name].startswith("sent 2 "), ledger()[name])
        # a run without --day retries earlier days: a failure from 10 days
        # ago (no records left for it) expires, and --status says so
        old_day = (int(time.time()) // 86400 - 10) * 86400
        with open(os.path.join(rdir, "ledger", "0123456789abcdef0123456789abcdef!rua@old.example"),
                  "w") as f:
            f.write("failed 4 %d %d old.example Connection refused (SMTP 0)\n"
                    % (old_day + 86400 * 3, old_day))
        p = report(day=False)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("rua@old.example: expired after 4 attempts", p.stdout)
        st = status()
        self.assertIn("1 sent, 0 refused for good, 0 failed for now, 1 expired", st)
        self.assertRegex(st, r"old\.example\s+rua@old\.example\s+expired\s+4\s+Connection refused")
        self.assertEqual(len(self.postfix.mailbox("examplecom/")), before + 1)

    def test_7_failure_reports(self):
        """RFC 9991 failure reports: off by default; when on, one per
        failing message of a domain with ruf=, to verified destinations,
        redacted, rate-limited per domain and hour, none about reports or
        automatic mail, none twice."""
        hist = "sqlite:" + os.path.join(self.tmp, "failures.sqlite")
        rdir = os.path.join(self.tmp, "reports-failures")
        d = harness.Daemon("--set", "history=" + hist, "--set", "failure_reports=yes",
                           world=self.world)
        d.start()
        try:
            spoof = lambda subj, extra=(): harness.scan_request(
                mta.make_message("Boss <boss@failures.example>", "carol@inbox.example", subj,
                                 extra_headers=extra),
                ip="203.0.113.70", helo="mail.test", mail_from="x@evil.example.net",
                rcpt=["carol@inbox.example"])
            for req in [spoof("wire money 1"), spoof("wire money 2"), spoof("wire money 3"),
                        # automatic mail and reports get no report (loop guard)
                        spoof("out of office", ["Auto-Submitted: auto-replied"]),
                        spoof("a report", ["MIME-Version: 1.0", "Content-Type: multipart/report; "
                                           "report-type=feedback-report; boundary=x"]),
                        # a passing message, and a domain without ruf=
                        harness.scan_request(mta.make_message("<ok@failures.example>",
                                                              "carol@inbox.example", "fine"),
                                             ip="192.0.2.61", helo="mail.test",
                                             mail_from="ok@failures.example"),
                        harness.scan_request(mta.make_message("<ceo@example.com>",
                                                              "carol@inbox.example", "other"),
                                             ip="203.0.113.70", helo="mail.test",
                                             mail_from="x@evil.example.net")]:
                r = d.request(req)
                self.assertIn(b" 200 ", r.split(b"\r\n", 1)[0], r)
            self.assertEqual(d.stop(), 0, d.logtext()[-3000:])
        finally:
            d.cleanup()
        base = [REPORT, "--set", "history=" + hist, "--set", "authserv_id=mx.test.example",
                "--set", "unbound_config=" + self.world.unbound_conf,
                "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive",
                "--set", "report_dir=" + rdir,
                "--set", "report_smtp=smtp://127.0.0.1:%d" % self.postfix.port,
                "--set", "report_smtp_tls=off", "--set", "report_pace=0",
                "--set", "report_email=dmarc-noreply@test.example"]

        def failures(*extra):
            p = subprocess.run(base + ["--failures"] + list(extra), capture_output=True,
                               text=True, timeout=120)
            print("$ alignd-report --failures %s\n%s%s" % (" ".join(extra), p.stdout, p.stderr))
            return p

        # off: nothing
        p = failures("--set", "failure_reports=no")
        self.assertEqual(p.returncode, 0)
        self.assertIn("failure_reports = no", p.stderr)
        p = failures("--set", "failure_reports=yes", "--set", "failure_report_rate=2")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # three spoofs were stored with their headers; the rate lets two through
        self.assertIn("3 failure reports may be due", p.stdout)
        self.assertIn("failure_report_rate (2 an hour) reached for failures.example", p.stdout)
        self.assertIn("ruf@unverified.example: not sent, external destination without", p.stdout)
        own = self.postfix.wait_mail("ruf/", 2)
        ext = self.postfix.wait_mail("rufext/", 2)
        self.assertEqual((len(own), len(ext)), (2, 2))
        self.assertEqual(self.postfix.mailbox("rufnover/"), [])
        subjects = sorted(m["Subject"] for m in own)
        self.assertEqual(subjects, ["DMARC failure report for failures.example from 203.0.113.70"] * 2)
        m = own[0]
        self.assertEqual(m.get_content_type(), "multipart/report")
        self.assertEqual(m.get_param("report-type"), "feedback-report")
        parts = m.get_payload()
        self.assertEqual([x.get_content_type() for x in parts],
                         ["text/plain", "message/feedback-report", "text/rfc822-headers"])
        fb = parts[1].get_payload()
        fb = fb[0].as_string() if isinstance(fb, list) else fb
        for want in ("Feedback-Type: auth-failure", "Auth-Failure: dmarc",
                     "Reported-Domain: failures.example", "Source-IP: 203.0.113.70",
                     "Delivery-Result: reject", "Identity-Alignment: none",
                     "Original-Mail-From: <redacted@evil.example.net>",
                     "Original-Rcpt-To: <redacted@inbox.example>",
                     "Authentication-Results: mx.test.example;"):
            self.assertIn(want, fb)
        hdrs = parts[2].get_payload()
        self.assertIn("From: Boss <boss@failures.example>", hdrs)
        self.assertIn("To: (redacted)", hdrs)
        self.assertNotIn("carol@", hdrs)
        self.assertIn("Subject: wire money", hdrs)
        # a second run finds nothing new: the cursor moved past every record
        p = failures("--set", "failure_reports=yes")
        self.assertEqual(p.returncode, 0)
        self.assertIn("0 failure reports may be due", p.stdout)
        time.sleep(1)
        self.assertEqual(len(self.postfix.mailbox("ruf/")), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
