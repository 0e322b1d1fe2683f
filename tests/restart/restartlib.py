"""Shared pieces of the crash and restart tests: the test DNS world for a
whole test file, a daemon that takes authserv_id from its configuration
file, signed messages, STATS, and a minimal milter-protocol (v6) client
standing in for the MTA in front of alignd-milter.

Everything started here lives in private temporary directories and is
stopped by the tests, also when they fail.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402
from harness import Daemon, RecvBuffer  # noqa: E402
from dnsworld import World  # noqa: E402

import dkim  # noqa: E402

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
MILTER = os.environ.get("ALIGND_MILTER", os.path.join(BUILD, "clients/milter/alignd-milter"))
FILTER = os.environ.get("ALIGND_FILTER", os.path.join(BUILD, "clients/filter/alignd-filter"))
CACHE = os.environ.get("ALIGND_WORLD_CACHE")
AUTHSERV_ID = "mx.test.example"

_world = None


def world():
    """The DNS world of this test file, started on first use."""
    global _world
    if _world is None:
        w = World(cache_dir=CACHE)
        w.start()
        _world = w
    return _world


def stop_world():
    global _world
    if _world is not None:
        _world.stop()
        _world = None


class FileConfigDaemon(Daemon):
    """A daemon whose authserv_id comes from its configuration file (the
    plain harness pins it with --authserv-id, which a reload cannot
    change)."""

    def start(self, wait=True):
        cmd = harness.WRAPPER + [harness.ALIGND, "--socket", self.socket, "--config", self.config_path]
        if self.world is not None:
            cmd += ["--unbound-config", self.world.unbound_conf,
                    "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive"]
        cmd += harness.private_history(self.dir, self.config_text, self.args)
        cmd += self.args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self


def kill9(d):
    """SIGKILL, as a crash would; the stale socket stays behind."""
    d.proc.kill()
    d.proc.wait()
    d.log.close()


def restart(dead, *args):
    """A new daemon on the socket of a killed one (the clients' configured
    path), in the same directory. Returns it started."""
    n = Daemon(*args, world=dead.world)
    shutil.rmtree(n.dir, ignore_errors=True)
    n.dir, n.socket, n.log_path = dead.dir, dead.socket, dead.log_path
    return n.start()


def stats(d):
    with d.connect(timeout=10) as s:
        s.sendall(b"STATS\r\n\r\n")
        rep = RecvBuffer(s).reply().decode()
    out = {}
    for line in rep.split("\r\n")[1:]:
        k, _, v = line.partition(": ")
        if k:
            out[k] = v
    return out


def message(from_addr, test_id, size=1000, world_dir=None, domain="example.com",
            selector="s2048"):
    """A message (bytes, CRLF) with an X-Test-Id header outside the DKIM
    signature, signed with the world's key when world_dir is given."""
    body = b"".join(b"line %06d of the test message, padding padding padding\r\n" % i
                    for i in range(max(1, size // 58)))
    msg = ("From: %s\r\nTo: user@example.net\r\nSubject: restart test\r\n"
           "Date: Mon, 20 Nov 2023 10:00:00 +0000\r\nMessage-ID: <%s@test>\r\n\r\n"
           % (from_addr, test_id)).encode() + body
    if world_dir:
        with open(os.path.join(world_dir, "dkim", domain, selector + ".pem"), "rb") as f:
            key = f.read()
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                        canonicalize=(b"relaxed", b"relaxed"))
        msg = sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg
    return b"X-Test-Id: " + test_id.encode() + b"\r\n" + msg


def wait_until(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ------------------------------------------------------------- milter

# protocol flags (libmilter mfdef.h)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_EOH, P_NR_BODY, P_HDR_LEADSPC = 0x40000, 0x80000, 0x100000
ALL_ACTIONS = 0x1FF
OFFERED_PROTOCOL = P_HDR_LEADSPC   # every step answered, like Postfix' default


class MilterError(Exception):
    pass


class MilterSession:
    """The MTA side of one milter connection (protocol version 6), as
    Postfix speaks it: negotiate, connect, helo, then messages (mail, rcpt,
    headers, end of headers, body, end of message), quit."""

    def __init__(self, path, timeout=30.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.send(b"O", struct.pack("!III", 6, ALL_ACTIONS, OFFERED_PROTOCOL))
        cmd, data = self.recv()
        if cmd != b"O" or len(data) < 12:
            raise MilterError("bad negotiation reply %r %r" % (cmd, data[:20]))
        self.version, self.actions, self.pflags = struct.unpack("!III", data[:12])

    def close(self):
        try:
            self.send(b"Q", b"")
        except OSError:
            pass
        self.s.close()

    def send(self, cmd, data):
        self.s.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack("!I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    pkt = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return pkt[:1], pkt[1:]
            chunk = self.s.recv(65536)
            if not chunk:
                raise MilterError("the milter closed the connection")
            self.buf += chunk

    def step(self, cmd, data, no_flag, nr_flag):
        """Sends one step; returns None to go on, or the final reply."""
        if self.pflags & no_flag:
            return None
        self.send(cmd, data)
        if self.pflags & nr_flag:
            return None
        rcmd, rdata = self.recv()
        if rcmd == b"c":
            return None
        return (rcmd, rdata)

    def connect(self, hostname, ip):
        return self.step(b"C", hostname.encode() + b"\0" + b"4" + struct.pack("!H", 25)
                         + ip.encode() + b"\0", P_NOCONNECT, P_NR_CONN)

    def helo(self, name):
        return self.step(b"H", name.encode() + b"\0", P_NOHELO, P_NR_HELO)

    def message(self, mail_from, rcpt, msg, queue_id):
        """One transaction. Returns (final, mods): final is the reply
        command ('a' accept, 'c' continue, 't' tempfail, 'r' reject,
        'y' with an SMTP reply text, ...) and its data; mods the header
        changes ('h' add, 'i' insert, 'm' change) as (cmd, data)."""
        r = self.step(b"M", b"<" + mail_from.encode() + b">\0", P_NOMAIL, P_NR_MAIL)
        if r:
            return r, []
        r = self.step(b"R", b"<" + rcpt.encode() + b">\0", P_NORCPT, P_NR_RCPT)
        if r:
            return r, []
        head, _, body = msg.partition(b"\r\n\r\n")
        fields = []
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1] += b"\r\n" + line
            else:
                name, _, value = line.partition(b":")
                fields.append([name, value])
        for name, value in fields:
            if not self.pflags & P_HDR_LEADSPC and value.startswith(b" "):
                value = value[1:]
            r = self.step(b"L", name + b"\0" + value + b"\0", P_NOHDRS, P_NR_HDR)
            if r:
                return r, []
        r = self.step(b"N", b"", P_NOEOH, P_NR_EOH)
        if r:
            return r, []
        for off in range(0, len(body), 65535):
            r = self.step(b"B", body[off:off + 65535], P_NOBODY, P_NR_BODY)
            if r:
                return r, []
        self.send(b"D", b"E" + b"i\0" + queue_id.encode() + b"\0")
        self.send(b"E", b"")
        mods = []
        while True:
            rcmd, rdata = self.recv()
            if rcmd in (b"h", b"i", b"m", b"q", b"+", b"-", b"b", b"e", b"2", b"f"):
                mods.append((rcmd, rdata))
                continue
            if rcmd == b"p":      # progress: still working
                continue
            return (rcmd, rdata), mods


def inserted_ar(mods):
    """The values of Authentication-Results fields the milter added."""
    out = []
    for cmd, data in mods:
        if cmd == b"i":
            data = data[4:]
        if cmd in (b"h", b"i"):
            name, _, value = data.partition(b"\0")
            if name.lower() == b"authentication-results":
                out.append(value.rstrip(b"\0").decode("utf-8", "replace"))
    return out


def verdict_kind(final, mods):
    """'scanned' (accepted with our results), 'tempfail' (4xx), 'reject'
    (5xx), or 'unscanned' / 'other:...' for anything else."""
    cmd, data = final
    if cmd == b"t":
        return "tempfail"
    if cmd == b"y":
        code = data[:1]
        return {b"4": "tempfail", b"5": "reject"}.get(code, "other:%r" % data[:60])
    if cmd == b"r":
        return "reject"
    if cmd in (b"a", b"c"):
        ars = inserted_ar(mods)
        if any(a.strip().startswith(AUTHSERV_ID + ";") for a in ars):
            return "scanned"
        return "unscanned"
    return "other:%r" % cmd
