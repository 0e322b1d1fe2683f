"""Runs the test DNS world (tests/dnsworld/) on loopback for one test.

    from dnsworld import World
    with World(cache_dir=...) as w:
        w.unbound_conf   # libunbound config: stubs, trust anchors
        w.world_dir      # generated data: world.json, dkim/, zones/
        w.nsd_port

nsd runs in the foreground with its pid file, state and log in a private
temporary directory; the fault responders (silent, servfail, refused,
delayed) run as threads of this process. Ports are free loopback ports
chosen at start, so worlds can run side by side. Everything is stopped on
exit, on exceptions and, through the handlers installed by with_world.py,
on SIGTERM/SIGINT; nsd also gets SIGTERM if this process dies.
"""

import ctypes
import fcntl
import hashlib
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD_SRC = os.path.join(os.path.dirname(HERE), "dnsworld")
sys.path.insert(0, WORLD_SRC)
import mkworld  # noqa: E402

# Reuse a cached generated world for at most this long: ldns-signzone
# signatures are valid for four weeks from generation.
CACHE_MAX_AGE_S = 7 * 86400
NSD = shutil.which("nsd") or "/usr/sbin/nsd"


def free_port():
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free loopback port")


def _pdeathsig():
    # Linux: nsd gets SIGTERM when the process that started it dies.
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _world_hash(world):
    h = hashlib.sha256()
    for p in (world, mkworld.__file__):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def prepare(world=mkworld.DEFAULT_WORLD, cache_dir=None):
    """The generated world's directory: from cache_dir when a fresh copy of
    the same description is there, else newly generated (into the cache if
    one is given). Returns (dir, is_temporary).

    Tests start side by side, so generation holds an exclusive lock on the
    cache and looks again once it has it: a world another test has just
    made is used, never replaced (its keys are random, and a test already
    running on it reads its trust anchors and DKIM keys from it)."""
    if not cache_dir:
        d = tempfile.mkdtemp(prefix="alignd-world-")
        mkworld.generate(d, world)
        return d, True
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, "world-" + _world_hash(world))
    stamp = os.path.join(final, "world.json")

    def fresh():
        return os.path.exists(stamp) and \
            time.time() - os.path.getmtime(stamp) < CACHE_MAX_AGE_S

    if fresh():
        return final, False
    with open(os.path.join(cache_dir, ".world.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if fresh():
            return final, False
        tmp = tempfile.mkdtemp(prefix="tmp-world-", dir=cache_dir)
        mkworld.generate(tmp, world)
        if os.path.exists(final):
            old = tempfile.mkdtemp(prefix="old-world-", dir=cache_dir)
            os.rename(final, os.path.join(old, "w"))
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
    return final, False


def _dns_rcode_reply(query, rcode):
    """A header-only reply to query with the given rcode, or None."""
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:
        return None
    # Copy the question section so resolvers accept the reply.
    off = 12
    if qd >= 1:
        while off < len(query):
            n = query[off]
            off += 1 + n
            if n == 0:
                break
        off += 4
    if off > len(query):
        return None
    flags = 0x8000 | (flags & 0x7900) | (rcode & 0xF)
    return struct.pack("!HHHHHH", qid, flags, min(qd, 1), 0, 0, 0) + \
        query[12:off]


class Responder(threading.Thread):
    """A misbehaving name server on 127.0.0.1:port (UDP and TCP).
    mode: silent | servfail | refused | delay:MS (relays nsd's answer late)
    | switch (relays nsd's answer at once while down_path does not exist,
    stays silent while it does)."""

    def __init__(self, mode, nsd_port, down_path=None):
        super().__init__(daemon=True)
        self.mode = mode
        self.nsd_port = nsd_port
        self.down_path = down_path
        self.delay = int(mode.split(":")[1]) / 1000.0 \
            if mode.startswith("delay:") else 0
        self.port = None
        self.stop_r, self.stop_w = os.pipe()
        for _ in range(20):
            self.port = free_port()
            try:
                self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.udp.bind(("127.0.0.1", self.port))
                self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.tcp.bind(("127.0.0.1", self.port))
                self.tcp.listen(64)
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                continue
        self.queue = []  # (due, data, addr) for delay mode
        self.held = []   # TCP connections kept silent
        self.queries = 0

    def answer(self, data):
        if self.mode == "servfail":
            return _dns_rcode_reply(data, 2)
        if self.mode == "refused":
            return _dns_rcode_reply(data, 5)
        if self.is_down():
            return None
        if self.delay or self.mode == "switch":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            try:
                s.sendto(data, ("127.0.0.1", self.nsd_port))
                return s.recv(65535)
            except OSError:
                return None
            finally:
                s.close()
        return None  # silent

    def is_down(self):
        return self.mode == "switch" and os.path.exists(self.down_path)

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        sel.register(self.stop_r, selectors.EVENT_READ, "stop")
        while True:
            timeout = None
            if self.queue:
                timeout = max(0, self.queue[0][0] - time.monotonic())
            for key, _ in sel.select(timeout):
                if key.data == "stop":
                    return
                if key.data == "udp":
                    try:
                        data, addr = self.udp.recvfrom(65535)
                    except OSError:
                        continue
                    self.queries += 1
                    if self.delay:
                        self.queue.append((time.monotonic() + self.delay,
                                           data, addr))
                        self.queue.sort(key=lambda x: x[0])
                        continue
                    rep = self.answer(data)
                    if rep:
                        self.udp.sendto(rep, addr)
                elif key.data == "tcp":
                    try:
                        c, _ = self.tcp.accept()
                    except OSError:
                        continue
                    self.queries += 1
                    if self.mode == "silent" or self.delay or \
                            self.is_down():
                        self.held.append(c)  # read nothing, say nothing
                        continue
                    c.settimeout(1)
                    try:
                        hdr = c.recv(2)
                        n = struct.unpack("!H", hdr)[0] if len(hdr) == 2 else 0
                        q = c.recv(n) if n else b""
                        rep = self.answer(q)
                        if rep:
                            c.sendall(struct.pack("!H", len(rep)) + rep)
                    except OSError:
                        pass
                    c.close()
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, data, addr = self.queue.pop(0)
                rep = self.answer(data)
                if rep:
                    try:
                        self.udp.sendto(rep, addr)
                    except OSError:
                        pass

    def stop(self):
        os.write(self.stop_w, b"x")
        self.join(5)
        for s in [self.udp, self.tcp] + self.held:
            s.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def _soa_query(name):
    qname = b"".join(bytes([len(l)]) + l.encode()
                     for l in name.rstrip(".").split(".") if l) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack("!HH", 6, 1)


class World:
    def __init__(self, world=mkworld.DEFAULT_WORLD, cache_dir=None,
                 keep=False):
        self.world = world
        self.cache_dir = cache_dir
        self.keep = keep
        self.nsd = None
        self.responders = []
        self.rundir = None
        self.world_dir = None
        self._world_tmp = False

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.world_dir, self._world_tmp = prepare(self.world, self.cache_dir)
        self.rundir = tempfile.mkdtemp(prefix="alignd-dnsrun-")
        import json
        with open(os.path.join(self.world_dir, "world.json")) as f:
            self.info = json.load(f)
        last_err = None
        for _ in range(5):
            self.nsd_port = free_port()
            ports = {}
            for zone, mode in mkworld.responder_zones(self.info).items():
                r = Responder(mode, self.nsd_port,
                              os.path.join(self.rundir, zone + ".down"))
                r.start()
                self.responders.append(r)
                ports[zone] = r.port
            self.responder_ports = ports
            nsd_conf, self.unbound_conf = mkworld.write_configs(
                self.world_dir, self.rundir, self.nsd_port, ports)
            self.nsd = subprocess.Popen(
                [NSD, "-d", "-c", nsd_conf], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(self.rundir, "nsd.stderr"), "w"),
                preexec_fn=_pdeathsig)
            if self._wait_nsd():
                return
            last_err = self._nsd_log()
            self._stop_processes()
        raise RuntimeError("nsd did not start: %s" % last_err)

    def _nsd_log(self):
        out = ""
        for f in ("nsd.log", "nsd.stderr"):
            p = os.path.join(self.rundir, f)
            if os.path.exists(p):
                with open(p, errors="replace") as fh:
                    out += fh.read()[-2000:]
        return out

    def _wait_nsd(self, timeout=10.0):
        """True once nsd answers an SOA query for every zone it serves."""
        zones = [z["origin"] for z in self.info["zones"].values()
                 if z["server"] not in ("silent", "servfail", "refused")]
        deadline = time.monotonic() + timeout
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.1)
        try:
            while time.monotonic() < deadline:
                if self.nsd.poll() is not None:
                    return False
                ok = True
                for z in zones:
                    try:
                        s.sendto(_soa_query(z), ("127.0.0.1", self.nsd_port))
                        rep = s.recv(65535)
                    except OSError:
                        ok = False
                        break
                    # NOERROR, authoritative
                    if len(rep) < 12 or rep[3] & 0xF != 0 or \
                            not rep[2] & 0x04:
                        ok = False
                        break
                if ok:
                    return True
                time.sleep(0.05)
            return False
        finally:
            s.close()

    def _stop_processes(self):
        if self.nsd is not None:
            if self.nsd.poll() is None:
                self.nsd.terminate()
                try:
                    self.nsd.wait(5)
                except subprocess.TimeoutExpired:
                    self.nsd.kill()
                    self.nsd.wait()
            self.nsd = None
        for r in self.responders:
            r.stop()
        self.responders = []

    def stop(self):
        self._stop_processes()
        if self.rundir and not self.keep:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None
        if self._world_tmp and self.world_dir and not self.keep:
            shutil.rmtree(self.world_dir, ignore_errors=True)
            self.world_dir = None

    def set_down(self, zone, down=True):
        """A `server: switch` zone stops (or resumes) answering."""
        p = os.path.join(self.rundir, zone + ".down")
        if down:
            open(p, "w").close()
        elif os.path.exists(p):
            os.unlink(p)

    def env(self):
        return {"ALIGND_TEST_RUN_DIR": self.rundir,
                "ALIGND_TEST_UNBOUND_CONF": self.unbound_conf,
                "ALIGND_TEST_WORLD_DIR": self.world_dir,
                "ALIGND_TEST_NSD_PORT": str(self.nsd_port)}
