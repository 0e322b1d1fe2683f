#!/usr/bin/python3
"""Runs the alignd benchmark (bench/README.md); bench/run calls this.

    bench.py --build DIR [--quick] [--no-rspamd] [--no-perf] [--only PART,...]

Generates (or reuses) the benchmark DNS world and corpora under
DIR/bench-data, starts nsd, runs alignd and the load generator in each
configuration, writes bench/results/results.json, the PNG plots and
bench/results/summary.md, and prints the summary. Every process it starts
is stopped before it returns.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import corpus    # noqa: E402
import dnsdelay  # noqa: E402
import dnsworld  # noqa: E402

RESULTS = os.path.join(HERE, "results")
# the parts of a run, in the order they run (--only picks some)
PARTS = ("micro", "history", "replay", "warm", "memory", "cold", "rspamd")
N_DOMAINS = 300


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.abspath(a.build)
        self.alignd = os.path.join(self.build, "server", "alignd")
        self.report = os.path.join(self.build, "server", "alignd-report")
        self.loadgen = os.path.join(self.build, "bench", "loadgen")
        self.micro = os.path.join(self.build, "bench", "micro")
        self.engines = os.path.join(self.build, "bench", "engines")
        self.data = os.path.join(self.build, "bench-data")
        self.run_dir = tempfile.mkdtemp(prefix="alignd-bench-")
        self.res = {"quick": a.quick, "runs": {}}
        self.parts = set(a.only.split(",")) if a.only else set(PARTS)
        unknown = self.parts - set(PARTS)
        if unknown:
            sys.exit("bench: no part named %s (parts: %s)" % (
                ", ".join(sorted(unknown)), ", ".join(PARTS)))
        self.procs = []
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(RESULTS, exist_ok=True)

    def log(self, *args):
        print("bench:", *args, flush=True)

    # ------------------------------------------------------------ data
    def prepare(self):
        yaml_path = os.path.join(self.data, "world.yaml")
        corpus.make_world(yaml_path, N_DOMAINS, 1)
        t0 = time.time()
        self.world_dir, _ = dnsworld.prepare(yaml_path,
                                             os.path.join(self.data, "worlds"))
        self.world_yaml = yaml_path
        self.log("world ready (%d zones) in %.0f s" % (N_DOMAINS + 6, time.time() - t0))
        with open(os.path.join(self.world_dir, "world.json")) as f:
            info = json.load(f)
        self.keys_tsv = os.path.join(self.data, "keys.tsv")
        with open(self.keys_tsv, "w") as f:
            for k in info["dkim"]:
                f.write("%s._domainkey.%s\t%s\n" % (k["selector"], k["domain"], k["txt"]))
        q = self.a.quick
        self.corpora = {}
        specs = [("typical", 400 if q else 2000)]
        sizes = [1000, 16000, 128000, 1 << 20] + ([] if q else [10 << 20])
        specs += [("size:%d" % s, 40 if s < (1 << 20) else (12 if s < (10 << 20) else 6)) for s in sizes]
        specs += [("sigs:%d" % k, 60) for k in ((0, 1, 2, 8) if q else (0, 1, 2, 4, 8))]
        for prof, n in specs:
            d = os.path.join(os.path.basename(self.world_dir),
                             prof.replace(":", "-") + "-%d" % n)
            d = os.path.join(self.data, "corpora", d)
            if not os.path.exists(os.path.join(d, "index.tsv")):
                t0 = time.time()
                tmp = d + ".tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                total = corpus.make_corpus(self.world_dir, tmp, n, prof, 1, N_DOMAINS)
                os.rename(tmp, d)
                self.log("corpus %s: %d messages, %.1f MB in %.0f s" %
                         (prof, n, total / 1e6, time.time() - t0))
            self.corpora[prof] = os.path.join(d, "index.tsv")
        self.res["corpus"] = self.corpus_stats(self.corpora["typical"])

    def corpus_stats(self, index):
        d = os.path.dirname(index)
        envs = [json.load(open(os.path.join(d, f)))
                for f in sorted(os.listdir(d)) if f.endswith(".env")]
        sizes = sorted(e["size"] for e in envs)
        sigs = [len(e["signers"]) for e in envs]
        return {"messages": len(envs), "median_kb": statistics.median(sizes) / 1024,
                "max_kb": sizes[-1] / 1024, "mean_kb": sum(sizes) / len(sizes) / 1024,
                "sigs_mean": sum(sigs) / len(sigs),
                "sigs_hist": {str(k): sigs.count(k) for k in sorted(set(sigs))}}

    # ------------------------------------------------------------ daemon
    def start_daemon(self, unbound_conf, workers=None, extra=()):
        sock = os.path.join(self.run_dir, "alignd.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        cmd = [self.alignd, "--socket", sock, "--unbound-config", unbound_conf,
               "--set", "dns_trust_anchor=", "--set", "dns_mode=recursive",
               "--set", "max_connections=12000", "--set", "idle_timeout=600s",
               "--authserv-id", "mx.bench.example"]
        if workers:
            cmd += ["--workers", str(workers)]
        if not any(e.startswith("history=") for e in extra):
            # the default history store, but the bench's own, fresh each start
            hist = os.path.join(self.run_dir, "history.sqlite")
            for f in (hist, hist + "-wal", hist + "-shm"):
                if os.path.exists(f):
                    os.unlink(f)
            cmd += ["--set", "history=sqlite:" + hist]
        for e in extra:
            cmd += ["--set", e]

        def pre():
            resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
        logf = open(os.path.join(self.run_dir, "alignd.log"), "a")
        p = subprocess.Popen(cmd, stdout=logf, stderr=logf, preexec_fn=pre)
        self.procs.append(p)
        for _ in range(200):
            if os.path.exists(sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(sock)
                    s.sendall(b"PING\r\n\r\n")
                    if s.recv(64).startswith(b"ALIGND/1 200"):
                        s.close()
                        return p, sock
                    s.close()
                except OSError:
                    pass
            if p.poll() is not None:
                raise RuntimeError("alignd exited: see %s/alignd.log" % self.run_dir)
            time.sleep(0.02)
        raise RuntimeError("alignd did not come up")

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def lg(self, label, sock, index, args, pids, verdicts=None, http=None):
        out = os.path.join(self.run_dir, "lg.json")
        cmd = [self.loadgen] + (["--http", http] if http else ["--socket", sock]) + \
            ["--corpus", index, "--json", out, "--label", label, "--quiet"] + args
        for pid in pids:
            cmd += ["--pid", str(pid)]
        if verdicts:
            cmd += ["--verdicts", verdicts]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=600)
        sys.stdout.write(r.stdout)
        with open(out) as f:
            j = json.load(f)
        self.res["runs"][label] = j
        return j

    # ------------------------------------------------------------ parts
    def warm(self, w):
        q = self.a.quick
        dur = "3" if q else "8"
        typ = self.corpora["typical"]
        nwarm = str(self.res["corpus"]["messages"])
        p, sock = self.start_daemon(w.unbound_conf)
        self.log("warm cache runs (typical corpus)")
        print("%-28s %9s %8s %8s %8s %8s %8s %9s %8s %6s" % (
            "run", "msgs/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "cpu ms",
            "MB/s", "RSS MB", "errors"))
        self.lg("alignd warm c=32", sock, typ, ["-c", "32", "--warmup", nwarm,
                "--duration", dur], [p.pid],
                verdicts=os.path.join(self.run_dir, "alignd.verdicts"))
        self.lg("alignd warm c=8", sock, typ, ["-c", "8", "--warmup", "200",
                "--duration", dur], [p.pid])
        for c in ([1, 128] if q else [1, 128, 1000]):
            self.lg("alignd c=%d" % c, sock, typ, ["-c", str(c), "--warmup", "200",
                    "--duration", "2" if q else "5"], [p.pid])
        self.lg("alignd c=8 depth=4", sock, typ, ["-c", "8", "-d", "4", "--warmup",
                "200", "--duration", "2" if q else "4"], [p.pid])
        self.lg("alignd c=32 no-reuse", sock, typ, ["-c", "32", "--no-reuse",
                "--warmup", "200", "--duration", "2" if q else "4"], [p.pid])
        for prof, idx in self.corpora.items():
            if prof.startswith("sigs:"):
                self.lg("alignd %s c=32" % prof, sock, idx, ["-c", "32", "--warmup",
                        "60", "--duration", "1.5" if q else "3"], [p.pid])
        for prof, idx in self.corpora.items():
            if prof.startswith("size:"):
                n = 4 if int(prof[5:]) >= (1 << 20) else 8
                self.lg("alignd %s c=%d" % (prof, n), sock, idx, ["-c", str(n),
                        "--warmup", "20", "--duration", "1.5" if q else "3"], [p.pid])
        if not self.a.no_perf and shutil.which("perf"):
            self.profile(p, sock, typ)
        self.stop(p)
        for wk in (1, 2, 4):
            p, sock = self.start_daemon(w.unbound_conf, workers=wk)
            self.lg("alignd workers=%d c=32" % wk, sock, typ, ["-c", "32", "--warmup",
                    nwarm, "--duration", "2" if q else "4"], [p.pid])
            self.stop(p)

    @staticmethod
    def stats(sock):
        """The daemon's STATS fields as a dict."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"STATS\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        out = {}
        for line in data.decode("ascii", "replace").split("\r\n")[1:]:
            if ": " in line:
                k, v = line.split(": ", 1)
                out[k] = v
        return out

    def history_cost(self, w):
        """What the history store costs the warm path: the same corpus at
        c=32 on a fresh daemon with history=off and with history=sqlite,
        alternated so that drift in the machine hits both alike; the median
        of each. Every record must reach the store (History-Dropped 0), or
        the figure would flatter it."""
        q = self.a.quick
        dur = "3" if q else "6"
        typ = self.corpora["typical"]
        nwarm = str(self.res["corpus"]["messages"])
        self.log("history store cost (warm, c=32, off vs sqlite alternated)")
        rounds = 2 if q else 5
        got = {"off": [], "sqlite": []}
        dropped = 0
        written = 0
        for i in range(rounds):
            for store in ("off", "sqlite"):
                extra = ("history=off",) if store == "off" else ()
                p, sock = self.start_daemon(w.unbound_conf, extra=extra)
                r = self.lg("history=%s c=32 #%d" % (store, i + 1), sock, typ,
                            ["-c", "32", "--warmup", nwarm, "--duration", dur], [p.pid])
                if store == "sqlite":
                    # let the writer drain what the run queued, then count
                    st = {}
                    for _ in range(100):
                        st = self.stats(sock)
                        if st.get("History-Queued", "0") == "0":
                            break
                        time.sleep(0.1)
                    dropped += int(st.get("History-Dropped", "0"))
                    written += int(st.get("History-Written", "0"))
                got[store].append(r)
                self.stop(p)
        med = {k: statistics.median(x["msgs_per_s"] for x in v) for k, v in got.items()}
        # each round's pair, measured a minute apart: the drift of the
        # machine cancels out of their ratio
        pairs = [100.0 * (1 - s["msgs_per_s"] / o["msgs_per_s"])
                 for o, s in zip(got["off"], got["sqlite"])]
        cpu = {k: statistics.median(x["daemon_cpu_ms_per_msg"] for x in v) for k, v in got.items()}
        self.res["history_cost"] = {
            "rounds": rounds, "off_msgs_s": med["off"], "sqlite_msgs_s": med["sqlite"],
            "cost_pct": 100.0 * (1 - med["sqlite"] / med["off"]),
            "off_cpu_ms": cpu["off"], "sqlite_cpu_ms": cpu["sqlite"],
            "cpu_pct": 100.0 * (cpu["sqlite"] / cpu["off"] - 1),
            "written": written, "dropped": dropped,
            "pair_cost_pct": pairs, "pair_cost_median_pct": statistics.median(pairs)}
        for label in [k for k in self.res["runs"] if k.startswith("history=")]:
            self.res["runs"].pop(label)
        h = self.res["history_cost"]
        print("history store: off %.0f msgs/s, sqlite %.0f msgs/s (median of %d): "
              "throughput cost %.1f %% (round by round: %s; their median %.1f %%), "
              "daemon CPU per message %+.1f %%; %d records written, %d dropped" % (
                  h["off_msgs_s"], h["sqlite_msgs_s"], rounds, h["cost_pct"],
                  ", ".join("%.1f" % p for p in pairs), h["pair_cost_median_pct"],
                  h["cpu_pct"], written, dropped))

    def replay(self, w):
        """The what-if replay's speed: the history of one warm run (the
        typical corpus at c=32 into a fresh SQLite store), copied in the
        database until it holds REPLAY_ROWS records, then re-decided by
        alignd-report --what-if twice: under the configuration it was
        scanned with (which must change nothing) and under policy_mode =
        strict. Records per second and wall time of each."""
        import sqlite3
        rows = 200000 if self.a.quick else 1000000
        self.log("what-if replay of %d stored records" % rows)
        hist = os.path.join(self.run_dir, "replay.sqlite")
        for f in (hist, hist + "-wal", hist + "-shm"):
            if os.path.exists(f):
                os.unlink(f)
        p, sock = self.start_daemon(w.unbound_conf, extra=("history=sqlite:" + hist,))
        self.lg("replay source c=32", sock, self.corpora["typical"],
                ["-c", "32", "--count", "4000"], [p.pid])
        self.stop(p)
        self.res["runs"].pop("replay source c=32", None)
        db = sqlite3.connect(hist)
        cols = [r[1] for r in db.execute("PRAGMA table_info(history)") if r[1] != "id"]
        have = db.execute("SELECT count(*) FROM history").fetchone()[0]
        while have < rows:
            db.execute("INSERT INTO history (%s) SELECT %s FROM history LIMIT %d" % (
                ",".join(cols), ",".join(cols), min(have, rows - have)))
            db.commit()
            have = db.execute("SELECT count(*) FROM history").fetchone()[0]
        db.close()
        mb = os.path.getsize(hist) / 1e6
        out = {"records": have, "store_mb": mb}
        for label, extra in (("same", []), ("qonly", ["--set", "policy_mode=quarantine-only"])):
            cmd = [self.report, "--what-if", "--json", "--since", "2d",
                   "--set", "history=sqlite:" + hist] + extra
            t0 = time.monotonic()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=1800)
            s = time.monotonic() - t0
            if r.returncode != 0:
                raise RuntimeError("alignd-report --what-if: %s" % r.stderr)
            j = json.loads(r.stdout)
            out[label] = {"seconds": s, "records_per_s": j["messages"] / s,
                          "messages": j["messages"], "changed": j["changed"]}
            print("what-if replay (%s): %d records in %.1f s = %.0f records/s, %d changed"
                  % (label, j["messages"], s, j["messages"] / s, j["changed"]))
        self.res["replay"] = out
        for f in (hist, hist + "-wal", hist + "-shm"):
            if os.path.exists(f):
                os.unlink(f)

    def profile(self, p, sock, typ):
        self.log("perf profile of the warm path (c=32)")
        data = os.path.join(self.run_dir, "perf.data")
        pr = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data,
                               "-p", str(p.pid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        self.lg("alignd warm c=32 (perf)", sock, typ, ["-c", "32", "--duration", "4"],
                [p.pid])
        pr.send_signal(signal.SIGINT)
        pr.wait(30)
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.+)", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
        r2 = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                             "--sort", "dso", "-g", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        dsos = []
        for line in r2.stdout.splitlines():
            m = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
            if m:
                dsos.append((float(m.group(1)), m.group(2)))
        self.res["profile"] = {"symbols": rows[:25], "dsos": dsos[:12]}

    def memory(self, w):
        q = self.a.quick
        self.log("memory: idle connections and in-flight messages")
        out = []
        for n in ([100, 1000] if q else [100, 1000, 5000, 10000]):
            p, sock = self.start_daemon(w.unbound_conf)
            js = os.path.join(self.run_dir, "idle.json")
            subprocess.run([self.loadgen, "--socket", sock, "--idle", str(n), "--hold",
                            "1", "--pid", str(p.pid), "--json", js, "--label",
                            "idle %d" % n], timeout=120)
            with open(js) as f:
                out.append(json.load(f))
            self.stop(p)
        self.res["idle"] = out
        infl = []
        for prof, idx in self.corpora.items():
            if not prof.startswith("size:"):
                continue
            size = int(prof[5:])
            p, sock = self.start_daemon(w.unbound_conf)
            # one in flight (which also warms the DNS cache), then four: the
            # peak RSS difference is what three more in-flight messages cost
            j1 = self.lg("mem %s c=1" % prof, sock, idx, ["-c", "1", "--count", "24"],
                         [p.pid])
            j = self.lg("mem %s c=4" % prof, sock, idx, ["-c", "4", "--count", "48"],
                        [p.pid])
            infl.append({"size": size, "hwm1_kb": j1["daemon_hwm_kb"],
                         "hwm4_kb": j["daemon_hwm_kb"],
                         "per_msg_kb": (j["daemon_hwm_kb"] - j1["daemon_hwm_kb"]) / 3.0})
            self.stop(p)
        self.res["inflight"] = infl

    @staticmethod
    def status_kb(pid, key):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def cold(self, w, variant="", extra_conf=""):
        self.log("cold cache, 20 ms per DNS query (delay forwarder) %s" % variant)
        n = 10 if self.a.quick else 30
        idx = self.corpora["typical"]
        d = os.path.dirname(idx)
        names = [l.split("\t")[0] for l in open(idx)][:n]
        samples = []
        with dnsdelay.DelayForwarder(w.nsd_port, 20.0, 2.0) as fwd:
            conf = os.path.join(self.run_dir, "unbound-delay.conf")
            with open(w.unbound_conf) as f:
                text = f.read().replace("@%d" % w.nsd_port, "@%d" % fwd.port)
            text = text.replace("server:\n", "server:\n" + extra_conf, 1)
            with open(conf, "w") as f:
                f.write(text)
            for name in names:
                one = os.path.join(self.run_dir, "one")
                shutil.rmtree(one, ignore_errors=True)
                os.makedirs(one)
                os.symlink(os.path.join(d, name), os.path.join(one, name))
                with open(idx) as f:
                    line = [l for l in f if l.startswith(name + "\t")][0]
                with open(os.path.join(one, "index.tsv"), "w") as f:
                    f.write(line)
                p, sock = self.start_daemon(conf)
                fwd.reset_log()
                j = self.lg("cold one", sock, os.path.join(one, "index.tsv"),
                            ["-c", "1", "--count", "1"], [p.pid])
                env = json.load(open(os.path.join(d, name[:-4] + ".env")))
                chain = self.chain_model(env)
                samples.append({"name": name, "kind": env["kind"], "ms": j["p50_ms"],
                                "queries": fwd.queries, "chain": chain,
                                "bound_ms": 1.2 * chain * 20.0})
                if len(samples) <= 2:
                    # what the resolver asked, in time order: the dependent
                    # rounds behind the latency
                    t0 = fwd.log[0][0] if fwd.log else 0
                    samples[-1]["query_log"] = ["+%.0f ms %s %s" % ((t - t0) * 1000, n, qt)
                                                for t, n, qt in fwd.log]
                self.stop(p)
        self.res["runs"].pop("cold one", None)
        self.res["cold" + variant] = samples

    @staticmethod
    def chain_model(env):
        """Longest chain of dependent DNS round trips this scan needs when
        every cache is empty: the SPF include chain that decides the result
        plus one DNSKEY fetch per signed zone first met on it (each world
        zone is its own trust island). DKIM keys and DMARC live in the
        sender's zone: 2 round trips, never longer than SPF's."""
        i = int(env["from_domain"][1:4])
        plan = corpus.domain_plan(i, 1)
        if env["kind"] == "esp":
            net = int(env["client_ip"].split(".")[2]) % 4
            spf = 3 if net < 3 else 4    # _spf -> _nb1/_nb2 (-> _nb3)
            zones = 2
        elif env["kind"] == "spoof" and plan["esp"] is not None:
            spf, zones = 4, 2
        else:
            spf, zones = 1, 1
        return max(spf + zones, 2)

    def micro_runs(self):
        self.log("micro-benchmarks and the DKIM ceiling")
        typ = self.corpora["typical"]
        out = []
        r = subprocess.run([self.micro, "pieces", typ, self.keys_tsv],
                           stdout=subprocess.PIPE, text=True, timeout=300)
        out += [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        for t in (1, 2):
            r = subprocess.run([self.micro, "ceiling", typ, self.keys_tsv, str(t),
                                "2" if self.a.quick else "5"],
                               stdout=subprocess.PIPE, text=True, timeout=300)
            out += [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
            # both DKIM engines, same corpus, same run
            r = subprocess.run([self.engines, typ, self.keys_tsv, str(t),
                                "2" if self.a.quick else "5"],
                               stdout=subprocess.PIPE, text=True, timeout=300)
            out += [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        self.res["micro"] = out

    # ------------------------------------------------------------ main
    def run(self):
        t0 = time.time()
        self.prepare()
        if "micro" in self.parts:
            self.micro_runs()
        with dnsworld.World(world=self.world_yaml,
                            cache_dir=os.path.join(self.data, "worlds")) as w:
            if "history" in self.parts:
                self.history_cost(w)
            if "replay" in self.parts:
                self.replay(w)
            if "warm" in self.parts:
                self.warm(w)
            if "memory" in self.parts:
                self.memory(w)
            if "cold" in self.parts:
                self.cold(w)
                # libunbound minimises QNAMEs by default (RFC 9156): on an
                # empty cache that adds round trips; the same run without it
                self.cold(w, "_noqmin", "    qname-minimisation: no\n")
            if not self.a.no_rspamd and "rspamd" in self.parts:
                try:
                    import rspamd_side
                    rspamd_side.run(self, w)
                except Exception as e:  # reported, not fatal
                    self.log("rspamd side by side failed: %s" % e)
                    self.res["rspamd_error"] = str(e)
        self.res["elapsed_s"] = time.time() - t0
        path = os.path.join(RESULTS, "results.json")
        if self.a.only and os.path.exists(path):
            # a partial run refreshes its own parts of the last full results
            with open(path) as f:
                old = json.load(f)
            old["runs"].update(self.res.pop("runs"))
            old.update(self.res)
            self.res = old
        with open(path, "w") as f:
            json.dump(self.res, f, indent=1)
        import report
        report.write(self.res, RESULTS)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-rspamd", action="store_true")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--only", metavar="PART[,PART]",
                    help="run only these parts: " + ", ".join(PARTS))
    a = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
    b = Bench(a)
    signal.signal(signal.SIGTERM, lambda *x: sys.exit(143))
    try:
        b.run()
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
