#!/usr/bin/python3
"""End-to-end scenarios: every entry of scenarios.py is signed with
python3-dkim, scanned by the real alignd against the test DNS world, and
its verdict compared with the expectation. Each profile's daemon keeps
its history in a store of its own; at the end every stored record is
re-decided by alignd-report --what-if under the configuration it was
scanned with, and not one verdict or DMARC disposition may change.

    run_scenarios.py [--cache-dir D] [--only SUBSTR]... [--verbose] [--list]

Environment: ALIGND and ALIGNC (the programs under test), PYTHONPATH with
tests/integration and tests/lib. Prints one line per scenario, then
"scenarios: N passed, M failed" and every failure with expected vs got;
exits 1 when any failed. A scenario marked xfail (a known daemon bug: its
expectation is the correct behaviour) prints XFAIL while it still fails and
counts as a failure (XPASS) once it passes, so the mark is removed with the
fix.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dnsworld import World  # noqa: E402
from harness import ALIGNC, Daemon, scan_request  # noqa: E402
from scenlib import Result, sign  # noqa: E402
from scenarios import EXCEPTIONS, SCENARIOS  # noqa: E402

BASE_ARGS = ["--set", "dns_mode=recursive"]
PROFILES = {
    "default": [],
    "rfc7489": ["--set", "dmarc_mode=rfc7489"],
    "deadline": ["--set", "dns_timeout=1s", "--set", "scan_timeout=3s"],
    "strict": ["--set", "policy_mode=strict"],
    "quarantine-only": ["--set", "policy_mode=quarantine-only"],
    "lists": ["--set", "trusted_lists=list.example"],
    "untrusted-arc": ["--set", "untrusted_arc=quarantine"],
    "bad-from-quarantine": ["--set", "bad_from=quarantine"],
    "fresh": [],
}
# Indirect flows (issue 8, docs/policy.md): trusted ARC sealers, trusted
# forwarders (address prefixes, HELO, envelope domain) and a per-domain
# exceptions file, in each policy mode. {exceptions} is the profile's own
# file, written with scenarios.EXCEPTIONS before its daemon starts and
# rewritten by scenarios that test the reload on SIGHUP.
TRUST = ["--set", "trusted_arc_sealers=arclist.example fwd.example",
         "--set", "trusted_forwarders=198.51.100.176/28 2001:db8:77::/48 "
                  "helo:mx.alumni.example from:alumni.example",
         "--set", "policy_exceptions={exceptions}"]
PROFILES.update({
    "indirect": TRUST,
    "indirect-strict": TRUST + ["--set", "policy_mode=strict"],
    "indirect-qonly": TRUST + ["--set", "policy_mode=quarantine-only"],
})
KNOWN_KEYS = {"name", "about", "msg", "sign", "after", "resign", "ip", "helo", "mail_from",
              "profile", "format", "explain", "action", "smtp", "symbols", "nosymbols",
              "ar", "noar", "trace", "notrace", "max_seconds", "inflight",
              "exceptions", "stats", "xfail"}
AUTHSERV_ID = "mx.test.example"


def build_message(sc, world_dir):
    msg = sign(sc["msg"], sc.get("sign", []), world_dir)
    for f in sc.get("after", []):
        msg = f(msg, world_dir) if getattr(f, "needs_world", False) else f(msg)
    if sc.get("resign"):
        msg = sign(msg, sc["resign"], world_dir)
    return msg


def scan(daemon, sc, msg, workdir):
    fmt = sc.get("format", "text")
    explain = (sc.get("explain", False) or sc.get("inflight", False) or fmt == "alignc"
               or bool(sc.get("trace")) or bool(sc.get("notrace")))
    t0 = time.monotonic()
    if fmt == "alignc":
        path = os.path.join(workdir, sc["name"] + ".eml")
        with open(path, "wb") as f:
            f.write(msg)
        args = [ALIGNC, "-s", daemon.socket, "--explain"]
        if sc.get("ip"):
            args += ["--ip", sc["ip"]]
        if sc.get("helo"):
            args += ["--helo", sc["helo"]]
        if sc.get("mail_from") is not None:
            args += ["--from", sc["mail_from"]]
        p = subprocess.run(args + [path], capture_output=True, timeout=60)
        r = Result.from_alignc(p.stdout)
        r.alignc_rc = p.returncode
        r.alignc_stdout = p.stdout.decode("utf-8", "replace")
    else:
        req = scan_request(msg, ip=sc.get("ip"), helo=sc.get("helo"),
                           mail_from=sc.get("mail_from"),
                           queue_id="SC" + re.sub(r"[^A-Za-z0-9]", "", sc["name"])[:30],
                           fmt="msgpack" if fmt == "msgpack" else None, explain=explain)
        raw = daemon.request(req, timeout=60)
        r = Result.from_msgpack(raw) if fmt == "msgpack" else Result.from_text(raw)
    r.seconds = time.monotonic() - t0
    return r


def stats(daemon):
    """The daemon's STATS counters as {name: int}."""
    raw = daemon.request(b"STATS ALIGND/1\r\n\r\n", timeout=10)
    lines = raw.decode("utf-8", "replace").split("\r\n")
    assert lines[0].startswith("ALIGND/1 200"), "STATS answered %r" % lines[0]
    out = {}
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(": ")
        if value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def exceptions_path(workdir, profile):
    return os.path.join(workdir, profile + ".exceptions")


def history_path(workdir, profile):
    return os.path.join(workdir, profile + ".sqlite")


def profile_args(profile, workdir):
    args = ["--set", "history=sqlite:" + history_path(workdir, profile)]
    for a in BASE_ARGS + PROFILES[profile]:
        if "{exceptions}" in a:
            path = exceptions_path(workdir, profile)
            with open(path, "w") as f:
                f.write(EXCEPTIONS)
            a = a.replace("{exceptions}", path)
        args.append(a)
    return args


def reload_exceptions(daemon, path, content, ok, timeout=10.0):
    """Writes the exceptions file, sends SIGHUP and waits until the daemon
    has taken it (Config-Reloads grows) or, for a broken file (ok False),
    logged that the reload failed naming the file and a line (the running
    configuration stays)."""
    before = stats(daemon)["Config-Reloads"]
    failed_before = daemon.logtext().count("reload failed")
    with open(path + ".tmp", "w") as f:
        f.write(content)
    os.replace(path + ".tmp", path)
    daemon.signal(signal.SIGHUP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if stats(daemon)["Config-Reloads"] > before:
            assert ok, "a broken exceptions file was accepted on SIGHUP"
            return
        log = daemon.logtext()
        if log.count("reload failed") > failed_before:
            assert not ok, "reload failed: %s" % log.strip().splitlines()[-1]
            line = [x for x in log.splitlines() if "reload failed" in x][-1]
            assert re.search(re.escape(path) + r":\d+:", line), \
                "the reload error names the file and line: %r" % line
            return
        time.sleep(0.02)
    raise RuntimeError("no reload within %.0fs of SIGHUP" % timeout)


# ---- checks: each returns a list of (what, expected, got) ----

def check(sc, r):
    bad = []

    def want(cond, what, exp, got):
        if not cond:
            bad.append((what, exp, got))

    want(r.status == 200, "status", 200, r.status)
    if r.status != 200:
        return bad
    allowed = sc["action"] if isinstance(sc["action"], tuple) else (sc["action"],)
    want(r.action in allowed, "action", " or ".join(allowed), r.action)
    # the SMTP reply: given with reject and tempfail only, with the right codes
    if "smtp" in sc:
        if sc["smtp"] is None:
            want(r.smtp is None, "no SMTP-Reply", None, r.smtp)
        else:
            want(r.smtp is not None and r.smtp.startswith(sc["smtp"]), "SMTP-Reply prefix",
                 sc["smtp"], r.smtp)
    codes = {"reject": "550 5.7.1", "tempfail": "451 4.7."}
    if r.action in codes:
        want(r.smtp is not None and r.smtp.startswith(codes[r.action]),
             "SMTP-Reply of " + r.action, codes[r.action], r.smtp)
    elif r.action in ("accept", "quarantine"):
        want(r.smtp is None, "no SMTP-Reply with " + r.action, None, r.smtp)
    if r.action == "quarantine":
        want(any(h.lower().startswith("x-alignd-quarantine:") for h in r.add_headers),
             "Add-Header X-Alignd-Quarantine with quarantine", "present", r.add_headers)
    # symbols, and the score as their sum
    for s in sc.get("symbols", []):
        want(r.has_symbol(s), "symbol", s, r.symbols)
    for s in sc.get("nosymbols", []):
        want(s not in r.symbol_names(), "symbol absent", s, r.symbols)
    if r.score is not None:
        total = sum(s[1] for s in r.symbols)
        want(abs(total - r.score) < 0.011, "Score = sum of symbol weights", "%.2f" % total,
             r.score)
    # Authentication-Results (RFC 8601): authserv-id first, one method each
    ar = r.ar or ""
    want(ar.startswith(AUTHSERV_ID + ";"), "A-R authserv-id", AUTHSERV_ID + ";", ar[:40])
    for method in ("spf=", "dkim=", "dmarc="):
        want(method in ar, "A-R method", method, ar)
    for frag in sc.get("ar", []):
        want(frag in ar, "A-R fragment", frag, ar)
    for frag in sc.get("noar", []):
        want(frag not in ar, "A-R fragment absent", frag, ar)
    # Trace
    lines = ["%s: %s" % (a, x) for _, a, x in r.trace]
    for rx in sc.get("trace", []):
        want(any(re.search(rx, ln) for ln in lines), "Trace line matching", rx,
             "%d trace lines" % len(lines))
    for rx in sc.get("notrace", []):
        hit = [ln for ln in lines if re.search(rx, ln)]
        want(not hit, "no Trace line matching " + rx, "none", hit[:2])
    if sc.get("inflight"):
        bad += check_inflight(sc, r)
    if sc.get("stats") is not None:
        # every Override-* counter moved by exactly what the scenario says
        before, after = r.stats_before, r.stats_after
        for name in sorted(set(before) | set(after)):
            if name.startswith("Override-"):
                d = after.get(name, 0) - before.get(name, 0)
                want(d == sc["stats"].get(name, 0), "STATS %s increase" % name,
                     sc["stats"].get(name, 0), d)
        for name in sc["stats"]:
            want(name in after, "STATS counter " + name, "present", sorted(after))
        want(after.get("Scans-Total", 0) - before.get("Scans-Total", 0) == 1,
             "STATS Scans-Total increase", 1,
             after.get("Scans-Total", 0) - before.get("Scans-Total", 0))
    if sc.get("max_seconds") is not None:
        want(r.seconds <= sc["max_seconds"], "wall time (s)",
             "<= %.1f" % sc["max_seconds"], "%.3f" % r.seconds)
    if sc.get("format") == "alignc":
        want(getattr(r, "alignc_rc", None) == {"accept": 0, "quarantine": 1, "reject": 2,
                                               "tempfail": 3}[sc["action"]],
             "alignc exit status", sc["action"], getattr(r, "alignc_rc", None))
        out = getattr(r, "alignc_stdout", "")
        want("Action: " + sc["action"] in out, "alignc prints the action",
             "Action: " + sc["action"], out[:200])
    return bad


# First question of each check: the check's own line or the DNS layer's.
STARTS = [
    ("spf", re.compile(r"^(spf: check_host\(|dns: query TXT (?!_dmarc\.)(?!\S*\._domainkey\.))")),
    ("dmarc", re.compile(r"^(dmarc: query _dmarc\.|dns: query TXT _dmarc\.)")),
    ("dkim", re.compile(r"^(dkim: signature \d+ .*key lookup|dns: query TXT \S+\._domainkey\.)")),
]
ANSWERS = [
    re.compile(r"^dns: answer "),
    re.compile(r"^dmarc: answer "),
    re.compile(r"^spf: \S+: (record|none|temperror|permerror)"),
]


def check_inflight(sc, r):
    """The first question of each check is asked before any answer lands."""
    first_start = {}
    first_answer = None
    for t, a, x in r.trace:
        line = "%s: %s" % (a, x)
        for kind, rx in STARTS:
            if rx.search(line) and kind not in first_start:
                first_start[kind] = (t, line)
        if first_answer is None and any(rx.search(line) for rx in ANSWERS):
            first_answer = (t, line)
    bad = []
    missing = [k for k, _ in STARTS if k not in first_start]
    if missing or first_answer is None:
        return [("in-flight: trace has the starts of spf, dmarc, dkim and an answer",
                 "all present", "missing %s, answer %s" % (missing, first_answer))]
    last = max(first_start.values())
    if not last[0] < first_answer[0]:
        bad.append(("in-flight: every first-level lookup issued before the first answer",
                    "last start %.3fms < first answer" % last[0],
                    "first answer at %.3fms (%s) before %s" % (first_answer[0], first_answer[1],
                                                                last[1])))
    r.inflight_info = "starts %s; first answer +%.3fms" % (
        ", ".join("%s +%.3fms" % (k, v[0]) for k, v in sorted(first_start.items())),
        first_answer[0])
    return bad


SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")


def stop_daemon(d):
    """Stops d; returns None, or what was wrong: a non-zero exit (ASan
    reports make it non-zero) or a sanitizer report in its log."""
    log = d.logtext()
    try:
        d.cleanup()
    except AssertionError as e:
        return str(e)[-4000:]
    m = SANITIZER_RE.search(log)
    if m:
        return "sanitizer report in the log:\n" + log[max(0, m.start() - 200):m.start() + 3000]
    return None


def replay_profile(profile, workdir, changed_config):
    """Re-decides every record the profile's daemon stored, under the
    configuration it ran with: a list of (what, expected, got), empty when
    every verdict and disposition is reproduced. Records of scenarios that
    rewrote the exceptions file were decided under another file and are
    taken out first (by queue id)."""
    import json
    import sqlite3
    path = history_path(workdir, profile)
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(path)
    try:
        for name in changed_config:
            db.execute("DELETE FROM history WHERE queue_id = ?",
                       ("SC" + re.sub(r"[^A-Za-z0-9]", "", name)[:30],))
        db.commit()
        stored = db.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    finally:
        db.close()
    if stored == 0:
        return []
    args = [a.replace("{exceptions}", exceptions_path(workdir, profile))
            for a in profile_args(profile, workdir)]
    p = subprocess.run([os.environ["ALIGND_REPORT"], "--what-if", "--json", "--since", "1d",
                        "--top", "0"] + args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return [("alignd-report --what-if runs", "exit 0", "%d: %s" % (p.returncode, p.stderr))]
    j = json.loads(p.stdout)
    bad = []
    for key, want in (("messages", stored), ("changed", 0), ("dispositions_changed", 0),
                      ("unreadable", 0)):
        if j[key] != want:
            bad.append(("replay %s" % key, want, "%s: %s" % (j[key], json.dumps(j)[:3000])))
    print("replay[%s]: %d stored records re-decided, %d verdicts changed" %
          (profile, j["messages"], j["changed"]), flush=True)
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--list", action="store_true")
    opts = ap.parse_args()

    names = [s["name"] for s in SCENARIOS]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, "duplicate scenario names: %s" % dup
    for s in SCENARIOS:
        unknown = set(s) - KNOWN_KEYS
        assert not unknown, "%s: unknown keys %s" % (s["name"], unknown)
        assert s.get("profile", "default") in PROFILES, s["name"]
    todo = [s for s in SCENARIOS if not opts.only or any(o in s["name"] for o in opts.only)]
    if opts.list:
        for s in todo:
            print("%-40s %s" % (s["name"], s.get("about", "")))
        return 0

    failures = []
    xfails = []
    reloaded = set()
    rewrote = {}       # profile -> scenarios that changed its exceptions file
    passed = 0
    daemons = {}
    t_all = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="alignd-scen-")
    try:
        with World(cache_dir=opts.cache_dir) as w:
            for sc in todo:
                profile = sc.get("profile", "default")
                try:
                    msg = build_message(sc, w.world_dir)
                    if profile == "fresh":
                        d = Daemon(*(BASE_ARGS + PROFILES[profile]), world=w).start()
                        try:
                            r = scan(d, sc, msg, workdir)
                        finally:
                            problem = stop_daemon(d)
                        if problem:
                            raise RuntimeError(problem)
                    else:
                        if profile not in daemons:
                            daemons[profile] = Daemon(*profile_args(profile, workdir),
                                                      world=w).start()
                        d = daemons[profile]
                        if sc.get("exceptions"):
                            reloaded.add(profile)
                            rewrote.setdefault(profile, []).append(sc["name"])
                            for content, ok in sc["exceptions"]:
                                reload_exceptions(d, exceptions_path(workdir, profile), content, ok)
                        before = stats(d) if sc.get("stats") is not None else None
                        r = scan(d, sc, msg, workdir)
                        if before is not None:
                            r.stats_before, r.stats_after = before, stats(d)
                        if d.proc.poll() is not None:
                            raise RuntimeError("alignd exited (%s) during the scan:\n%s" %
                                               (d.proc.returncode, d.logtext()[-3000:]))
                    bad = check(sc, r)
                except Exception as e:  # the scenario failed, the run goes on
                    r = None
                    bad = [("scenario ran", "no exception", "%s: %s" % (type(e).__name__, e))]
                finally:
                    # a scenario that rewrote the exceptions file puts it back
                    if profile in reloaded:
                        reloaded.discard(profile)
                        try:
                            reload_exceptions(daemons[profile], exceptions_path(workdir, profile),
                                              EXCEPTIONS, True)
                        except Exception as e:
                            bad = (bad or []) + [("exceptions file restored", "reloaded",
                                                  "%s: %s" % (type(e).__name__, e))]
                extra = ""
                if r is not None:
                    extra = " %.3fs %dB" % (r.seconds, len(msg))
                    if getattr(r, "inflight_info", None):
                        extra += " (" + r.inflight_info + ")"
                if sc.get("xfail") and bad:
                    xfails.append((sc, bad, r))
                    print("XFAIL %-39s%s" % (sc["name"], extra), flush=True)
                elif sc.get("xfail"):
                    bad = [("known bug marked xfail", "still failing (remove the mark once fixed)",
                            "passes: " + sc["xfail"])]
                    failures.append((sc, bad, r))
                    print("XPASS %-39s%s" % (sc["name"], extra), flush=True)
                elif bad:
                    failures.append((sc, bad, r))
                    print("FAIL %-40s%s" % (sc["name"], extra), flush=True)
                else:
                    passed += 1
                    print("ok   %-40s%s" % (sc["name"], extra), flush=True)
                if opts.verbose and r is not None:
                    print("     " + r.brief())
                    if r.trace:
                        print("     " + r.trace_text().replace("\n", "\n     "))
    finally:
        for profile, d in daemons.items():
            problem = stop_daemon(d)
            if problem:
                failures.append(({"name": "daemon[%s]" % profile,
                                  "about": "the daemon of this profile exits cleanly"},
                                 [("clean exit, no sanitizer report", "exit 0", problem)], None))
        for profile in daemons:
            try:
                bad = replay_profile(profile, workdir, rewrote.get(profile, []))
            except Exception as e:
                bad = [("replay ran", "no exception", "%s: %s" % (type(e).__name__, e))]
            if bad:
                failures.append(({"name": "replay[%s]" % profile,
                                  "about": "the stored evidence, re-decided under the "
                                           "profile's configuration, gives every stored "
                                           "verdict and disposition"}, bad, None))
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    for sc, bad, r in xfails:
        print("known daemon bug (xfail) %s: %s" % (sc["name"], sc["xfail"]))
        for what, exp, got in bad:
            print("  %s\n    expected: %s\n    got:      %s" % (what, exp, got))
    print("scenarios: %d passed, %d failed (%.1fs)" % (passed, len(failures),
                                                       time.monotonic() - t_all))
    if xfails:
        print("scenarios: %d known daemon bugs (xfail)" % len(xfails))
    for sc, bad, r in failures:
        print("\nFAILED %s: %s" % (sc["name"], sc.get("about", "")))
        for what, exp, got in bad:
            print("  %s\n    expected: %s\n    got:      %s" % (what, exp, got))
        if r is not None:
            print("  reply: " + r.brief())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
