"""alignd-milter when alignd is killed under load (issue 7, crash and
restart safety).

The MTA is played by a minimal milter-protocol client (restartlib.
MilterSession) rather than a Postfix instance: it speaks protocol v6 as
Postfix does, needs no root, runs beside other tests, and sees exactly what
the milter answers for each message (accept with which header changes,
451, 550), which is what "nothing delivered unscanned" is about.

Many sessions send signed messages concurrently; alignd gets SIGKILL in the
middle. Every message must end accepted with our Authentication-Results or
tempfailed with 451 (the MTA keeps it and retries): none accepted without a
verdict, no session left without an answer. After a restart the tempfailed
messages are retried and all pass, and a milter session that lived through
the crash scans again. With --fallback accept the milter passes messages
unscanned while the daemon is down: that is the configured exception.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import restartlib as rl
from restartlib import Daemon

THREADS = 16


class Milter:
    def __init__(self, daemon_socket, *args):
        self.dir = tempfile.mkdtemp(prefix="alignd-milter-test-")
        self.path = os.path.join(self.dir, "milter.sock")
        self.log_path = os.path.join(self.dir, "milter.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [rl.MILTER, "-p", "unix:" + self.path, "-s", daemon_socket, "-t", "10000"] + list(args),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not rl.wait_until(lambda: os.path.exists(self.path) or self.proc.poll() is not None, 10):
            raise RuntimeError("the milter did not start")
        if self.proc.poll() is not None:
            raise RuntimeError("the milter exited: " + self.logtext())

    def logtext(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def setUpModule():
    rl.world()


def tearDownModule():
    rl.stop_world()


class MilterKill(unittest.TestCase):
    def setUp(self):
        self.w = rl.world()
        self.d = Daemon(world=self.w).start()
        self.daemons = [self.d]
        self.milter = Milter(self.d.socket)
        self.msgs = {}

    def tearDown(self):
        self.milter.stop()
        for d in self.daemons:
            if d.proc.poll() is None:
                d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def msg(self, tid, size):
        if tid not in self.msgs:
            self.msgs[tid] = rl.message("alice@example.com", tid, size, self.w.world_dir)
        return self.msgs[tid]

    def transaction(self, sess, tid, size):
        final, mods = sess.message("alice@example.com", "user@example.net",
                                   self.msg(tid, size), tid)
        return rl.verdict_kind(final, mods), final

    def test_kill9_under_load_then_restart(self):
        outcomes = {}        # test id -> (kind, reply)
        errors = []
        lock = threading.Lock()
        stop = threading.Event()
        counter = [0]
        spans = {}           # test id -> (start, end) of its transaction

        def client(n):
            while not stop.is_set():
                try:
                    sess = rl.MilterSession(self.milter.path)
                except OSError as e:
                    errors.append("connect to the milter: %s" % e)
                    return
                try:
                    r = sess.connect("mail.example.com", "192.0.2.25") or \
                        sess.helo("mail.example.com")
                    if r:
                        errors.append("session refused before a message: %r" % (r,))
                        return
                    for _ in range(3):
                        with lock:
                            counter[0] += 1
                            tid = "M%d" % counter[0]
                        size = (1000, 20000, 200000)[counter[0] % 3]
                        t0 = time.monotonic()
                        kind, final = self.transaction(sess, tid, size)
                        with lock:
                            outcomes[tid] = (kind, final)
                            spans[tid] = (t0, time.monotonic())
                        if kind != "scanned" or stop.is_set():
                            break
                except (OSError, rl.MilterError) as e:
                    errors.append("session %d: %s" % (n, e))
                    return
                finally:
                    sess.close()

        # a session that lives through the crash
        long_sess = rl.MilterSession(self.milter.path)
        self.assertIsNone(long_sess.connect("mail.example.com", "192.0.2.25"))
        self.assertIsNone(long_sess.helo("mail.example.com"))
        self.assertEqual(self.transaction(long_sess, "L1", 2000)[0], "scanned")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        try:
            rl.wait_until(lambda: len(outcomes) >= 60, 30)
            in_flight = int(rl.stats(self.d)["Scans-In-Flight"])
            kill_time = time.monotonic()
            rl.kill9(self.d)
            killed_at = len(outcomes)
            time.sleep(1.5)
            # down: the long session must tempfail too
            self.assertEqual(self.transaction(long_sess, "L2", 2000)[0], "tempfail")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        kinds = {}
        for k, _ in outcomes.values():
            kinds[k] = kinds.get(k, 0) + 1
        straddling = [t for t, (a, b) in spans.items() if a < kill_time < b]
        print("milter: %d messages, %d before the kill, %d in progress at the kill "
              "(daemon: %d scans in flight just before), outcomes %s"
              % (len(outcomes), killed_at, len(straddling), in_flight, kinds))
        self.assertEqual(errors, [])
        bad = {t: o for t, o in outcomes.items() if o[0] not in ("scanned", "tempfail")}
        self.assertEqual(bad, {}, "messages neither scanned nor tempfailed")
        self.assertGreater(kinds.get("scanned", 0), 0)
        self.assertGreater(kinds.get("tempfail", 0), 0)
        self.assertGreater(len(straddling), 0, "no transaction was in progress at the kill")
        for tid, (k, final) in outcomes.items():
            if k == "tempfail":
                self.assertEqual(final[0], b"y", tid)
                self.assertTrue(final[1].startswith(b"451 4.7.0"), final)
        self.assertIsNone(self.milter.proc.poll(), "the milter died")

        # back: the MTA retries what was tempfailed; all pass
        d2 = rl.restart(self.d)
        self.daemons.append(d2)
        self.assertEqual(self.transaction(long_sess, "L3", 2000)[0], "scanned")
        long_sess.close()
        retry = [t for t, (k, _) in outcomes.items() if k == "tempfail"]
        sess = rl.MilterSession(self.milter.path)
        try:
            self.assertIsNone(sess.connect("mail.example.com", "192.0.2.25"))
            self.assertIsNone(sess.helo("mail.example.com"))
            for tid in retry:
                self.assertEqual(self.transaction(sess, tid, 0)[0], "scanned", tid)
        finally:
            sess.close()
        d2.cleanup()

    def test_fallback_accept_is_the_configured_exception(self):
        m2 = Milter(self.d.socket, "-F", "accept")
        try:
            rl.kill9(self.d)
            for path, want in ((m2.path, "unscanned"), (self.milter.path, "tempfail")):
                sess = rl.MilterSession(path)
                try:
                    sess.connect("mail.example.com", "192.0.2.25")
                    sess.helo("mail.example.com")
                    self.assertEqual(self.transaction(sess, "F-" + want, 1000)[0], want)
                finally:
                    sess.close()
        finally:
            m2.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
