#!/usr/bin/python3
"""Load and soak test: mixed load against the real daemon on the test DNS
world, with a fraction of bad input, while the daemon's memory and open
file descriptors are sampled.

    soak.py [--seconds N] [--scans N] [--connections N] [--interval S]
            [--bad-fraction F] [--cache-dir DIR]

Load: --connections client tasks (asyncio, UNIX socket) run until
--seconds have passed or --scans scans were answered. Each task picks,
per round, one of: a keep-alive connection with several scans in turn;
a pipeline of up to 16 scans sent in one write; PING/STATS; or bad input
(a malformed field between good requests, an unknown command, binary
garbage, a Content-Length that is not a number or is above the limit,
a disconnect in the middle of a message or before reading the reply).
Messages: 1 KB to 1 MB, signed with python3-dkim using the world's keys
(RSA 1024/2048, ed25519), plus unsigned, SPF-failing and broken-signature
ones. Every well-formed request must get its proper reply: 200, the
Queue-Id it sent (so pipelined replies are in order) and the same action
and symbols the message got when scanned alone before the load.

Every --interval seconds a line with scans, rate, VmRSS and the number of
open descriptors (/proc/PID/fd) is printed. Checks at the end: no error
for a well-formed request; after the warm-up (a quarter of the run, at
least 10 s) RSS stays within a bounded growth of its value at the end of
the warm-up; once the clients are gone the descriptors come back to their
count before the load. Exit status 0 when all hold, 1 otherwise.

The CI version (meson suite 'soak') runs for 60 s; the long run is
`soak.py --seconds 1800` (or `--scans 2000000`), see README.md.
"""
import argparse
import asyncio
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import ALIGND, Daemon  # noqa: E402
from dnsworld import World  # noqa: E402

import dkim  # noqa: E402

MB = 1024 * 1024
LOG_KEEP = 64 * MB       # the daemon's log is cut when it grows past this
IO_TIMEOUT = 60.0        # one reply, even a 1 MB scan under ASan


def sanitized():
    """True when the daemon is built with AddressSanitizer (its allocator
    keeps freed memory in quarantine: RSS grows by design) or runs under
    a wrapper such as valgrind."""
    if os.environ.get("ALIGND_WRAPPER"):
        return True
    try:
        with open(ALIGND, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# ------------------------------------------------------------- messages

def body_of(size, seed):
    rng = random.Random(seed)
    words = ["alignment", "policy", "record", "signature", "domain", "header",
             "relaxed", "simple", "selector", "envelope", "verdict", "queue"]
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(10))
        lines.append(line)
        n += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def message(from_addr, subject, size, seed):
    head = ("From: %s\r\nTo: user@example.net\r\nSubject: %s\r\n"
            "Date: Mon, 20 Nov 2023 10:00:00 +0000\r\n"
            "Message-ID: <soak-%d@test>\r\n\r\n" % (from_addr, subject, seed))
    return head.encode() + body_of(size, seed)


def sign(msg, world_dir, domain, selector):
    base = os.path.join(world_dir, "dkim", domain, selector)
    if os.path.exists(base + ".ed25519"):
        with open(base + ".ed25519", "rb") as f:
            key, alg = f.read().strip(), b"ed25519-sha256"
    else:
        with open(base + ".pem", "rb") as f:
            key, alg = f.read(), b"rsa-sha256"
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                    canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=alg)
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


class Case:
    """One message with its envelope; `expect` is (action, symbol names)
    from a scan of the message alone."""

    def __init__(self, name, msg, ip, helo, mail_from, weight=1):
        self.name = name
        self.msg = msg
        self.weight = weight
        h = b"SCAN ALIGND/1\r\nClient-IP: %s\r\nHelo: %s\r\nMail-From: <%s>\r\n" \
            b"Rcpt-To: <user@example.net>\r\n" % (ip.encode(), helo.encode(), mail_from.encode())
        self.head = h
        self.tail = b"Content-Length: %d\r\n\r\n" % len(msg) + msg
        self.expect = None

    def request(self, qid):
        return self.head + b"Queue-Id: " + qid.encode() + b"\r\n" + self.tail


def make_cases(world_dir):
    c = []
    m = message("Alice <alice@example.com>", "small rsa-2048", 1000, 1)
    c.append(Case("1k-rsa2048", sign(m, world_dir, "example.com", "s2048"),
                  "192.0.2.25", "mail.example.com", "alice@example.com", 6))
    m = message("alice@example.com", "ed25519", 10000, 2)
    c.append(Case("10k-ed25519", sign(m, world_dir, "example.com", "ed"),
                  "192.0.2.25", "mail.example.com", "alice@example.com", 4))
    m = message("bob@example.org", "example.org rsa-2048", 100000, 3)
    c.append(Case("100k-org", sign(m, world_dir, "example.org", "sel1"),
                  "198.51.100.25", "mail.example.org", "bob@example.org", 2))
    m = message("carol@aligned.example", "rsa-1024", 300000, 4)
    c.append(Case("300k-rsa1024", sign(m, world_dir, "aligned.example", "k1024"),
                  "192.0.2.30", "mail.aligned.example", "carol@aligned.example", 1))
    m = message("alice@example.com", "one megabyte", 1000000, 5)
    c.append(Case("1m-rsa1024", sign(m, world_dir, "example.com", "s1024"),
                  "192.0.2.25", "mail.example.com", "alice@example.com", 1))
    # verdicts other than accept
    m = message("ceo@example.com", "spoofed", 2000, 6)
    c.append(Case("spoof-reject", m, "203.0.113.66", "evil.example.net",
                  "ceo@example.com", 3))
    m = sign(message("alice@example.com", "altered", 5000, 7), world_dir, "example.com", "s2048")
    m = m.replace(b"alignment", b"ALIGNMENT", 1)
    c.append(Case("bad-signature", m, "203.0.113.66", "relay.example.net",
                  "alice@example.com", 2))
    m = message("dave@example.net", "p=none", 3000, 8)
    c.append(Case("pnone-unsigned", m, "203.0.113.25", "mx.example.net",
                  "dave@example.net", 2))
    return c


STATUS_RE = re.compile(rb"^ALIGND/1 (\d{3}) ")


def summary(reply):
    """(code, queue id, action, sorted symbol names) of a text reply."""
    m = STATUS_RE.match(reply)
    code = int(m.group(1)) if m else 0
    qid = action = None
    syms = []
    for line in reply.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b": ")
        n = name.lower()
        if n == b"queue-id":
            qid = value.decode("ascii", "replace")
        elif n == b"action":
            action = value.decode("ascii", "replace")
        elif n == b"symbol":
            syms.append(value.split(b" ", 1)[0].decode("ascii", "replace"))
    return code, qid, action, tuple(sorted(syms))


# ------------------------------------------------------------- client side

async def read_reply(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    clen = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            clen = int(line.split(b":", 1)[1])
    if clen:
        head += await reader.readexactly(clen)
    return head


class Load:
    def __init__(self, d, cases, args):
        self.d = d
        self.cases = cases
        self.weights = [c.weight for c in cases]
        self.args = args
        self.stop_at = time.monotonic() + args.seconds
        self.scans = 0          # well-formed scans answered correctly
        self.other_ok = 0       # PING/STATS/QUIT answered
        self.bad_sent = {}      # kind -> count
        self.failures = []      # descriptions of wrong answers (first 20 kept)
        self.n_fail = 0
        self.seq = 0

    def done(self):
        return time.monotonic() >= self.stop_at or \
            (self.args.scans and self.scans >= self.args.scans) or \
            self.n_fail >= 50

    def fail(self, what):
        self.n_fail += 1
        if len(self.failures) < 20:
            self.failures.append(what)

    def qid(self):
        self.seq += 1
        return "S%d" % self.seq

    def pick(self, rng):
        return rng.choices(self.cases, self.weights)[0]

    def check_scan(self, case, qid, reply):
        code, rqid, action, syms = summary(reply)
        if code != 200 or rqid != qid or (action, syms) != case.expect:
            self.fail("%s %s: got %r" % (case.name, qid, reply[:300]))
            return False
        self.scans += 1
        return True

    async def connect(self):
        return await asyncio.wait_for(
            asyncio.open_unix_connection(self.d.socket, limit=4 * MB), IO_TIMEOUT)

    # --- well-formed rounds
    async def keepalive(self, rng):
        r, w = await self.connect()
        try:
            for _ in range(rng.randint(1, 20)):
                case, q = self.pick(rng), self.qid()
                w.write(case.request(q))
                self.check_scan(case, q, await asyncio.wait_for(read_reply(r), IO_TIMEOUT))
                if self.done():
                    break
            if rng.random() < 0.5:
                w.write(b"QUIT\r\n\r\n")
                rep = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
                if not rep.startswith(b"ALIGND/1 200 BYE"):
                    self.fail("QUIT: %r" % rep[:100])
                else:
                    self.other_ok += 1
        finally:
            w.close()

    async def pipeline(self, rng):
        r, w = await self.connect()
        try:
            batch = [(self.pick(rng), self.qid()) for _ in range(rng.randint(2, 16))]
            w.write(b"".join(c.request(q) for c, q in batch))
            for c, q in batch:
                self.check_scan(c, q, await asyncio.wait_for(read_reply(r), IO_TIMEOUT))
        finally:
            w.close()

    async def ping_stats(self, rng):
        r, w = await self.connect()
        try:
            w.write(b"PING\r\n\r\nSTATS ALIGND/1\r\n\r\n")
            a = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
            b = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
            if not a.startswith(b"ALIGND/1 200 PONG") or not b.startswith(b"ALIGND/1 200"):
                self.fail("PING/STATS: %r %r" % (a[:60], b[:60]))
            else:
                self.other_ok += 2
        finally:
            w.close()

    # --- bad input
    async def bad(self, rng):
        kind = rng.choice(["bad-field", "unknown-cmd", "garbage", "bad-length",
                           "too-large", "cut-body", "no-read"])
        self.bad_sent[kind] = self.bad_sent.get(kind, 0) + 1
        r, w = await self.connect()
        try:
            if kind in ("bad-field", "unknown-cmd"):
                # a recoverable error between two good scans on one connection
                c1, q1 = self.pick(rng), self.qid()
                c2, q2 = self.pick(rng), self.qid()
                bad = b"SCAN\r\nno colon here\r\nContent-Length: 5\r\n\r\nhello" \
                    if kind == "bad-field" else b"FROB ALIGND/1\r\n\r\n"
                want = 400 if kind == "bad-field" else 405
                w.write(c1.request(q1) + bad + c2.request(q2))
                self.check_scan(c1, q1, await asyncio.wait_for(read_reply(r), IO_TIMEOUT))
                rep = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
                if summary(rep)[0] != want:
                    self.fail("%s: wanted %d, got %r" % (kind, want, rep[:100]))
                self.check_scan(c2, q2, await asyncio.wait_for(read_reply(r), IO_TIMEOUT))
            elif kind == "garbage":
                w.write(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))))
                w.write_eof()
                # whatever it answers, it must close the connection
                await asyncio.wait_for(r.read(), IO_TIMEOUT)
            elif kind == "bad-length":
                w.write(b"SCAN\r\nContent-Length: 12x\r\n\r\nhello")
                rep = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
                if summary(rep)[0] != 400:
                    self.fail("bad-length: %r" % rep[:100])
                await asyncio.wait_for(r.read(), IO_TIMEOUT)
            elif kind == "too-large":
                w.write(b"SCAN\r\nContent-Length: 99999999999\r\n\r\n")
                rep = await asyncio.wait_for(read_reply(r), IO_TIMEOUT)
                if summary(rep)[0] != 413:
                    self.fail("too-large: %r" % rep[:100])
            elif kind == "cut-body":
                c = self.pick(rng)
                req = c.request(self.qid())
                w.write(req[:rng.randint(1, len(req) - 1)])
                await w.drain()
            elif kind == "no-read":
                c = self.pick(rng)
                w.write(c.request(self.qid()))
                await w.drain()
        finally:
            w.close()

    async def worker(self, n):
        rng = random.Random(n)
        bad_fraction = self.args.bad_fraction
        while not self.done():
            x = rng.random()
            try:
                if x < bad_fraction:
                    await self.bad(rng)
                elif x < bad_fraction + 0.05:
                    await self.ping_stats(rng)
                elif x < 0.6:
                    await self.keepalive(rng)
                else:
                    await self.pipeline(rng)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    asyncio.LimitOverrunError) as e:
                self.fail("worker %d: %s: %s" % (n, type(e).__name__, e))


# ------------------------------------------------------------- daemon side

def proc_figures(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def trim_log(d):
    """Keeps the daemon's log (one line per scan) from filling the disk:
    it is opened for appending, so cutting it is safe."""
    try:
        if os.path.getsize(d.log_path) > LOG_KEEP:
            with open(d.log_path, "rb") as f:
                f.seek(-MB, os.SEEK_END)
                tail = f.read()
            os.truncate(d.log_path, 0)
            with open(d.log_path, "ab") as f:
                f.write(b"[log cut by soak.py]\n" + tail)
    except OSError:
        pass


async def monitor(load, d, samples, interval):
    t0 = time.monotonic()
    last_scans, last_t = 0, t0
    while not load.done():
        await asyncio.sleep(min(interval, max(0.05, load.stop_at - time.monotonic())))
        if d.proc.poll() is not None:
            load.fail("the daemon exited with %s" % d.proc.returncode)
            return
        now = time.monotonic()
        rss, fds = proc_figures(d.proc.pid)
        rate = (load.scans - last_scans) / max(1e-6, now - last_t)
        last_scans, last_t = load.scans, now
        samples.append((now - t0, load.scans, rss, fds))
        print("t=%6.1fs scans=%9d rate=%7.0f/s rss=%7.1fMB fds=%4d bad=%d errors=%d"
              % (now - t0, load.scans, rate, rss / MB, fds,
                 sum(load.bad_sent.values()), load.n_fail), flush=True)
        trim_log(d)


async def run_load(d, cases, args):
    load = Load(d, cases, args)
    samples = []
    workers = [asyncio.ensure_future(load.worker(i)) for i in range(args.connections)]
    mon = asyncio.ensure_future(monitor(load, d, samples, args.interval))
    await asyncio.gather(*workers)
    mon.cancel()
    try:
        await mon
    except asyncio.CancelledError:
        pass
    return load, samples


def scan_alone(d, case):
    with d.connect(timeout=IO_TIMEOUT) as s:
        s.sendall(case.request("warmup"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def slope(samples):
    """Least-squares slope of RSS over scans answered (bytes per scan)."""
    xs = [s[1] for s in samples]
    ys = [s[2] for s in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var


def wait_fds(pid, want, timeout):
    end = time.monotonic() + timeout
    fds = proc_figures(pid)[1]
    while fds > want and time.monotonic() < end:
        time.sleep(0.2)
        fds = proc_figures(pid)[1]
    return fds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--scans", type=int, default=0, help="stop after this many scans")
    ap.add_argument("--connections", type=int, default=48)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--bad-fraction", type=float, default=0.1)
    ap.add_argument("--cache-dir", default=os.environ.get("ALIGND_WORLD_CACHE"))
    args = ap.parse_args()
    asan = sanitized()
    ok = True
    with World(cache_dir=args.cache_dir) as w:
        cases = make_cases(w.world_dir)
        d = Daemon(world=w)
        d.start()
        try:
            for c in cases:
                rep = scan_alone(d, c)
                code, _, action, syms = summary(rep)
                print("case %-15s %7d bytes: %s %s" % (c.name, len(c.msg), action, " ".join(syms)))
                if code != 200 or action not in ("accept", "reject", "quarantine") \
                        or "DKIM_TEMPERROR" in syms or "SPF_TEMPERROR" in syms:
                    raise SystemExit("case %s alone: unexpected reply %r" % (c.name, rep[:400]))
                c.expect = (action, syms)
            rss0, fds0 = proc_figures(d.proc.pid)
            print("before the load: rss=%.1fMB fds=%d; %d connections, %.0f s%s%s"
                  % (rss0 / MB, fds0, args.connections, args.seconds,
                     ", at most %d scans" % args.scans if args.scans else "",
                     " (sanitized build: looser memory bound)" if asan else ""), flush=True)
            t0 = time.monotonic()
            load, samples = asyncio.run(run_load(d, cases, args))
            elapsed = time.monotonic() - t0
            fds_after = wait_fds(d.proc.pid, fds0, 15)
            rss_end, _ = proc_figures(d.proc.pid)
            print("after the load: %d scans in %.1f s (%.0f/s), %d PING/STATS/QUIT, bad input %s"
                  % (load.scans, elapsed, load.scans / max(elapsed, 1e-6), load.other_ok,
                     dict(sorted(load.bad_sent.items()))))
            print("after the load: rss=%.1fMB fds=%d (before: %d)"
                  % (rss_end / MB, fds_after, fds0))

            if load.n_fail:
                ok = False
                print("FAIL: %d wrong answers to well-formed requests; first ones:" % load.n_fail)
                for f in load.failures:
                    print("  " + f)
            if load.scans == 0:
                ok = False
                print("FAIL: no scan answered")
            if fds_after > fds0:
                ok = False
                print("FAIL: %d descriptors more than before the load" % (fds_after - fds0))
            # memory: flat after the warm-up
            warm = max(10.0, elapsed / 4)
            post = [s for s in samples if s[0] >= warm]
            pre = [s for s in samples if s[0] < warm]
            if len(post) >= 2 and pre:
                base = pre[-1][2]
                peak = max(s[2] for s in post)
                allowed = base * (1.5 if asan else 1.2) + (64 if asan else 16) * MB
                print("memory: rss %.1fMB at the end of the warm-up (%.0f s), peak %.1fMB after "
                      "it, allowed %.1fMB; trend %+.0f bytes per 1000 scans"
                      % (base / MB, warm, peak / MB, allowed / MB, 1000 * slope(post)))
                if peak > allowed:
                    ok = False
                    print("FAIL: RSS grew past the bound after the warm-up")
            else:
                print("memory: run too short for the warm-up comparison")
                if args.seconds >= 40:
                    ok = False
                    print("FAIL: too few samples")
        finally:
            rc = d.stop()
            if rc != 0:
                ok = False
                print("FAIL: the daemon exited with %s; log tail:\n%s" % (rc, d.logtext()[-4000:]))
            if not ok:
                print("daemon log tail:\n" + d.logtext()[-3000:])
            import shutil
            shutil.rmtree(d.dir, ignore_errors=True)
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
