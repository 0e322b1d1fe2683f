#!/usr/bin/python3
"""The running world: nsd answers (signed data, TCP for the big record), the
fault responders misbehave as declared, with_world.py passes the command's
exit status through, and everything is stopped at exit and on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
sys.path.insert(0, LIB)
import dnsworld  # noqa: E402

WITH_WORLD = os.path.join(LIB, "with_world.py")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def q(name, rdtype, port, tcp=False, timeout=2.0):
    m = dns.message.make_query(name, rdtype, want_dnssec=True)
    if tcp:
        return dns.query.tcp(m, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(m, "127.0.0.1", port=port, timeout=timeout)


def test_world():
    with dnsworld.World() as w:
        p = w.nsd_port
        r = q("example.com", "TXT", p)
        check(r.rcode() == dns.rcode.NOERROR and len(r.answer) == 2,
              "signed TXT with RRSIG")
        r = q("big.example.com", "TXT", p)
        check(r.flags & dns.flags.TC, "big TXT not truncated over UDP")
        r = q("big.example.com", "TXT", p, tcp=True)
        check(r.rcode() == 0 and r.answer, "big TXT over TCP")
        ports = w.responder_ports
        r = q("servfail.example", "TXT", ports["servfail.example"])
        check(r.rcode() == dns.rcode.SERVFAIL, "servfail responder")
        r = q("refused.example", "TXT", ports["refused.example"])
        check(r.rcode() == dns.rcode.REFUSED, "refused responder")
        try:
            q("silent.example", "TXT", ports["silent.example"], timeout=0.5)
            check(False, "silent responder answered")
        except dns.exception.Timeout:
            pass
        t0 = time.monotonic()
        r = q("slow.example", "TXT", ports["slow.example"], timeout=5)
        dt = time.monotonic() - t0
        check(r.rcode() == 0 and r.answer and 1.4 < dt < 3,
              "delayed answer after %.2f s" % dt)
        with open(os.path.join(w.rundir, "nsd.pid")) as f:
            pid = int(f.read().strip())
        rundir, nsd_port = w.rundir, p
        rports = list(ports.values())
    check(not alive(pid), "nsd still running after exit")
    check(not os.path.exists(rundir), "run directory left behind")
    check(port_free(nsd_port), "nsd port still bound")
    check(all(port_free(x) for x in rports), "responder port still bound")


def test_with_world():
    r = subprocess.run([sys.executable, WITH_WORLD, "--", "sh", "-c",
                        'test -r "$ALIGND_TEST_UNBOUND_CONF" && '
                        'test -r "$ALIGND_TEST_WORLD_DIR/world.json" && '
                        'exit 3'])
    check(r.returncode == 3, "exit status %d, want 3" % r.returncode)

    # SIGTERM to with_world.py stops the command and the world
    child = subprocess.Popen(
        [sys.executable, WITH_WORLD, "--", sys.executable, "-c",
         "import os,sys,time; print(os.environ['ALIGND_TEST_UNBOUND_CONF'],"
         " flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    conf = child.stdout.readline().strip()
    rundir = os.path.dirname(conf)
    with open(os.path.join(rundir, "nsd.pid")) as f:
        pid = int(f.read().strip())
    check(alive(pid), "nsd not running inside with_world")
    child.send_signal(signal.SIGTERM)
    try:
        rc = child.wait(15)
    except subprocess.TimeoutExpired:
        child.kill()
        rc = None
    check(rc == 128 + signal.SIGTERM, "with_world exit %r after SIGTERM" % rc)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(not alive(pid), "nsd survived SIGTERM to with_world")
    check(not os.path.exists(rundir), "run directory left after SIGTERM")


def _prepare_and_read(cache_dir, out):
    d, _ = dnsworld.prepare(cache_dir=cache_dir)
    with open(os.path.join(d, "anchors.keys")) as f:
        out.put((d, f.read()))


def test_cache_race():
    """Tests that start together on an empty cache share one generated
    world: none replaces a world another has already returned (keys are
    random, so a replaced world no longer matches the trust anchors a
    running test has read)."""
    import multiprocessing
    import shutil
    import tempfile
    cache = tempfile.mkdtemp(prefix="alignd-worldcache-")
    try:
        out = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=_prepare_and_read,
                                         args=(cache, out)) for _ in range(3)]
        for p in procs:
            p.start()
        seen = [out.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(60)
            check(p.exitcode == 0, "prepare process exit %s" % p.exitcode)
        dirs = {d for d, _ in seen}
        check(len(dirs) == 1, "one cached world, got %s" % dirs)
        final = seen[0][0]
        with open(os.path.join(final, "anchors.keys")) as f:
            now = f.read()
        check(all(a == now for _, a in seen),
              "a returned world was replaced by a later generation")
        left = [n for n in os.listdir(cache) if n.startswith("tmp-world-")]
        check(not left, "temporary worlds left: %s" % left)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main():
    test_cache_race()
    test_world()
    test_with_world()
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("world runs and stops cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
