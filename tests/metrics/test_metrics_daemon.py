"""GET /metrics on the real daemon: scans through the line protocol on the
test DNS world must move the counters they should (by action, by SPF, DKIM
and DMARC result, the histograms, the DKIM key cache, the history writer),
the numbers must agree with STATS, promtool must accept the text, and a real
Prometheus on loopback must scrape it and answer a query with the value.
Exits 77 (skipped) only when promtool or prometheus is not installed."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import dkim

from dnsworld import World, free_port
from harness import Daemon, field, fields, scan_request

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """Exposition text -> {(name, frozenset(labels)): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = frozenset()
        if m.group(2):
            labels = frozenset(tuple(kv.split("=", 1)) for kv in
                               re.findall(r'[a-z_]+="[^"]*"', m.group(2)))
            labels = frozenset((k, v.strip('"')) for k, v in labels)
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise AssertionError("no sample %s %s" % (name, labels))
    return samples[key]


def message(subject, frm="Alice <alice@example.com>"):
    return ("From: %s\r\nTo: <inbox@test.example>\r\nSubject: %s\r\n"
            "Date: Mon, 20 Nov 2023 10:00:00 +0000\r\nMessage-ID: <%s.%d@test>\r\n\r\n"
            "Figures attached.\r\n" % (frm, subject, subject.replace(" ", "-"),
                                       os.getpid())).encode()


def sign(msg, world_dir, selector, alg):
    ext = ".ed25519" if alg == b"ed25519-sha256" else ".pem"
    with open(os.path.join(world_dir, "dkim", "example.com", selector + ext), "rb") as f:
        key = f.read()
    sig = dkim.sign(msg, selector.encode(), b"example.com", key, signature_algorithm=alg,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


def http_get(port, path, timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.world = World(cache_dir=os.environ.get("ALIGND_BUILD_ROOT"))
        cls.world.__enter__()
        cls.port = free_port()
        cls.d = Daemon("--set", "http_listen=127.0.0.1:%d" % cls.port, world=cls.world)
        cls.d.args += ["--set", "history=sqlite:" + os.path.join(cls.d.dir, "history.sqlite")]
        try:
            cls.d.start()
        except Exception:
            cls.d.cleanup()
            cls.world.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            cls.world.__exit__(None, None, None)

    def scrape(self):
        st, ctype, text = http_get(self.port, "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        return text

    def scan(self, msg, ip, mail_from, want_action):
        r = self.d.request(scan_request(msg, ip=ip, helo="mail.example.com",
                                        mail_from=mail_from))
        self.assertTrue(r.startswith(b"ALIGND/1 200 OK"), r[:200])
        self.assertEqual(field(r, "Action"), want_action, r.decode(errors="replace"))

    def test_1_counters_move(self):
        before = parse(self.scrape())
        wd = self.world.world_dir
        # aligned and signed (rsa-sha256), twice with the same key, then
        # ed25519-sha256: accept; a spoof of the p=reject domain: reject
        self.scan(sign(message("one"), wd, "s2048", b"rsa-sha256"), "192.0.2.25",
                  "alice@example.com", "accept")
        self.scan(sign(message("two"), wd, "s2048", b"rsa-sha256"), "192.0.2.25",
                  "alice@example.com", "accept")
        self.scan(sign(message("three"), wd, "ed", b"ed25519-sha256"), "192.0.2.25",
                  "alice@example.com", "accept")
        self.scan(message("wire transfer", "The CEO <ceo@example.com>"), "203.0.113.99",
                  "attacker@example.net", "reject")
        # the history writer commits on its own thread: wait (bounded) for it
        end = time.monotonic() + 30
        while True:
            after = parse(self.scrape())
            if val(after, "alignd_history_queued") == 0 or time.monotonic() > end:
                break
            time.sleep(0.1)

        def delta(name, **labels):
            return val(after, name, **labels) - val(before, name, **labels)

        self.assertEqual(delta("alignd_scans_started_total"), 4)
        self.assertEqual(delta("alignd_scans_total", action="accept"), 3)
        self.assertEqual(delta("alignd_scans_total", action="reject"), 1)
        self.assertEqual(delta("alignd_scans_total", action="quarantine"), 0)
        self.assertEqual(delta("alignd_scans_total", action="tempfail"), 0)
        self.assertEqual(val(after, "alignd_scans_in_flight"), 0)
        self.assertEqual(delta("alignd_scan_duration_seconds_count"), 4)
        self.assertEqual(delta("alignd_scan_duration_seconds_bucket", le="+Inf"), 4)
        self.assertGreater(delta("alignd_scan_duration_seconds_sum"), 0)
        self.assertEqual(delta("alignd_spf_results_total", identity="mailfrom", result="pass"), 3)
        spf_mailfrom = sum(v - before.get(k, 0) for k, v in after.items()
                           if k[0] == "alignd_spf_results_total"
                           and ("identity", "mailfrom") in k[1])
        self.assertEqual(spf_mailfrom, 4)
        self.assertEqual(delta("alignd_dkim_results_total", algorithm="rsa-sha256",
                               result="pass"), 2)
        self.assertEqual(delta("alignd_dkim_results_total", algorithm="ed25519-sha256",
                               result="pass"), 1)
        self.assertEqual(delta("alignd_dmarc_results_total", result="pass",
                               disposition="none"), 3)
        self.assertEqual(delta("alignd_dmarc_results_total", result="fail",
                               disposition="reject"), 1)
        # the second rsa-sha256 message found its key decoded already
        self.assertGreaterEqual(delta("alignd_dkim_key_cache_hits_total"), 1)
        self.assertGreaterEqual(delta("alignd_dkim_key_cache_misses_total"), 2)
        self.assertGreaterEqual(val(after, "alignd_dkim_key_cache_entries"), 2)
        # every DNS answer is in the histogram, and is a hit or a miss
        self.assertGreater(delta("alignd_dns_lookups_total"), 0)
        self.assertEqual(val(after, "alignd_dns_lookups_in_flight"), 0)
        self.assertEqual(val(after, "alignd_dns_lookup_duration_seconds_count"),
                         val(after, "alignd_dns_cache_hits_total") +
                         val(after, "alignd_dns_cache_misses_total"))
        self.assertEqual(delta("alignd_history_written_total"), 4)
        self.assertEqual(val(after, "alignd_history_dropped_total"), 0)
        self.assertEqual(val(after, "alignd_history_store_open"), 1)
        # this scrape's own connection is open
        self.assertGreaterEqual(val(after, "alignd_connections_open"), 1)
        self.assertEqual(val(after, "alignd_build_info", version="0.1.0"), 1)

        # the same counters as STATS on the line protocol
        stats = dict(fields(self.d.request(b"STATS\r\n\r\n"))[1])
        now = parse(self.scrape())
        for line_name, metric, labels in [
                ("Action-Accept", "alignd_scans_total", {"action": "accept"}),
                ("Action-Reject", "alignd_scans_total", {"action": "reject"}),
                ("Scans-Total", "alignd_scans_started_total", {}),
                ("DNS-Lookups", "alignd_dns_lookups_total", {}),
                ("DNS-Cache-Hits", "alignd_dns_cache_hits_total", {}),
                ("History-Written", "alignd_history_written_total", {})]:
            self.assertEqual(int(stats[line_name]), val(now, metric, **labels), line_name)

    def test_2_promtool(self):
        text = self.scrape()
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        # and it does object to a broken exposition (the check can fail)
        bad = text.replace("# TYPE alignd_scans_total counter\n", "", 1) + "alignd_x{\n"
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=bad.encode(),
                           capture_output=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)

    def test_3_keep_alive_and_other_paths(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(req + req)
            buf = b""
            for _ in range(2):
                while b"\r\n\r\n" not in buf:
                    buf += s.recv(65536)
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
                n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                while len(buf) < n:
                    buf += s.recv(65536)
                body, buf = buf[:n], buf[n:]
                self.assertIn(b"# TYPE alignd_scans_total counter\n", body)
        finally:
            s.close()
        # POST is for scans; /metrics only answers GET
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.port, data=b"x",
                                     method="POST")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(cm.exception.code, 404)

    def test_4_prometheus_scrapes(self):
        want = val(parse(self.scrape()), "alignd_scans_total", action="accept")
        tmp = tempfile.mkdtemp(prefix="alignd-prom-")
        web = free_port()
        conf = os.path.join(tmp, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: alignd\n    scrape_interval: 1s\n"
                    "    scrape_timeout: 1s\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % self.port)
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        proc = subprocess.Popen([PROMETHEUS, "--config.file=" + conf,
                                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % web],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            q = "/api/v1/query?query=" + urllib.parse.quote('alignd_scans_total{action="accept"}')
            got = None
            end = time.monotonic() + 90
            while time.monotonic() < end and proc.poll() is None:
                try:
                    _, _, body = http_get(web, q, timeout=5)
                    res = json.loads(body)["data"]["result"]
                    if res:
                        got = res
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.5)
            if got is None:
                with open(os.path.join(tmp, "prometheus.log"), "rb") as f:
                    self.fail("no scrape seen; prometheus log:\n" +
                              f.read().decode(errors="replace")[-4000:])
            self.assertEqual(len(got), 1)
            self.assertEqual(got[0]["metric"]["job"], "alignd")
            self.assertEqual(float(got[0]["value"][1]), want)
            _, _, body = http_get(web, "/api/v1/query?query=up", timeout=5)
            up = json.loads(body)["data"]["result"]
            self.assertEqual([float(r["value"][1]) for r in up], [1.0])
            # the histogram is usable as one: a quantile over its buckets
            q = "/api/v1/query?query=" + urllib.parse.quote(
                "histogram_quantile(0.5, alignd_scan_duration_seconds_bucket)")
            _, _, body = http_get(web, q, timeout=5)
            self.assertEqual(json.loads(body)["status"], "success")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not PROMTOOL or not PROMETHEUS:
        print("promtool or prometheus not installed (Debian package prometheus): skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
