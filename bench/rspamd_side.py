"""rspamd side by side (called by bench.py): an unbound server over the
same test DNS world, rspamd 3.x with only its SPF, DKIM, DMARC and ARC
modules and two normal workers, fed the same corpus over HTTP /checkv2 at
the same concurrency; then the verdicts message by message."""

import json
import os
import shutil
import socket
import subprocess
import time

import dnsworld

RSPAMD_CONF = """
options {{
    pidfile = "{run}/rspamd.pid";
    dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 2s; retransmits = 2; }}
    local_addrs = [];
    cache_file = "{run}/symbols.cache";
    hs_cache_dir = "{run}";
    control_socket = "{run}/rspamd.sock mode=0600";
    stats_file = "{run}/stats.ucl";
    history_file = "{run}/rspamd.history";
    dynamic_conf = "{run}/rspamd_dynamic";
    check_all_filters = true;
    filters = "dkim";
}}
logging {{ type = "file"; filename = "{run}/rspamd.log"; level = "error"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 2; task_timeout = 20s; }}
modules {{ path = "$PLUGINSDIR"; }}
actions {{ reject = 15; add_header = 6; }}
spf {{ }}
dkim {{ }}
dmarc {{ actions {{ quarantine = "add_header"; reject = "reject"; }} }}
arc {{ }}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_unbound(run, w):
    exe = shutil.which("unbound") or "/usr/sbin/unbound"
    if not os.path.exists(exe):
        raise RuntimeError("unbound (the server) is not installed")
    port = free_port()
    with open(w.unbound_conf) as f:
        world = f.read()
    own = ("server:\n    interface: 127.0.0.1\n    port: %d\n    do-daemonize: no\n"
           "    username: \"\"\n    chroot: \"\"\n    directory: \"%s\"\n"
           "    pidfile: \"%s/unbound.pid\"\n    use-syslog: no\n"
           "    logfile: \"%s/unbound.log\"\n    num-threads: 1\n"
           "    access-control: 127.0.0.0/8 allow\n" % (port, run, run, run))
    conf = os.path.join(run, "unbound-server.conf")
    with open(conf, "w") as f:
        f.write(own + world.replace("server:\n", "", 1))
    p = subprocess.Popen([exe, "-d", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(run, "unbound.stderr"), "w"))
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError("unbound exited: %s" % open(os.path.join(run, "unbound.stderr")).read()[-500:])
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.2)
            s.sendto(dnsworld._soa_query("esp0.bench.example"), ("127.0.0.1", port))
            if s.recv(4096):
                s.close()
                return p, port
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("unbound did not answer")


def rspamd_pids(main_pid):
    pids = [main_pid]
    try:
        with open("/proc/%d/task/%d/children" % (main_pid, main_pid)) as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def start_rspamd(run, dns_port):
    port = free_port()
    conf = os.path.join(run, "rspamd.conf")
    with open(conf, "w") as f:
        f.write(RSPAMD_CONF.format(run=run, dns_port=dns_port, port=port))
    p = subprocess.Popen(["rspamd", "-f", "-i", "-u", "root", "-g", "root", "-c", conf,
                          "--var=DBDIR=" + run, "--var=RUNDIR=" + run,
                          "--var=LOGDIR=" + run],
                         stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(run, "rspamd.stderr"), "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError("rspamd exited: %s" % open(os.path.join(run, "rspamd.stderr")).read()[-800:])
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            if b"pong" in s.recv(4096):
                s.close()
                return p, port
            s.close()
        except OSError:
            pass
        time.sleep(0.2)
    p.kill()
    raise RuntimeError("rspamd did not answer /ping")


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- verdicts

def alignd_results(reply):
    """(spf, dkim, dmarc, action) from an alignd text reply."""
    ar = ""
    action = ""
    for line in reply.split("\\n"):
        if line.startswith("Authentication-Results: "):
            ar = line[24:]
        elif line.startswith("Action: "):
            action = line[8:]
    out = {"spf": "none", "dkim": "none", "dmarc": "none"}
    dk = []
    for part in ar.split(";")[1:]:
        part = part.strip()
        k, _, rest = part.partition("=")
        v = rest.split()[0] if rest else ""
        if k == "spf" and "smtp.mailfrom" in part:
            out["spf"] = v
        elif k == "dkim":
            dk.append(v)
        elif k == "dmarc":
            out["dmarc"] = v
    for v in ("pass", "fail", "temperror", "permerror", "policy", "neutral"):
        if v in dk:
            out["dkim"] = v
            break
    out["action"] = action
    return out


def rspamd_results(body):
    j = json.loads(body)
    sy = j.get("symbols", {})
    spf = {"R_SPF_ALLOW": "pass", "R_SPF_FAIL": "fail", "R_SPF_SOFTFAIL": "softfail",
           "R_SPF_NEUTRAL": "neutral", "R_SPF_DNSFAIL": "temperror",
           "R_SPF_PERMFAIL": "permerror", "R_SPF_NA": "none"}
    dkim = [("R_DKIM_ALLOW", "pass"), ("R_DKIM_REJECT", "fail"),
            ("R_DKIM_TEMPFAIL", "temperror"), ("R_DKIM_PERMFAIL", "permerror"),
            ("R_DKIM_NA", "none")]
    dmarc = {"DMARC_POLICY_ALLOW": "pass", "DMARC_POLICY_ALLOW_WITH_FAILURES": "pass",
             "DMARC_POLICY_REJECT": "fail", "DMARC_POLICY_QUARANTINE": "fail",
             "DMARC_POLICY_SOFTFAIL": "fail", "DMARC_NA": "none",
             "DMARC_DNSFAIL": "temperror", "DMARC_BAD_POLICY": "permerror"}
    out = {"spf": "none", "dkim": "none", "dmarc": "none"}
    for k, v in spf.items():
        if k in sy:
            out["spf"] = v
    for k, v in dkim:
        if k in sy:
            out["dkim"] = v
            break
    for k, v in dmarc.items():
        if k in sy:
            out["dmarc"] = v
    act = j.get("action", "")
    out["action"] = {"no action": "accept", "add header": "quarantine",
                     "rewrite subject": "quarantine", "reject": "reject",
                     "soft reject": "tempfail", "greylist": "accept"}.get(act, act)
    return out


def read_verdicts(path):
    d = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, _, rest = line.rstrip("\n").partition("\t")
                d[name] = rest
    return d


def compare(b, a_path, r_path):
    corpus_dir = os.path.dirname(b.corpora["typical"])
    av, rv = read_verdicts(a_path), read_verdicts(r_path)
    out = []
    n = 0
    acc = {"alignd": {"spf": 0, "dkim": 0, "dmarc": 0},
           "rspamd": {"spf": 0, "dkim": 0, "dmarc": 0}}
    for name in sorted(set(av) & set(rv)):
        try:
            a = alignd_results(av[name])
            r = rspamd_results(rv[name])
        except ValueError:
            continue
        env = json.load(open(os.path.join(corpus_dir, name[:-4] + ".env")))
        exp = env["expect"]
        n += 1
        for k in ("spf", "dkim", "dmarc"):
            acc["alignd"][k] += a[k] == exp[k]
            acc["rspamd"][k] += r[k] == exp[k]
            if a[k] != r[k]:
                right = [who for who, x in (("alignd", a[k]), ("rspamd", r[k])) if x == exp[k]]
                out.append("%s %s: alignd %s, rspamd %s; the corpus intends %s (%s, "
                           "DMARC p=%s) -> %s" % (
                               name, k, a[k], r[k], exp[k], env["kind"], env["policy"],
                               " and ".join(right) + " right" if right else "neither matches"))
        if a["action"] != r["action"]:
            out.append("%s action: alignd %s, rspamd %s (%s, DMARC %s p=%s)" % (
                name, a["action"], r["action"], env["kind"], exp["dmarc"], env["policy"]))
    b.res["compared"] = n
    b.res["agreement_with_intent"] = acc
    b.res["disagreements"] = out


def run(b, w):
    run_dir = os.path.join(b.run_dir, "rspamd")
    os.makedirs(run_dir, exist_ok=True)
    b.log("rspamd side by side")
    ub, dns_port = start_unbound(run_dir, w)
    b.procs.append(ub)
    try:
        rs, port = start_rspamd(run_dir, dns_port)
        b.procs.append(rs)
        try:
            time.sleep(1)
            pids = rspamd_pids(rs.pid)
            typ = b.corpora["typical"]
            nwarm = str(b.res["corpus"]["messages"])
            dur = "3" if b.a.quick else "8"
            rv = os.path.join(b.run_dir, "rspamd.verdicts")
            b.lg("rspamd warm c=32", None, typ, ["-c", "32", "--warmup", nwarm,
                 "--duration", dur], pids, verdicts=rv, http="127.0.0.1:%d" % port)
            b.lg("rspamd warm c=8", None, typ, ["-c", "8", "--warmup", "200",
                 "--duration", dur], pids, http="127.0.0.1:%d" % port)
            compare(b, os.path.join(b.run_dir, "alignd.verdicts"), rv)
        finally:
            stop(rs)
            b.procs.remove(rs)
    finally:
        stop(ub)
        b.procs.remove(ub)
