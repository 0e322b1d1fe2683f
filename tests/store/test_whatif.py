"""alignd-report --what-if against real stores.

A week of history: the real daemon, with the trusted ARC sealers,
forwarders and exceptions of the scenario table's "indirect" profile, the
trusted list of "lists" and untrusted_arc = quarantine, scans every
message of those profiles' scenarios and the default ones (direct mail,
spoofs, trusted and untrusted ARC chains, trusted forwarders by address,
HELO and envelope domain, trusted mailing lists, never-reject and enforce
exceptions, bad From fields) into SQLite and into a private PostgreSQL server; the
records are then spread over seven days. Checked on both stores:

- under the configuration the daemon ran with, every stored verdict and
  DMARC disposition is reproduced (0 changes);
- policy_mode = strict turns exactly the stored rejects that an override
  lowered (policy_disposition reject, disposition not reject) into
  rejects, grouped by author domain and source with example queue ids;
- --domain none.example --as-policy reject: every DMARC failure of that
  p=none domain becomes a reject, nothing else changes;
- the chart is a PNG drawn by gnuplot, with a point per day;
- a proposal that does not validate, an empty store, a period or domain
  without records, and --as-policy without --domain each end with a
  clear message and their own exit code.
"""
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

import harness
from dnsworld import World
from pgserver import PgServer

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
SOURCE = os.environ.get("ALIGND_SOURCE_ROOT",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
REPORT = os.path.join(BUILD, "server", "alignd-report")
WORLD_CACHE = os.path.join(BUILD, "tests", "store", "world-cache") if BUILD else None
TABLE_DIR = os.path.join(SOURCE, "tests", "scenarios")
sys.path.insert(0, TABLE_DIR)    # the table imports scenlib


def _load(name):
    spec = importlib.util.spec_from_file_location("whatif_" + name,
                                                  os.path.join(TABLE_DIR, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TABLE = _load("scenarios")
RUNNER = _load("run_scenarios")
DAYS = 7


class WhatIf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="alignd-whatif-")
        cls.world = World(cache_dir=WORLD_CACHE)
        cls.world.start()
        cls.pg = PgServer()
        try:
            cls.pg.start()
            cls.uris = {"sqlite": "sqlite:" + os.path.join(cls.tmp, "week.sqlite"),
                        "postgresql": cls.pg.createdb("week")}
            cls.args = [a.replace("{exceptions}", os.path.join(cls.tmp, "indirect.exceptions"))
                        for a in RUNNER.BASE_ARGS + RUNNER.PROFILES["indirect"] +
                        RUNNER.PROFILES["lists"] + RUNNER.PROFILES["untrusted-arc"]]
            with open(os.path.join(cls.tmp, "indirect.exceptions"), "w") as f:
                f.write(TABLE.EXCEPTIONS)
            # the running configuration as an administrator has it: a file
            cls.conf = os.path.join(cls.tmp, "alignd.conf")
            with open(cls.conf, "w") as f:
                for flag, kv in zip(cls.args[::2], cls.args[1::2]):
                    assert flag == "--set", cls.args
                    k, v = kv.split("=", 1)
                    f.write('%s = "%s"\n' % (k, v))
            cls.record_week()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.pg.stop()
        finally:
            cls.world.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def record_week(cls):
        """Every default and indirect scenario scanned by one daemon per
        store (the same configuration), twice, then spread over DAYS days
        by id."""
        todo = [s for s in TABLE.SCENARIOS
                if s.get("profile", "default") in ("default", "indirect", "lists",
                                                   "untrusted-arc")
                and not s.get("exceptions") and not s.get("inflight")
                and s.get("format", "text") == "text"]
        msgs = [(s, RUNNER.build_message(s, cls.world.world_dir)) for s in todo]
        for store, uri in cls.uris.items():
            d = harness.Daemon(*(cls.args + ["--set", "history=" + uri]), world=cls.world)
            d.start()
            try:
                for rnd in range(2):
                    for s, msg in msgs:
                        qid = "W%d%s" % (rnd, re.sub(r"[^A-Za-z0-9]", "", s["name"])[:28])
                        r = d.request(harness.scan_request(
                            msg, ip=s.get("ip"), helo=s.get("helo"),
                            mail_from=s.get("mail_from"), queue_id=qid), timeout=60)
                        assert b" 200 " in r.split(b"\r\n", 1)[0], r
            finally:
                rc = d.stop()
                shutil.rmtree(d.dir, ignore_errors=True)
            assert rc == 0, d.logtext()[-3000:]
        spread = "UPDATE history SET time = time - (id %% %d) * 86400" % DAYS
        db = sqlite3.connect(cls.uris["sqlite"][len("sqlite:"):])
        db.execute(spread)
        db.commit()
        db.close()
        cls.pg.psql("week", spread)

    # ---- helpers ----

    def count(self, store, where):
        sql = "SELECT count(*) FROM history WHERE " + where
        if store == "sqlite":
            db = sqlite3.connect(self.uris["sqlite"][len("sqlite:"):])
            try:
                return db.execute(sql).fetchone()[0]
            finally:
                db.close()
        return int(self.pg.query("week", sql))

    def whatif(self, store, *extra, expect=0, uri=None):
        cmd = [REPORT, "-c", self.conf, "--what-if", "--since", "8d",
               "--set", "history=" + (uri or self.uris[store])] + list(extra)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print("$ alignd-report --what-if %s [%s]\n%s%s" % (" ".join(extra), store,
                                                          p.stdout[:3000], p.stderr))
        self.assertEqual(p.returncode, expect, p.stderr)
        return p

    def json(self, store, *extra):
        return json.loads(self.whatif(store, "--json", "--top", "0", *extra).stdout)

    # ---- tests ----

    def test_1_same_configuration_reproduces_everything(self):
        for store in self.uris:
            with self.subTest(store=store):
                total = self.count(store, "1=1")
                self.assertGreater(total, 150)
                j = self.json(store)
                self.assertEqual(j["messages"], total)
                self.assertEqual(j["changed"], 0, j["changes"])
                self.assertEqual(j["dispositions_changed"], 0)
                self.assertEqual(j["unreadable"], 0)
                self.assertEqual(j["proposal"], "the running configuration unchanged")
                self.assertEqual(len(j["days"]), DAYS)
                self.assertEqual(sum(sum(d["now"]) for d in j["days"]), total)
                # every kind of decision is in the week
                for kind in ("trusted_forwarder", "mailing_list", "local_policy", "forwarded"):
                    self.assertGreater(self.count(store, "overrides LIKE '%%%s%%'" % kind), 0,
                                       kind)
                for act in ("accept", "quarantine", "reject"):
                    self.assertGreater(j["now"][act], 0, act)
                text = self.whatif(store).stdout
                self.assertIn("%d unchanged, 0 would change." % total, text)

    def test_2_strict_mode_rejects_what_overrides_lowered(self):
        for store in self.uris:
            with self.subTest(store=store):
                lowered = self.count(store, "policy_disposition = 'reject' AND "
                                            "disposition <> 'reject'")
                self.assertGreater(lowered, 10)
                j = self.json(store, "--set", "policy_mode=strict")
                self.assertEqual(j["proposal"], "policy_mode = strict")
                self.assertEqual(j["changed"], lowered, j["changes"])
                self.assertEqual(j["dispositions_changed"], lowered)
                self.assertTrue(all(c["to"] == "reject" for c in j["changes"]), j["changes"])
                self.assertEqual(sum(c["messages"] for c in j["changes"]), lowered)
                self.assertEqual(j["proposed"]["reject"], j["now"]["reject"] + lowered)
                # grouped, with examples that name their queue id and why
                self.assertEqual(sum(d["changed"] for d in j["domains"]), lowered)
                self.assertEqual(sum(s["changed"] for s in j["sources"]), lowered)
                ex = [e for d in j["domains"] for e in d["examples"]]
                self.assertTrue(ex and all(re.match(r"W[01]\w+", e["queue_id"]) for e in ex), ex)
                self.assertTrue(any("no longer applies" in e["why"] for e in ex), ex)
                text = self.whatif(store, "--set", "policy_mode=strict").stdout
                self.assertIn("would change", text)
                self.assertIn("By author domain", text)
                self.assertIn("By sending source", text)
                self.assertRegex(text, r"e\.g\. W[01]\w+: (accept|quarantine) -> reject: override")

    def test_3_domain_owner_as_policy_reject(self):
        for store in self.uris:
            with self.subTest(store=store):
                failing = self.count(store, "from_domain = 'none.example' AND "
                                            "dmarc_result = 'fail'")
                self.assertGreater(failing, 0)
                j = self.json(store, "--domain", "none.example", "--as-policy", "reject")
                self.assertEqual(j["messages"], self.count(store, "from_domain = 'none.example'"))
                self.assertEqual(j["changed"], failing, j["changes"])
                self.assertTrue(all(c["to"] == "reject" for c in j["changes"]))
                self.assertIn("as if none.example published p=reject", j["proposal"])
                self.assertEqual([d["domain"] for d in j["domains"]], ["none.example"])
                # a domain asked about with no DMARC record: nothing can be said
                nr = self.json(store, "--domain", "norecord.example", "--as-policy", "reject") \
                    if self.count(store, "from_domain = 'norecord.example'") else None
                if nr:
                    self.assertEqual(nr["changed"], 0)
                    self.assertEqual(nr["unknown"], nr["messages"])

    def test_4_chart(self):
        for store in self.uris:
            with self.subTest(store=store):
                png = os.path.join(self.tmp, "week-%s.png" % store)
                self.whatif(store, "--set", "policy_mode=strict", "--chart", png)
                with open(png, "rb") as f:
                    data = f.read()
                self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16])
                self.assertGreater(len(data), 5000)
        p = self.whatif("sqlite", "--chart", "a'b.png", expect=64)
        self.assertIn("quotes", p.stderr)

    def test_5_errors(self):
        p = self.whatif("sqlite", "--set", "policy_mode=bogus", expect=78)
        self.assertIn("policy_mode", p.stderr)
        self.assertIn("proposed configuration is not valid", p.stderr)
        empty = "sqlite:" + os.path.join(self.tmp, "empty.sqlite")
        p = self.whatif("sqlite", uri=empty, expect=66)
        self.assertIn("holds no records yet", p.stderr)
        p = self.whatif("sqlite", "--domain", "nobody.example", expect=66)
        self.assertIn("no stored messages from nobody.example", p.stderr)
        p = self.whatif("sqlite", "--as-policy", "reject", expect=64)
        self.assertIn("--domain", p.stderr)
        p = self.whatif("sqlite", "--as-policy", "sometimes", "--domain", "none.example",
                        expect=64)
        p = self.whatif("sqlite", "--day", "2026-12-01", expect=64)
        self.assertIn("sends nothing", p.stderr)


if __name__ == "__main__":
    sys.exit(unittest.main(verbosity=2))
