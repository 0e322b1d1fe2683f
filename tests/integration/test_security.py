"""Privilege and access: dropping root, the peer allowlist (SO_PEERCRED),
socket mode. Needs root (the test command runs as root); skipped otherwise."""
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import ALIGND, RecvBuffer, SIMPLE_MESSAGE, field, run_alignc, scan_request

NOBODY = pwd.getpwnam("nobody")


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def connect_as(path, uid, data):
    """Connects to the socket from a child process running as uid; returns
    the bytes the daemon sent (or b'' when the connection was refused)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(NOBODY.pw_gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(path)
                try:
                    s.sendall(data)
                except OSError:
                    pass     # a refused peer is answered and closed at once
                got = RecvBuffer(s).reply()
            except OSError as e:
                got = ("ERR " + e.__class__.__name__).encode()
            os.write(w, got)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks)


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class SecurityTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="alignd-sec-")
        os.chmod(self.dir, 0o755)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, sock, *args):
        log = open(os.path.join(self.dir, "log"), "ab")
        p = subprocess.Popen([ALIGND, "--socket", sock, "--set", "dns_forwarders=127.0.0.1@9",
                              "--set", "dns_timeout=200ms", "--set", "history=off"] + list(args),
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        for _ in range(200):
            if os.path.exists(sock):
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(sock)
                        s.sendall(b"PING\r\n\r\n")
                        if RecvBuffer(s).reply().startswith(b"ALIGND/1 200 PONG"):
                            return p
                except OSError:
                    pass
            if p.poll() is not None:
                break
            time.sleep(0.05)
        with open(os.path.join(self.dir, "log"), errors="replace") as f:
            raise RuntimeError("alignd did not start:\n" + f.read())

    def test_drops_root(self):
        sock = os.path.join(self.dir, "run", "alignd.sock")   # the daemon creates run/
        p = self.start(sock, "--set", "user=nobody", "--set", "socket_mode=0666")
        st = status_of(p.pid)
        self.assertEqual(st["Uid"].split(), [str(NOBODY.pw_uid)] * 4)
        self.assertEqual(st["Gid"].split(), [str(NOBODY.pw_gid)] * 4)
        self.assertEqual(int(st["CapEff"], 16), 0)
        self.assertEqual(int(st["CapPrm"], 16), 0)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(os.stat(sock).st_uid, NOBODY.pw_uid)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            s.sendall(scan_request(SIMPLE_MESSAGE, queue_id="Q"))
            self.assertEqual(field(RecvBuffer(s).reply(), "Queue-Id"), "Q")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0)
        self.assertFalse(os.path.exists(sock), "the unprivileged daemon removes its socket")
        with open(os.path.join(self.dir, "log")) as f:
            self.assertIn("running as user nobody", f.read())

    def test_pid_file_written_as_root(self):
        # a root-only directory such as /run: written before the drop,
        # owned by root, so the unprivileged daemon cannot rewrite it
        piddir = os.path.join(self.dir, "piddir")
        os.mkdir(piddir, 0o755)
        pidf = os.path.join(piddir, "alignd.pid")
        sock = os.path.join(self.dir, "p.sock")
        p = self.start(sock, "--set", "user=nobody", "--set", "pid_file=" + pidf)
        with open(pidf) as f:
            self.assertEqual(f.read(), "%d\n" % p.pid)
        st = os.stat(pidf)
        self.assertEqual(st.st_uid, 0)
        self.assertEqual(st.st_mode & 0o777, 0o644)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0)

    def test_pid_file_unwritable_refuses_to_start(self):
        sock = os.path.join(self.dir, "q.sock")
        p = subprocess.run([ALIGND, "--socket", sock, "--set", "history=off",
                            "--set", "pid_file=" + os.path.join(self.dir, "no", "such", "x.pid")],
                           capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"pid_file", p.stderr)
        self.assertFalse(os.path.exists(sock), "no socket left behind")

    def test_refuses_to_run_as_root_user(self):
        sock = os.path.join(self.dir, "a.sock")
        p = subprocess.run([ALIGND, "--socket", sock, "--set", "user=root"],
                           capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"refusing to run as root", p.stderr)

    def test_peer_allowlist(self):
        sock = os.path.join(self.dir, "a.sock")
        self.start(sock, "--set", "socket_mode=0666", "--set", "allowed_peers=12345, daemon")
        # nobody is not in the list: one error line, then closed
        got = connect_as(sock, NOBODY.pw_uid, b"PING\r\n\r\n")
        self.assertEqual(got, b"ALIGND/1 403 peer not allowed\r\n\r\n")
        # root (the operator) is always allowed
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            s.sendall(b"PING\r\n\r\n")
            self.assertEqual(RecvBuffer(s).reply(), b"ALIGND/1 200 PONG\r\n\r\n")
        with open(os.path.join(self.dir, "log")) as f:
            self.assertIn("not in allowed_peers, refused", f.read())

    def test_peer_allowlist_by_name(self):
        sock = os.path.join(self.dir, "b.sock")
        self.start(sock, "--set", "socket_mode=0666", "--set", "allowed_peers=nobody")
        got = connect_as(sock, NOBODY.pw_uid, b"PING\r\n\r\n")
        self.assertEqual(got, b"ALIGND/1 200 PONG\r\n\r\n")

    def test_socket_mode_keeps_others_out(self):
        sock = os.path.join(self.dir, "c.sock")
        self.start(sock)           # default 0660, owner root
        got = connect_as(sock, NOBODY.pw_uid, b"PING\r\n\r\n")
        self.assertEqual(got, b"ERR PermissionError")

    def test_http_socket_peer_allowlist(self):
        """The HTTP endpoint's UNIX socket applies allowed_peers exactly as
        the line protocol does (SO_PEERCRED), and gets socket_group."""
        sock = os.path.join(self.dir, "d.sock")
        hsock = os.path.join(self.dir, "h.sock")
        self.start(sock, "--set", "socket_mode=0666", "--set", "allowed_peers=12345, daemon",
                   "--set", "http_listen=unix:" + hsock, "--set", "socket_group=nogroup")
        got = connect_as(hsock, NOBODY.pw_uid, b"GET /ping HTTP/1.0\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 403 peer not allowed"), got[:80])
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(hsock)
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            self.assertIn(b"pong", RecvBuffer(s).reply())
        with open(os.path.join(self.dir, "log")) as f:
            self.assertIn("not allowed (allowed_peers), refused", f.read())
        gid = grp.getgrnam("nogroup").gr_gid
        self.assertEqual(os.stat(hsock).st_gid, gid)
        self.assertEqual(os.stat(sock).st_gid, gid)

    def test_http_tcp_allowed_networks(self):
        """Over TCP the client address must be inside allowed_networks
        (loopback by default); others get 403 and are logged."""
        port = free_tcp_port()
        sock = os.path.join(self.dir, "e.sock")
        self.start(sock, "--set", "http_listen=127.0.0.1:%d" % port,
                   "--set", "allowed_networks=192.0.2.0/24, 2001:db8::/32")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            got = RecvBuffer(s).reply()
        self.assertTrue(got.startswith(b"HTTP/1.1 403 peer not allowed"), got[:80])
        with open(os.path.join(self.dir, "log")) as f:
            self.assertIn("peer 127.0.0.1 not allowed (allowed_networks), refused", f.read())
        port2 = free_tcp_port()
        self.start(os.path.join(self.dir, "f.sock"), "--set", "http_listen=127.0.0.1:%d" % port2)
        with socket.create_connection(("127.0.0.1", port2), timeout=5) as s:
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            self.assertIn(b"pong", RecvBuffer(s).reply())

    def test_line_protocol_over_tcp(self):
        """listen_tcp: the same line protocol for MTA pools, on loopback by
        default; alignc reaches it as tcp:HOST:PORT; a client outside
        allowed_networks gets 403 and is logged."""
        port = free_tcp_port()
        sock = os.path.join(self.dir, "t.sock")
        self.start(sock, "--set", "listen_tcp=127.0.0.1:%d" % port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"PING\r\n\r\nQUIT\r\n\r\n")
            rb = RecvBuffer(s)
            self.assertEqual(rb.reply(), b"ALIGND/1 200 PONG\r\n\r\n")
            self.assertEqual(rb.reply(), b"ALIGND/1 200 BYE\r\n\r\n")
        p = run_alignc("-s", "tcp:127.0.0.1:%d" % port, "--ip", "192.0.2.1",
                       "--from", "a@example.org", "-", input=SIMPLE_MESSAGE)
        self.assertIn(b"Action: ", p.stdout + p.stderr)
        self.assertIn(p.returncode, (0, 1, 2, 3), p.stderr)
        p = run_alignc("-s", "tcp:127.0.0.1:1", "-", input=SIMPLE_MESSAGE)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"cannot connect to tcp:127.0.0.1:1", p.stderr)
        # outside allowed_networks
        port2 = free_tcp_port()
        self.start(os.path.join(self.dir, "u.sock"), "--set", "listen_tcp=127.0.0.1:%d" % port2,
                   "--set", "allowed_networks=192.0.2.0/24")
        with socket.create_connection(("127.0.0.1", port2), timeout=5) as s:
            s.sendall(b"PING\r\n\r\n")
            rb = RecvBuffer(s)
            self.assertEqual(rb.reply(), b"ALIGND/1 403 peer not allowed\r\n\r\n")
            self.assertTrue(rb.closed())
        with open(os.path.join(self.dir, "log")) as f:
            self.assertIn("peer 127.0.0.1 not in allowed_networks, refused", f.read())
        # a non-loopback address needs tcp_allow_remote
        p = subprocess.run([ALIGND, "--socket", os.path.join(self.dir, "v.sock"),
                            "--set", "history=off", "--set", "listen_tcp=192.0.2.1:11335"],
                           capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"tcp_allow_remote", p.stderr)

    def test_bad_allowed_networks(self):
        for v in ("10.0.0.0/33", "example.com", "10.0.0.0/", "::1/129"):
            p = subprocess.run([ALIGND, "--check-config", "--set", "allowed_networks=" + v],
                               capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 1, v)
            self.assertIn(b"allowed_networks", p.stderr)

    def test_bad_peer_name(self):
        p = subprocess.run([ALIGND, "--check-config", "--set", "allowed_peers=no-such-user-x"],
                           capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"no user named", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
