"""Test harness: runs the real alignd on a temporary socket and talks to it.

Paths of the built programs come from the environment that meson sets
(ALIGND, ALIGNC); every daemon started here is stopped by the test.

ALIGND_WRAPPER, when set, is a command line put in front of the daemon's
(for example "valgrind --error-exitcode=99 --leak-check=full"); start-up
and shutdown waits are then longer. See tests/soak/README.md.
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ALIGND = os.environ.get("ALIGND", "alignd")
ALIGNC = os.environ.get("ALIGNC", "alignc")
WRAPPER = shlex.split(os.environ.get("ALIGND_WRAPPER", ""))
# how much slower start-up and shutdown are under the wrapper
WAIT_FACTOR = 10 if WRAPPER else 1


def private_history(directory, config_text="", args=()):
    """The history store is on by default, at the system's path; a test
    daemon keeps its own in its directory unless the test chose one."""
    if re.search(r"^\s*history\s*=", config_text or "", re.M) or \
            any(str(a).startswith("history=") for a in args):
        return []
    return ["--set", "history=sqlite:" + os.path.join(directory, "history.sqlite")]


class Daemon:
    """One alignd process on a private socket in a private directory."""

    def __init__(self, *args, config=None, world=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="alignd-test-")
        self.socket = os.path.join(self.dir, "alignd.sock")
        self.log_path = os.path.join(self.dir, "alignd.log")
        self.args = list(args)
        self.config_path = None
        self.config_text = config or ""
        if config is not None:
            self.config_path = os.path.join(self.dir, "alignd.conf")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.world = world
        self.env = env
        self.proc = None

    def start(self, wait=True):
        cmd = WRAPPER + [ALIGND, "--socket", self.socket, "--authserv-id", "mx.test.example"]
        if self.world is not None:
            cmd += ["--unbound-config", self.world.unbound_conf,
                    "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        cmd += private_history(self.dir, self.config_text, self.args)
        cmd += self.args
        self.log = open(self.log_path, "ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        end = time.monotonic() + timeout * WAIT_FACTOR
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("alignd exited with %s:\n%s" % (self.proc.returncode, self.logtext()))
            try:
                with self.connect(timeout=1.0) as s:
                    s.sendall(b"PING\r\n\r\n")
                    if recv_reply(s).startswith(b"ALIGND/1 200 PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("alignd did not come up:\n" + self.logtext())

    def connect(self, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        return s

    def request(self, data, timeout=10.0):
        """Sends raw bytes on a new connection, returns the first reply."""
        with self.connect(timeout) as s:
            s.sendall(data)
            return recv_reply(s)

    def logtext(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * WAIT_FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        rc = self.proc.returncode if self.proc else None
        return rc

    def cleanup(self):
        """Stops the daemon, which must exit 0 (under ASan a leak or an
        error at exit makes it non-zero), and removes its directory."""
        rc = self.stop()
        log = self.logtext()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.proc is not None and rc != 0:
            raise AssertionError("alignd exited with %s; its log:\n%s" % (rc, log[-6000:]))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def recv_reply(s, data=b""):
    """Reads one complete reply (head up to the blank line, plus a body
    when the head has Content-Length). Returns it; extra bytes are lost,
    so use RecvBuffer for pipelines."""
    rb = RecvBuffer(s, data)
    return rb.reply()


class RecvBuffer:
    def __init__(self, sock, data=b""):
        self.s = sock
        self.buf = data

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed; have %r" % self.buf[:200])
        self.buf += chunk

    def reply(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end + 4]
                clen = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        clen = int(line.split(b":", 1)[1])
                if len(self.buf) >= end + 4 + clen:
                    r = self.buf[:end + 4 + clen]
                    self.buf = self.buf[end + 4 + clen:]
                    return r
            self._fill()

    def closed(self, timeout=5.0):
        """True when the peer closes the connection (after any bytes)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def scan_request(msg, ip=None, helo=None, mail_from=None, rcpt=(), queue_id=None,
                 fmt=None, explain=False, extra=b""):
    if isinstance(msg, str):
        msg = msg.encode()
    h = b"SCAN ALIGND/1\r\n"
    if ip:
        h += b"Client-IP: " + ip.encode() + b"\r\n"
    if helo:
        h += b"Helo: " + helo.encode() + b"\r\n"
    if mail_from is not None:
        h += b"Mail-From: <" + mail_from.encode() + b">\r\n"
    for r in rcpt:
        h += b"Rcpt-To: <" + r.encode() + b">\r\n"
    if queue_id:
        h += b"Queue-Id: " + queue_id.encode() + b"\r\n"
    if fmt:
        h += b"Format: " + fmt.encode() + b"\r\n"
    if explain:
        h += b"Explain: yes\r\n"
    h += extra
    h += b"Content-Length: %d\r\n\r\n" % len(msg)
    return h + msg


def fields(reply):
    """Parses a text reply into (status line, list of (name, value))."""
    text = reply.decode("utf-8", "replace")
    lines = text.split("\r\n")
    out = []
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(": ")
        out.append((name, value))
    return lines[0], out


def field(reply, name):
    for n, v in fields(reply)[1]:
        if n.lower() == name.lower():
            return v
    return None


def run_alignc(*args, input=None, timeout=60, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([ALIGNC] + list(args), input=input, capture_output=True,
                          timeout=timeout, env=e)


SIMPLE_MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


def main():
    unittest.main(verbosity=2)
