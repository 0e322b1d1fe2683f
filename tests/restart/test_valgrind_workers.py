"""The daemon under valgrind memcheck after DKIM verification on its worker
threads (issue 7, sanitizers and leaks): it must exit 0 with no error and
no definite or indirect leak.

Known failure, kept as an expected failure: each libuv worker thread that
verified a signature leaves OpenSSL's per-thread error state (904 bytes,
allocated by ERR_set_mark inside libopendkim's d2i/EVP_PKEY calls) behind
at exit; valgrind reports it as definitely lost, one block per worker. It
does not grow with the number of scans (the soak measures that), but it
breaks "zero leaks under valgrind". Likely cause: OpenSSL's atexit cleanup
runs before the worker threads end, so their thread-local state is never
freed; calling OPENSSL_thread_stop() on the worker thread after each
crypto job (or before the pool ends) would free it.

Skipped without valgrind, in sanitizer builds, and when ALIGND_WRAPPER is
already set.
"""
import os
import shutil
import signal
import unittest

import restartlib as rl
from restartlib import Daemon
from harness import scan_request

VALGRIND = shutil.which("valgrind")


def asan_build():
    try:
        with open(rl.harness.ALIGND, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def setUpModule():
    rl.world()


def tearDownModule():
    rl.stop_world()


@unittest.skipIf(not VALGRIND, "valgrind is not installed")
@unittest.skipIf(os.environ.get("ALIGND_WRAPPER"), "already under a wrapper")
@unittest.skipIf(asan_build(), "valgrind does not run sanitizer builds")
class ValgrindWorkers(unittest.TestCase):
    def test_dkim_on_workers_then_exit_without_leaks(self):
        w = rl.world()
        log = os.path.join(w.rundir, "valgrind.log")
        saved = rl.harness.WRAPPER, rl.harness.WAIT_FACTOR
        rl.harness.WRAPPER = [VALGRIND, "--error-exitcode=99", "--leak-check=full",
                              "--errors-for-leak-kinds=definite,indirect",
                              "--track-fds=no", "--log-file=" + log]
        rl.harness.WAIT_FACTOR = 10
        d = Daemon("--set", "workers=2", world=w)
        try:
            d.start()
            for dom, sel in (("example.com", "s2048"), ("example.com", "s1024"),
                             ("example.org", "sel1")) * 3:
                msg = rl.message("a@" + dom, "vg", 2000, w.world_dir, dom, sel)
                rep = d.request(scan_request(msg, ip="192.0.2.25", mail_from="a@" + dom),
                                timeout=60)
                self.assertIn(b"DKIM_PASS", rep)
            d.signal(signal.SIGTERM)
            rc = d.proc.wait(120)
            d.log.close()
        finally:
            rl.harness.WRAPPER, rl.harness.WAIT_FACTOR = saved
            if d.proc and d.proc.poll() is None:
                d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)
        with open(log, errors="replace") as f:
            report = f.read()
        summary = [l for l in report.splitlines() if "ERROR SUMMARY" in l or "definitely lost" in l]
        print("\n".join(summary))
        self.assertEqual(rc, 0, report[-4000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
