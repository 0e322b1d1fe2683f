"""alignd-filter (Postfix pipe content_filter) when alignd is killed under
load (issue 7, crash and restart safety).

Many filter invocations run at once, each with its own message (an
X-Test-Id header tells them apart) and a fake sendmail (--sendmail) that
records what is re-injected. alignd gets SIGKILL while they run, and
invocations go on while it is down. Each invocation must either exit 75
(Postfix keeps the message queued) without re-injecting, or exit 0 having
re-injected the message exactly once with our Authentication-Results, i.e.
after a real verdict: nothing passed on unscanned, nothing lost. After a
restart on the same socket the tempfailed messages are run again (as
Postfix's retry would) and all are re-injected with a verdict.
"""
import concurrent.futures
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import restartlib as rl
from restartlib import Daemon

PARALLEL = 24
SENDMAIL = """#!/bin/sh
# fake sendmail: records the arguments and the message, atomically
f="%s/$$"
printf '%%s\\n' "$@" > "$f.args"
cat > "$f.tmp" && mv "$f.tmp" "$f.eml"
"""


def setUpModule():
    rl.world()


def tearDownModule():
    rl.stop_world()


class FilterKill(unittest.TestCase):
    def setUp(self):
        self.w = rl.world()
        self.dir = tempfile.mkdtemp(prefix="alignd-filter-test-")
        self.out = os.path.join(self.dir, "reinjected")
        os.mkdir(self.out)
        self.sendmail = os.path.join(self.dir, "sendmail")
        with open(self.sendmail, "w") as f:
            f.write(SENDMAIL % self.out)
        os.chmod(self.sendmail, stat.S_IRWXU)
        self.d = Daemon(world=self.w).start()
        self.daemons = [self.d]

    def tearDown(self):
        for d in self.daemons:
            if d.proc.poll() is None:
                d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_filter(self, tid, msg):
        t0 = time.monotonic()
        p = subprocess.run(
            [rl.FILTER, "-s", self.d.socket, "-S", self.sendmail, "-t", "20000",
             "-c", "192.0.2.25", "-h", "mail.example.com", "-i", tid,
             "-f", "alice@example.com", "--", "user@example.net"],
            input=msg, capture_output=True, timeout=120, env=dict(os.environ, TMPDIR=self.dir))
        return p.returncode, p.stdout.decode(errors="replace"), t0, time.monotonic()

    def reinjected(self):
        """test id -> list of re-injected messages (bytes)."""
        out = {}
        for name in os.listdir(self.out):
            if not name.endswith(".eml"):
                continue
            with open(os.path.join(self.out, name), "rb") as f:
                data = f.read()
            tid = None
            for line in data.split(b"\n"):
                if not line:
                    break
                if line.lower().startswith(b"x-test-id:"):
                    tid = line.split(b":", 1)[1].strip().decode()
            out.setdefault(tid, []).append(data)
        return out

    def test_kill9_under_load_then_restart(self):
        sizes = (1000, 30000, 300000)
        msgs = {"F%d" % i: rl.message("alice@example.com", "F%d" % i, sizes[i % 3],
                                      self.w.world_dir) for i in range(240)}
        results = {}
        done = threading.Event()
        kill_time = [None]

        def killer():
            # the kill comes once a third of the invocations have finished
            rl.wait_until(lambda: len(results) >= 80 or done.is_set(), 60, 0.01)
            kill_time[0] = time.monotonic()
            rl.kill9(self.d)

        k = threading.Thread(target=killer)
        k.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(PARALLEL) as ex:
                futs = {ex.submit(self.run_filter, tid, m): tid for tid, m in msgs.items()}
                for f in concurrent.futures.as_completed(futs):
                    results[futs[f]] = f.result()
        finally:
            done.set()
            k.join(60)
        self.assertIsNotNone(kill_time[0])
        straddling = [t for t, r in results.items() if r[2] < kill_time[0] < r[3]]
        codes = {}
        for rc, _, _, _ in results.values():
            codes[rc] = codes.get(rc, 0) + 1
        print("filter: %d invocations, %d running at the kill, exit codes %s"
              % (len(results), len(straddling), codes))

        re = self.reinjected()
        self.assertNotIn(None, re, "a re-injected message without its X-Test-Id")
        for tid, (rc, out, _, _) in results.items():
            if rc == 75:
                self.assertNotIn(tid, re, "%s tempfailed but was re-injected" % tid)
                self.assertTrue(out.startswith("4."), out)
            elif rc == 0:
                self.assert_scanned(tid, re)
            else:
                self.fail("%s: exit %d: %s" % (tid, rc, out))
        self.assertGreater(codes.get(0, 0), 0)
        self.assertGreater(codes.get(75, 0), 0)
        self.assertGreater(len(straddling), 0, "no invocation was running at the kill")

        # restart on the same socket; Postfix retries the deferred ones
        d2 = rl.restart(self.d)
        self.daemons.append(d2)
        retry = [t for t, r in results.items() if r[0] == 75]
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as ex:
            again = dict(zip(retry, ex.map(lambda t: self.run_filter(t, msgs[t]), retry)))
        re = self.reinjected()
        for tid in retry:
            self.assertEqual(again[tid][0], 0, "%s after the restart: %r" % (tid, again[tid]))
        for tid in msgs:
            self.assert_scanned(tid, re)
        d2.cleanup()

    def assert_scanned(self, tid, re):
        got = re.get(tid, [])
        self.assertEqual(len(got), 1, "%s re-injected %d times" % (tid, len(got)))
        first = got[0].split(b"\n", 1)[0]
        self.assertTrue(first.startswith(b"Authentication-Results: " + rl.AUTHSERV_ID.encode() + b";"),
                        "%s re-injected without our verdict: %r" % (tid, first[:200]))
        self.assertIn(b"dkim=pass", got[0].split(b"\n\n", 1)[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
