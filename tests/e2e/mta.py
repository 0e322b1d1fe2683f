"""Real MTAs for the end-to-end tests: a private Postfix instance, the
alignd-milter process, swaks as the SMTP client, DKIM signing with the test
world's keys, and an unpacked Exim.

Everything listens on 127.0.0.1 or on UNIX sockets in private temporary
directories, and everything started here is stopped by stop()/cleanup(),
also when a test fails half-way.
"""
import email
import glob
import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import dkim

BUILD = os.environ.get("ALIGND_BUILD_ROOT", "")
MILTER = os.environ.get("ALIGND_MILTER", os.path.join(BUILD, "clients/milter/alignd-milter"))
FILTER = os.environ.get("ALIGND_FILTER", os.path.join(BUILD, "clients/filter/alignd-filter"))
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
AUTHSERV_ID = "mx.test.example"
# above the daemon's DNS deadline in the tests, and swaks' 30 s default
SMTP_TIMEOUT = int(os.environ.get("E2E_SMTP_TIMEOUT", "90"))


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def missing_tools():
    """Why the Postfix tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "Postfix's master must be started as root"
    for p in (POSTFIX, SWAKS, "/usr/lib/postfix/sbin/master"):
        if not os.path.exists(p):
            return "%s is not installed" % p
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or postdrop group is missing"
    return None


def world_dir_readable(path):
    """Postfix's unprivileged processes must reach sockets and programs
    under path: open up the private directories on the way (they hold no
    secrets, only test data)."""
    os.chmod(path, 0o755)


# ---------------------------------------------------------------- messages

def make_message(from_addr, to_addr, subject, body="Hello.\r\n", extra_headers=(),
                 msgid=None):
    """An RFC 5322 message (bytes, CRLF)."""
    h = []
    h += list(extra_headers)
    h.append("From: %s" % from_addr)
    h.append("To: %s" % to_addr)
    h.append("Subject: %s" % subject)
    h.append("Date: Mon, 20 Nov 2023 10:00:00 +0000")
    h.append("Message-ID: <%s>" % (msgid or "%f.%d@test" % (time.time(), os.getpid())))
    text = "\r\n".join(h) + "\r\n\r\n" + body
    return text.encode()


def dkim_sign(msg, world_dir, domain, selector, headers=None, canon=b"relaxed"):
    """Prepends a DKIM-Signature made with the world's private key."""
    key_path = os.path.join(world_dir, "dkim", domain, selector + ".pem")
    with open(key_path, "rb") as f:
        key = f.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    include_headers=headers or [b"from", b"to", b"subject", b"date",
                                                b"message-id"],
                    canonicalize=(canon, canon))
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + msg


def dot_stuff(msg):
    """SMTP DATA transparency (RFC 5321 4.5.2), done here because swaks
    is told to send DATA exactly as given."""
    lines = msg.split(b"\r\n")
    return b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in lines)


# ---------------------------------------------------------------- swaks

class SmtpResult:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.transcript = proc.stdout.decode("utf-8", "replace") + \
            proc.stderr.decode("utf-8", "replace")

    def final_reply(self):
        """The server's reply to the end of DATA, e.g. '550 5.7.1 ...'."""
        lines = self.transcript.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(" -> ") and line.endswith(" lines sent"):
                for later in lines[i + 1:]:
                    if later.startswith("<"):
                        return later.split(" ", 1)[1].strip()
        return None


def swaks(port, mail_from, rcpt, msg, client_ip=None, helo=None, timeout=SMTP_TIMEOUT,
          login=None, wrap=(), local_addr=None):
    """One SMTP transaction on 127.0.0.1:port; XCLIENT makes Postfix see the
    scenario's client address and HELO name (and, with login, a client
    that authenticated with SASL as that user). An MTA without XCLIENT
    sees the client address when swaks runs in a network namespace that
    has it (wrap: the nsenter command) and sends from local_addr."""
    data = dot_stuff(msg)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data += b"."   # swaks sends DATA as given plus one CRLF: the terminator
    with tempfile.NamedTemporaryFile(prefix="alignd-e2e-", suffix=".eml", delete=False) as f:
        f.write(data)
        path = f.name
    cmd = list(wrap) + [SWAKS, "--server", "127.0.0.1", "--port", str(port),
           "--from", mail_from, "--to", rcpt, "--helo", helo or "client.test",
           "--data", "@" + path, "--no-data-fixup", "--timeout", str(timeout),
           "--suppress-data"]
    if client_ip:
        addr = ("IPV6:" + client_ip) if ":" in client_ip else client_ip
        cmd += ["--xclient-addr", addr, "--xclient-helo", helo or "unknown",
                "--xclient-name", "[UNAVAILABLE]", "--xclient-no-verify"]
        if login:
            cmd += ["--xclient-login", login]
    if local_addr:
        cmd += ["--local-interface", local_addr]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 30)
    finally:
        os.unlink(path)
    return SmtpResult(p)


def kill_processes_in(path):
    """SIGKILL to every process whose working directory is under path:
    what an MTA of a fixture left behind after its orderly stop."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if cwd.startswith(path + "/"):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- Postfix

DEFAULT_MAIN_CF = "/etc/postfix/main.cf"
MARKER = "# written by alignd's end-to-end tests; removed when they end\n"


class AltConfigDir:
    """Set-gid Postfix programs (postdrop, which sendmail runs for users
    other than root) accept a private configuration directory only when the
    default main.cf lists it in alternate_config_directories. With the
    Debian package installed as 'No configuration' there is no default
    main.cf: this writes one holding only that line while tests run (test
    runs in other build directories share it, under a lock), and removes
    it when the last one ends. A main.cf of a real installation is never
    touched (the caller then skips)."""

    LOCK = os.path.join(tempfile.gettempdir(), "alignd-e2e-postfix-main-cf.lock")

    def __init__(self, config_dir):
        self.dir = config_dir
        self.added = False

    def _locked(self, fn):
        import fcntl
        with open(self.LOCK, "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            return fn()

    @staticmethod
    def _read():
        """(ours, dirs): whether the file is ours, and the dirs it lists."""
        try:
            with open(DEFAULT_MAIN_CF) as f:
                text = f.read()
        except FileNotFoundError:
            return True, []
        if not text.startswith(MARKER):
            return False, []
        for line in text.splitlines():
            if line.startswith("alternate_config_directories ="):
                return True, line.split("=", 1)[1].split()
        return True, []

    @staticmethod
    def _write(dirs):
        if not dirs:
            os.unlink(DEFAULT_MAIN_CF)
            return
        tmp = DEFAULT_MAIN_CF + ".alignd-tmp"
        with open(tmp, "w") as f:
            f.write(MARKER + "alternate_config_directories = %s\n" % " ".join(dirs))
        os.chmod(tmp, 0o644)
        os.rename(tmp, DEFAULT_MAIN_CF)

    def usable(self):
        return self._read()[0]

    def __enter__(self):
        def add():
            ours, dirs = self._read()
            if not ours:
                raise RuntimeError("%s exists" % DEFAULT_MAIN_CF)
            self._write(dirs + [self.dir])
            self.added = True
        self._locked(add)
        return self

    def __exit__(self, *exc):
        self.release()

    def release(self):
        if not self.added:
            return

        def remove():
            ours, dirs = self._read()
            if ours and os.path.exists(DEFAULT_MAIN_CF):
                self._write([d for d in dirs if d != self.dir])
            self.added = False
        self._locked(remove)


class MilterHost:
    """The alignd-milter process of an MTA fixture: listens on
    self.milter_sock, asks self.daemon_socket, logs to milter.log in
    self.dir; milter_args, milter_env (None: this process's environment)
    and, once stopped, milter_rc."""

    def init_milter(self, daemon_socket, milter_args):
        self.daemon_socket = daemon_socket
        self.milter_args = list(milter_args)
        self.milter = None
        self.milter_env = None
        self.milter_rc = None
        self.milter_sock = os.path.join(self.dir, "milter", "milter.sock")

    def start_milter(self):
        self.milter_log = open(os.path.join(self.dir, "milter.log"), "ab")
        cmd = [MILTER, "-p", "unix:" + self.milter_sock, "-m", "0666",
               "-s", self.daemon_socket, "-d"] + self.milter_args
        self.milter = subprocess.Popen(cmd, stdout=self.milter_log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=self.milter_env)
        end = time.monotonic() + 10
        while not os.path.exists(self.milter_sock):
            if self.milter.poll() is not None or time.monotonic() > end:
                raise RuntimeError("alignd-milter did not start:\n" + self.milter_text())
            time.sleep(0.05)

    def milter_text(self):
        try:
            with open(os.path.join(self.dir, "milter.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop_milter(self):
        if self.milter and self.milter.poll() is None:
            self.milter.send_signal(signal.SIGTERM)
            try:
                self.milter.wait(10)
            except subprocess.TimeoutExpired:
                self.milter.kill()
                self.milter.wait()
        if self.milter:
            self.milter_log.close()
            self.milter_rc = self.milter.returncode
            self.milter = None

    def restart_milter(self, args):
        """The milter again with these options; the MTA connects to it anew
        for each SMTP session. Returns the old one's exit status."""
        self.stop_milter()
        rc = self.milter_rc
        # a socket file left behind would pass for the new one's
        if os.path.exists(self.milter_sock):
            os.unlink(self.milter_sock)
        self.milter_args = list(args)
        self.start_milter()
        return rc


class Postfix(MilterHost):
    """A private Postfix instance: config, queue, log and mailboxes in one
    temporary directory; smtpd on 127.0.0.1:port. mode 'milter' checks at
    SMTP time through alignd-milter; mode 'filter' through the
    content_filter pipe to alignd-filter."""

    def __init__(self, mode, daemon_socket, milter_args=(), filter_args=(), boxes=None,
                 message_size_limit=None):
        self.mode = mode
        self.message_size_limit = message_size_limit   # None: Postfix's default (10 MB)
        if boxes is not None:       # mode 'plain': no alignd, only these mailboxes
            self.BOXES = dict(boxes)
        self.dir = tempfile.mkdtemp(prefix="alignd-postfix-")
        world_dir_readable(self.dir)
        self.port = free_tcp_port()
        self.init_milter(daemon_socket, milter_args)
        self.filter_args = list(filter_args)
        self.started = False
        self.mail = os.path.join(self.dir, "mail")
        self.maillog = os.path.join(self.dir, "maillog")
        self.env = dict(os.environ, MAIL_CONFIG=self.dir)

    # mailboxes (Maildir, delivered by virtual(8) as nobody)
    BOXES = {"inbox@test.example": "inbox/", "attacker@example.net": "attacker/",
             "bob@example.net": "bob/"}

    def _write_config(self):
        d = self.dir
        nobody = pwd.getpwnam("nobody")
        for sub in ("queue", "data", "mail", "milter", "bin"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        pf = pwd.getpwnam("postfix")
        os.chown(os.path.join(d, "data"), pf.pw_uid, pf.pw_gid)
        os.chmod(os.path.join(d, "data"), 0o700)
        os.chmod(os.path.join(d, "milter"), 0o755)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(d, "vmailbox"), "w") as f:
            for addr, box in self.BOXES.items():
                f.write("%s %s\n" % (addr, box))
        main = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test.example
mydomain = test.example
myorigin = test.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
local_header_rewrite_clients =
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
smtp_host_lookup = native
disable_dns_lookups = yes
biff = no
append_dot_mydomain = no
smtputf8_enable = no
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
bounce_queue_lifetime = 1d
delay_warning_time = 0
milter_default_action = tempfail
milter_content_timeout = 120s
""".format(d=d, uid=nobody.pw_uid, gid=nobody.pw_gid,
           domains=" ".join(sorted({a.split("@")[1] for a in self.BOXES})))
        if self.message_size_limit:
            # virtual(8) refuses to start with a mailbox limit below it
            main += "message_size_limit = %d\nvirtual_mailbox_limit = %d\n" % (
                self.message_size_limit, self.message_size_limit)
        smtpd_opts = ""
        if self.mode == "milter":
            main += "smtpd_milters = unix:%s\n" % self.milter_sock
        elif self.mode == "plain":
            pass
        else:
            smtpd_opts = "  -o content_filter=alignd:dummy\n"
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write(main)
        master = """\
127.0.0.1:{port} inet n - n - - smtpd
{smtpd_opts}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""".format(port=self.port, smtpd_opts=smtpd_opts)
        if self.mode == "filter":
            # the filter runs as nobody with postdrop as its primary group:
            # then postdrop (set-gid) accepts this private config directory
            # (alternate_config_directories is only needed across groups)
            filt = os.path.join(d, "bin", "alignd-filter")
            shutil.copy(FILTER, filt)
            os.chmod(filt, 0o755)
            master += ("alignd unix - n n - 10 pipe\n"
                       "  flags=q user=nobody argv={filt} -s {sock} "
                       "-c ${{client_address}} -h ${{client_helo}} -i ${{queue_id}} "
                       "-f ${{sender}} {extra} -- ${{recipient}}\n").format(
                filt=filt, sock=self.daemon_socket, extra=" ".join(self.filter_args))
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write(master)

    def start(self):
        self._write_config()
        if self.mode == "milter":
            self.start_milter()
        p = subprocess.run([POSTFIX, "-c", self.dir, "start"], env=self.env,
                           capture_output=True, timeout=60)
        self.started = True
        if p.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s\n%s" % (
                p.stdout.decode(), p.stderr.decode(), self.log()))
        self.wait_port()
        return self

    def wait_port(self, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.recv(512)
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix is not listening:\n" + self.log())

    def log(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def send(self, mail_from, rcpt, msg, client_ip=None, helo=None, login=None):
        return swaks(self.port, mail_from, rcpt, msg, client_ip, helo, login=login)

    def mailbox(self, box):
        """Delivered messages of one mailbox, oldest first, as
        email.message.Message objects."""
        out = []
        files = glob.glob(os.path.join(self.mail, box, "new", "*"))
        for p in sorted(files, key=os.path.getmtime):
            with open(p, "rb") as f:
                out.append(email.message_from_bytes(f.read()))
        return out

    def wait_mail(self, box, count, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = self.mailbox(box)
            if len(m) >= count:
                return m
            time.sleep(0.2)
        return self.mailbox(box)

    def queue(self):
        """postqueue -j: one dict per queued message."""
        import json
        p = subprocess.run(["postqueue", "-c", self.dir, "-j"], env=self.env,
                           capture_output=True, timeout=30)
        return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]

    def flush(self):
        subprocess.run(["postqueue", "-c", self.dir, "-f"], env=self.env,
                       capture_output=True, timeout=30)

    def wait_log(self, text, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        if self.started:
            subprocess.run([POSTFIX, "-c", self.dir, "stop"], env=self.env,
                           capture_output=True, timeout=60)
            pidf = os.path.join(self.dir, "queue", "pid", "master.pid")
            end = time.monotonic() + 10
            while os.path.exists(pidf) and time.monotonic() < end:
                time.sleep(0.1)
            self._kill_leftovers()
            self.started = False
        self.stop_milter()

    def _kill_leftovers(self):
        """Postfix processes of this instance that outlived 'postfix stop'."""
        kill_processes_in(self.dir)

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------- Exim

EXIM_DEBS = ["exim4-daemon-heavy", "exim4-base", "exim4-config", "libmariadb3", "libidn12"]
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"

# The Exim data ACL that docs/MTA.md documents (spamd_address is set
# per test). $spam_report holds alignd's reply lines, one per line.
EXIM_ACL = r"""
acl_check_data:
  # ask alignd; ':true' makes the condition succeed whatever the verdict,
  # so that the variables are set; an unreachable daemon defers (451)
  warn    spam = nobody:true
  deny    condition = ${if eq{$spam_action}{reject}}
          message = ${if match{$spam_report}{\N(?m)^\s*SMTP-Reply: (5\d\d .*)$\N}\
                      {$1}{550 5.7.1 Rejected by message authentication policy}}
  defer   condition = ${if eq{$spam_action}{soft reject}}
          message = ${if match{$spam_report}{\N(?m)^\s*SMTP-Reply: (4\d\d .*)$\N}\
                      {$1}{451 4.7.1 Message authentication failed temporarily}}
  warn    set acl_m_ar = ${if match{$spam_report}\
                           {\N(?m)^\s*Authentication-Results: (.*)$\N}{$1}}
          condition = ${if def:acl_m_ar}
          add_header = :at_start:Authentication-Results: $acl_m_ar
  warn    condition = ${if eq{$spam_action}{add header}}
          add_header = X-Alignd-Quarantine: yes
  accept
"""


class Exim:
    """Debian's exim4-daemon-heavy unpacked (not installed: it would
    remove Postfix) and run with a private configuration in -bh mode:
    a whole SMTP dialogue through the ACLs, no daemon, no delivery. The
    compiled-in Debian-exim user comes from an nss_wrapper passwd file."""

    def __init__(self, cache_dir):
        self.cache = cache_dir
        self.root = os.path.join(cache_dir, "exim-root")
        self.dir = tempfile.mkdtemp(prefix="alignd-exim-")
        os.chmod(self.dir, 0o755)

    def unavailable(self):
        if not os.path.exists(NSS_WRAPPER):
            return "libnss-wrapper is not installed"
        if os.path.exists(os.path.join(self.root, "usr/sbin/exim4")):
            return None
        os.makedirs(self.cache, exist_ok=True)
        dl = os.path.join(self.cache, "exim-debs")
        os.makedirs(dl, exist_ok=True)
        p = subprocess.run(["apt-get", "download"] + EXIM_DEBS, cwd=dl,
                           capture_output=True, timeout=300)
        if p.returncode != 0:
            return "apt-get download failed: %s" % p.stderr.decode()[-500:]
        tmp = tempfile.mkdtemp(prefix="exim-root-", dir=self.cache)
        for deb in glob.glob(os.path.join(dl, "*.deb")):
            subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True, timeout=120)
        os.rename(tmp, self.root)
        return None

    def configure(self, spamd_address):
        d = self.dir
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            os.chmod(os.path.join(d, sub), 0o777)
        with open("/etc/passwd") as f:
            pw = f.read()
        with open("/etc/group") as f:
            gr = f.read()
        with open(os.path.join(d, "passwd"), "w") as f:
            f.write(pw + "Debian-exim:x:65534:65534:exim:/nonexistent:/usr/sbin/nologin\n")
        with open(os.path.join(d, "group"), "w") as f:
            f.write(gr + "Debian-exim:x:65534:\n")
        conf = ("primary_hostname = mx.test.example\n"
                "spool_directory = %s/spool\n"
                "log_file_path = %s/log/%%slog\n"
                "keep_environment =\n"
                "host_lookup =\n"
                "spamd_address = %s\n"
                "acl_smtp_rcpt = acl_check_rcpt\n"
                "acl_smtp_data = acl_check_data\n"
                "begin acl\n"
                "acl_check_rcpt:\n  accept\n" % (d, d, spamd_address)) + EXIM_ACL + \
            "begin routers\nbegin transports\n"
        self.conf = os.path.join(d, "exim.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        os.chmod(self.conf, 0o644)

    def bh(self, client_ip, helo, mail_from, rcpt, msg, timeout=SMTP_TIMEOUT):
        """exim -bh CLIENT_IP: returns (stdout = the SMTP replies, stderr =
        the ACL trace)."""
        env = dict(os.environ, LD_PRELOAD=NSS_WRAPPER,
                   NSS_WRAPPER_PASSWD=os.path.join(self.dir, "passwd"),
                   NSS_WRAPPER_GROUP=os.path.join(self.dir, "group"),
                   LD_LIBRARY_PATH=os.path.join(self.root, "usr/lib/x86_64-linux-gnu"))
        # sanitizer runtimes of the test build must not meet Exim
        env.pop("ASAN_OPTIONS", None)
        data = msg if msg.endswith(b"\r\n") else msg + b"\r\n"
        dialog = (b"EHLO %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                  % (helo.encode(), mail_from.encode(), rcpt.encode())) + \
            dot_stuff(data) + b".\r\nQUIT\r\n"
        p = subprocess.run([os.path.join(self.root, "usr/sbin/exim4"), "-C", self.conf,
                            "-bh", client_ip], input=dialog, capture_output=True,
                           env=env, timeout=timeout)
        return p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Sendmail

SENDMAIL_DEBS = ["sendmail-bin", "sendmail-cf", "libwrap0"]
# the documentation networks (RFC 5737) that the scenarios' clients use
CLIENT_NETS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]


class NetNamespace:
    """A private network namespace that has only its loopback interface,
    with the documentation networks on it as well: an MTA without XCLIENT
    running there sees an SMTP client at the scenario's address. A holder
    process keeps it; it goes when the holder and whatever was started
    in it (wrap()) have ended."""

    def __init__(self, nets=CLIENT_NETS):
        self.nets = list(nets)
        self.holder = None

    @staticmethod
    def unavailable():
        for tool in ("unshare", "nsenter", "ip"):
            if not shutil.which(tool):
                return "%s is not installed" % tool
        return None

    def start(self):
        script = "ip link set lo up && " + "".join(
            "ip addr add %s dev lo && " % n for n in self.nets) + "echo ready && exec sleep 3600"
        self.holder = subprocess.Popen(["unshare", "--net", "sh", "-c", script],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            self.holder.wait(10)
            err = self.holder.stderr.read().decode("utf-8", "replace")
            self.holder = None
            raise RuntimeError("no network namespace: %s" % err)

    def wrap(self):
        """The command prefix that runs a program in the namespace."""
        return ["nsenter", "--target", str(self.holder.pid), "--net"]

    def stop(self):
        if self.holder:
            self.holder.kill()
            self.holder.wait()
            self.holder.stdout.close()
            self.holder.stderr.close()
            self.holder = None


# sendmail.mc of the private instance: the INPUT_MAIL_FILTER line is the
# one docs/MTA.md shows (with this instance's socket); the rest keeps
# Sendmail inside its directory, off DNS, with a local mailer that writes
# files.
SENDMAIL_MC = """\
divert(-1)
# written by alignd's end-to-end tests
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `mx.test.example')dnl
define(`QUEUE_DIR', `{d}/queue')dnl
define(`STATUS_FILE', `{d}/sendmail.st')dnl
define(`confPID_FILE', `{d}/sendmail.pid')dnl
define(`ALIAS_FILE', `')dnl
define(`confSERVICE_SWITCH_FILE', `{d}/service.switch')dnl
define(`confHOSTS_FILE', `{d}/hosts')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confTO_IDENT', `0')dnl
define(`confDELIVERY_MODE', `background')dnl
dnl the private directory lies in the sticky /tmp
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
LOCAL_DOMAIN(`test.example')dnl
dnl local mail: one file per message under {d}/mail/USER, no passwd check
define(`LOCAL_MAILER_PATH', `{d}/bin/deliver')dnl
define(`LOCAL_MAILER_ARGS', `deliver $u')dnl
define(`LOCAL_MAILER_FLAGS', `Pn')dnl
MODIFY_MAILER_FLAGS(`LOCAL', `-wA5:|/@')dnl
INPUT_MAIL_FILTER(`alignd', `S=local:{sock}, F={flags}, T=C:10s;S:30s;R:120s;E:5m')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

DELIVER = """\
#!/bin/sh
# deliver USER: the message on stdin into {d}/mail/USER/, one file each
case "$1" in ''|*[!a-z0-9._-]*) exit 67 ;; esac
box={d}/mail/$1
mkdir -p "$box" || exit 73
f="$box/$(date +%s%N).$$"
cat > "$f.tmp" && mv "$f.tmp" "$f.eml" || exit 75
"""


class Sendmail(MilterHost):
    """Debian's sendmail-bin unpacked (not installed: it conflicts with
    Postfix) and run as a private daemon on 127.0.0.1 inside a
    NetNamespace, with a sendmail.cf made by m4 from sendmail-cf, its own
    queue, a local mailer that writes files into self.mail/USER, and
    INPUT_MAIL_FILTER pointing at the alignd-milter of this fixture.
    flags: the F= of the filter (T: tempfail while the milter is down)."""

    PORT = 25     # the namespace has no other servers

    def __init__(self, cache_dir, daemon_socket, milter_args=(), flags="T"):
        self.cache = cache_dir
        self.root = os.path.join(cache_dir, "sendmail-root")
        self.binary = os.path.join(self.root, "usr/libexec/sendmail/sendmail")
        self.dir = tempfile.mkdtemp(prefix="alignd-sendmail-")
        world_dir_readable(self.dir)
        self.init_milter(daemon_socket, milter_args)
        self.flags = flags
        self.port = self.PORT
        self.mail = os.path.join(self.dir, "mail")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.cf = os.path.join(self.dir, "sendmail.cf")
        self.ns = NetNamespace()
        self.pid = None
        # Sendmail resolves the machine's own name at start and, when it
        # cannot, sleeps and retries: the namespace has no DNS, so names
        # come from a hosts file of the instance through nss_wrapper
        self.env = dict(os.environ,
                        LD_LIBRARY_PATH=os.path.join(self.root, "usr/lib/x86_64-linux-gnu"),
                        LD_PRELOAD=NSS_WRAPPER,
                        NSS_WRAPPER_HOSTS=os.path.join(self.dir, "hosts"))
        # sanitizer settings of the test build are not Sendmail's
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            self.env.pop(k, None)

    def unavailable(self):
        """Why Sendmail cannot run here, or None (after unpacking it into
        the cache on first use)."""
        if os.geteuid() != 0:
            return "Sendmail's daemon must be started as root"
        why = NetNamespace.unavailable()
        if why:
            return why
        if not os.path.exists(NSS_WRAPPER):
            return "libnss-wrapper is not installed"
        for tool in ("m4", "apt-get", "dpkg-deb", SWAKS):
            if not shutil.which(tool):
                return "%s is not installed" % tool
        if not os.path.exists(self.binary):
            os.makedirs(self.cache, exist_ok=True)
            dl = os.path.join(self.cache, "sendmail-debs")
            os.makedirs(dl, exist_ok=True)
            p = subprocess.run(["apt-get", "download"] + SENDMAIL_DEBS, cwd=dl,
                               capture_output=True, timeout=300)
            if p.returncode != 0:
                return "apt-get download failed: %s" % p.stderr.decode()[-500:]
            tmp = tempfile.mkdtemp(prefix="sendmail-root-", dir=self.cache)
            for deb in glob.glob(os.path.join(dl, "*.deb")):
                subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True, timeout=120)
            # set-gid smmsp in the package: the loader would ignore
            # LD_LIBRARY_PATH (libwrap0 is unpacked, not installed), and
            # root needs no extra group
            os.chmod(os.path.join(tmp, "usr/libexec/sendmail/sendmail"), 0o755)
            os.rename(tmp, self.root)
        p = subprocess.run(["ldd", self.binary], env=self.env, capture_output=True, timeout=30)
        missing = [l.split()[0] for l in p.stdout.decode().splitlines() if "not found" in l]
        if missing:
            return "libraries of sendmail missing: %s" % " ".join(missing)
        return None

    def _write_config(self):
        d = self.dir
        for sub, mode in (("queue", 0o700), ("mail", 0o777), ("milter", 0o755), ("bin", 0o755)):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            os.chmod(os.path.join(d, sub), mode)
        deliver = os.path.join(d, "bin", "deliver")
        with open(deliver, "w") as f:
            f.write(DELIVER.replace("{d}", d))
        os.chmod(deliver, 0o755)
        # no DNS for Sendmail itself: names from this hosts file only
        with open(os.path.join(d, "service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("127.0.0.1 mx.test.example localhost %s\n" % os.uname().nodename)
        mc = SENDMAIL_MC.replace("{d}", d).replace("{port}", str(self.port)) \
            .replace("{sock}", self.milter_sock).replace("{flags}", self.flags)
        with open(os.path.join(d, "sendmail.mc"), "w") as f:
            f.write(mc)
        cfdir = os.path.join(self.root, "usr/share/sendmail/cf")
        p = subprocess.run(["m4", "-D_CF_DIR_=%s/" % cfdir, os.path.join(cfdir, "m4/cf.m4"),
                            os.path.join(d, "sendmail.mc")], capture_output=True, timeout=60)
        if p.returncode != 0 or p.stderr.strip():
            raise RuntimeError("m4 sendmail.mc: %s" % p.stderr.decode())
        with open(self.cf, "wb") as f:
            f.write(p.stdout)

    def run(self, *args, timeout=60):
        """The sendmail binary with this configuration (outside the
        namespace: for the queue commands)."""
        return subprocess.run([self.binary, "-C", self.cf] + list(args), env=self.env,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self):
        self._write_config()
        self.start_milter()
        self.ns.start()
        pidf = os.path.join(self.dir, "sendmail.pid")
        # -bd forks the daemon and returns; the daemon keeps the standard
        # descriptors, so they go to a file, not to a pipe read to its end
        out = os.path.join(self.dir, "sendmail.out")
        with open(out, "ab") as f:
            p = subprocess.run(self.ns.wrap() + [self.binary, "-C", self.cf, "-bd"],
                               env=self.env, stdout=f, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("sendmail -bd failed: %s" % self.output())
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                with open(pidf) as f:
                    self.pid = int(f.readline())
                if self.listening():
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("sendmail is not listening: %s" % self.output())

    def output(self):
        """What the daemon wrote on its standard output and error."""
        try:
            with open(os.path.join(self.dir, "sendmail.out"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def listening(self):
        """Whether the daemon's namespace has 127.0.0.1:port in LISTEN
        (read from /proc: this process is not in that namespace)."""
        want = "0100007F:%04X" % self.port
        with open("/proc/%d/net/tcp" % self.pid) as f:
            return any(l.split()[1] == want and l.split()[3] == "0A"
                       for l in f.readlines()[1:])

    def send(self, mail_from, rcpt, msg, client_ip, helo=None):
        """One SMTP transaction from client_ip, inside the namespace."""
        return swaks(self.port, mail_from, rcpt, msg, helo=helo, wrap=self.ns.wrap(),
                     local_addr=client_ip)

    def mailbox(self, user):
        """Messages delivered to user, oldest first, as email.message.Message."""
        out = []
        for p in sorted(glob.glob(os.path.join(self.mail, user, "*.eml")), key=os.path.getmtime):
            with open(p, "rb") as f:
                out.append(email.message_from_bytes(f.read()))
        return out

    def queue_files(self, prefix):
        """Queue control files: 'qf' (queued) or 'hf' (quarantined), each
        as (queue id, {letter: [lines]}) with continuation lines joined."""
        out = []
        for p in sorted(glob.glob(os.path.join(self.queue_dir, prefix + "*"))):
            lines = {}
            last = None
            with open(p, "rb") as f:
                for raw in f.read().decode("utf-8", "replace").split("\n"):
                    if raw[:1] in (" ", "\t") and last is not None:
                        lines[last][-1] += "\n" + raw
                    elif raw:
                        last = raw[0]
                        lines.setdefault(last, []).append(raw[1:])
            out.append((os.path.basename(p)[2:], lines))
        return out

    def mailq_quarantined(self):
        """mailq -qQ: the quarantined queue as Sendmail lists it."""
        p = self.run("-bp", "-qQ")
        return p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")

    def remove_queued(self, qid):
        for p in glob.glob(os.path.join(self.queue_dir, "*" + qid)):
            os.unlink(p)

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                end = time.monotonic() + 10
                while time.monotonic() < end and os.path.exists("/proc/%d" % self.pid):
                    time.sleep(0.1)
            except ProcessLookupError:
                pass
            self.pid = None
        # SMTP or delivery children work in the queue directory
        kill_processes_in(self.dir)
        self.ns.stop()
        self.stop_milter()

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
