"""The daemon's history writer against real stores.

- SQLite, crash: scans, reads History-Queued / History-Written from STATS,
  kills the daemon with SIGKILL, and checks that the database passes
  SQLite's integrity check and that what was lost is no more than what
  STATS said was still queued; a restart on the same file carries on.
- SQLite, far over its retention: a store with more rows past retention
  than one retention step deletes is cut down a step at a time, and a
  SIGTERM during that is obeyed at once (the daemon exits 0).
- PostgreSQL, a fleet: two daemons (one DNS cache tier, one private
  PostgreSQL server) write into one store; every scan of both is there and
  alignd-report counts both.
"""
import datetime
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

import harness
from dnsworld import World
from pgserver import PgServer

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
REPORT = os.path.join(BUILD, "server", "alignd-report")
WORLD_CACHE = os.path.join(BUILD, "tests", "store", "world-cache") if BUILD else None


def message(i, frm):
    return ("From: %s\r\nTo: <inbox@test.example>\r\nSubject: history %d\r\n"
            "Message-ID: <h%d@test.example>\r\nDate: Mon, 07 Dec 2026 00:00:00 +0000\r\n"
            "\r\nbody %d\r\n" % (frm, i, i, i)).encode()


def scan(daemon, i, spoof=False):
    ip, mfrom, hfrom = (("203.0.113.66", "x@evil.example.net", "<boss@reports.example>")
                        if spoof else
                        ("192.0.2.60", "ok@reports.example", "<ok@reports.example>"))
    r = daemon.request(harness.scan_request(
        message(i, hfrom), ip=ip, helo="mail.test", mail_from=mfrom,
        rcpt=["inbox@test.example"], queue_id="H%d" % i))
    assert b" 200 " in r.split(b"\r\n", 1)[0], r


def stats(daemon):
    r = daemon.request(b"STATS\r\n\r\n").decode()
    return {k: int(v) for k, v in re.findall(r"^(History-\w+): (\d+)", r, re.M)}


class History(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="alignd-history-")
        cls.world = World(cache_dir=WORLD_CACHE)
        cls.world.start()

    @classmethod
    def tearDownClass(cls):
        cls.world.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_sqlite_kill9(self):
        path = os.path.join(self.tmp, "crash.sqlite")
        d = harness.Daemon("--set", "history=sqlite:" + path, world=self.world)
        d.start()
        try:
            n = 300
            for i in range(n):
                scan(d, i, spoof=i % 3 == 0)
            st = stats(d)
            print("before kill -9:", st)
            self.assertEqual(st["History-Queued"] + st["History-Written"] + st["History-Dropped"], n)
            self.assertEqual(st["History-Dropped"], 0)
            d.signal(signal.SIGKILL)
            d.proc.wait(10)
            self.assertEqual(d.proc.returncode, -signal.SIGKILL)
        finally:
            d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)
        db = sqlite3.connect(path)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        rows = db.execute("SELECT count(*) FROM history").fetchone()[0]
        db.close()
        lost = n - rows
        print("kill -9: %d scanned, %d stored, %d lost, %d were queued" %
              (n, rows, lost, st["History-Queued"]))
        # committed before the STATS reply stays; only the queued can go
        self.assertGreaterEqual(rows, st["History-Written"])
        self.assertLessEqual(lost, st["History-Queued"])

        # a restart on the same file carries on
        with harness.Daemon("--set", "history=sqlite:" + path, world=self.world) as d2:
            for i in range(n, n + 20):
                scan(d2, i)
            self.assertEqual(d2.stop(), 0)    # SIGTERM drains the queue
        db = sqlite3.connect(path)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(db.execute("SELECT count(*) FROM history").fetchone()[0], rows + 20)
        self.assertEqual(db.execute("SELECT count(*) FROM history WHERE queue_id LIKE 'H3__'")
                         .fetchone()[0], 20)
        db.close()

    def test_sqlite_retention_steps(self):
        path = os.path.join(self.tmp, "old.sqlite")
        d = harness.Daemon("--set", "history=sqlite:" + path, world=self.world)
        d.start()
        try:
            for i in range(25):
                scan(d, i)
        finally:
            d.cleanup()
        db = sqlite3.connect(path)
        cols = [r[1] for r in db.execute("PRAGMA table_info(history)") if r[1] != "id"]
        self.assertIn("time", cols)
        old = ",".join("time - 200*86400" if c == "time" else c for c in cols)
        db.execute("INSERT INTO history (%s) SELECT %s FROM history" % (",".join(cols), old))
        db.execute("DELETE FROM history WHERE time > strftime('%s','now') - 100*86400")
        while db.execute("SELECT count(*) FROM history").fetchone()[0] < 70000:
            db.execute("INSERT INTO history (%s) SELECT %s FROM history" % (",".join(cols), ",".join(cols)))
        total = db.execute("SELECT count(*) FROM history").fetchone()[0]
        db.commit()
        db.close()
        d = harness.Daemon("--set", "history=sqlite:" + path, world=self.world)
        d.start()
        # SIGTERM once retention is under way (it starts when the writer
        # has opened the store): a signal before that would find nothing
        # to interrupt
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "retention removed" not in d.logtext():
            time.sleep(0.01)
        d.signal(signal.SIGTERM)
        d.stop()
        log = d.logtext()
        d.cleanup()   # must have exited 0, within the harness's patience
        db = sqlite3.connect(path)
        left = db.execute("SELECT count(*) FROM history").fetchone()[0]
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        db.close()
        steps = [int(n) for n in re.findall(r"retention removed (\d+) records", log)]
        print("store of %d rows past retention: steps %s, %d left" % (total, steps, left))
        self.assertTrue(steps, log[-2000:])
        self.assertLessEqual(max(steps), 20000)
        self.assertEqual(total - sum(steps), left)
        self.assertGreater(left, 0, "all of it went in the time a SIGTERM takes")

    def test_postgresql_two_instances(self):
        with PgServer() as pg:
            uri = pg.createdb("fleet")
            a = harness.Daemon("--set", "history=" + uri, world=self.world)
            b = harness.Daemon("--set", "history=" + uri, world=self.world)
            a.start()
            b.start()
            try:
                for i in range(30):
                    scan(a if i % 2 else b, i, spoof=i % 5 == 0)
            finally:
                self.assertEqual(a.stop(), 0, a.logtext()[-3000:])
                self.assertEqual(b.stop(), 0, b.logtext()[-3000:])
                shutil.rmtree(a.dir, ignore_errors=True)
                shutil.rmtree(b.dir, ignore_errors=True)
            self.assertEqual(pg.query("fleet", "SELECT count(*) FROM history"), "30")
            self.assertEqual(pg.query("fleet", "SELECT count(DISTINCT queue_id) FROM history"), "30")
            day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
            out = os.path.join(self.tmp, "fleet-out")
            p = subprocess.run([REPORT, "--dry-run", "--out", out, "--day", day,
                                "--set", "history=" + uri,
                                "--set", "authserv_id=mx.test.example",
                                "--set", "unbound_config=" + self.world.unbound_conf,
                                "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive",
                                "--set", "report_dir=" + os.path.join(self.tmp, "fleet-rep")],
                               capture_output=True, text=True, timeout=120)
            print(p.stdout, p.stderr)
            self.assertEqual(p.returncode, 0)
            self.assertIn("30 records", p.stdout)


if __name__ == "__main__":
    sys.exit(unittest.main(verbosity=2))
