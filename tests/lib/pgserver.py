"""A private PostgreSQL server for the history-store tests.

initdb into a temporary directory, listening on a UNIX socket only
(listen_addresses=''), trust authentication for one role. PostgreSQL
refuses to run as root: when the tests run as root, the server runs as the
'postgres' system user (Debian's postgresql package creates it). Stopped by
its PID (fast shutdown) in stop(), also when a test fails.

    with PgServer() as pg:
        uri = pg.uri("dbname")    # postgresql:///dbname?host=...&port=...
"""
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

ROLE = "alignd"


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    raise RuntimeError("PostgreSQL server programs not found (Debian package postgresql)")


class PgServer:
    def __init__(self, port=None):
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix="alignd-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        # the port only names the socket file: nothing listens on TCP
        self.port = port or (40000 + os.getpid() % 20000)
        self.proc = None
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)

    def _demote(self):
        if self.user:
            os.setgid(self.user.pw_gid)
            os.setgroups([])
            os.setuid(self.user.pw_uid)

    def start(self):
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", ROLE,
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       preexec_fn=self._demote, cwd=self.dir)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.sock,
             "-p", str(self.port), "-c", "listen_addresses=", "-c", "fsync=on",
             "-c", "max_connections=50", "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=self._demote, cwd=self.dir)
        log.close()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + self.logtext())
            if self.psql("postgres", "SELECT 1", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("postgres did not come up:\n" + self.logtext())

    def logtext(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def uri(self, db):
        return "postgresql:///%s?host=%s&port=%d&user=%s" % (db, self.sock, self.port, ROLE)

    def psql(self, db, sql, check=True):
        return subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                               "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p", str(self.port),
                               "-U", ROLE, "-d", db, "-c", sql],
                              capture_output=True, text=True, check=check)

    def query(self, db, sql):
        return self.psql(db, sql).stdout.strip()

    def createdb(self, db):
        self.psql("postgres", 'DROP DATABASE IF EXISTS "%s"' % db)
        self.psql("postgres", 'CREATE DATABASE "%s"' % db)
        return self.uri(db)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)     # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
