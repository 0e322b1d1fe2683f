#!/usr/bin/python3
"""Turns bench/results/results.json into PNG plots and summary.md, and
prints the summary. `report.py [results.json]` redraws from a saved run."""

import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _plots(res, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    runs = res["runs"]
    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, name), dpi=80)
        plt.close(fig)
        made.append(name)

    conc = sorted((r["connections"], r) for k, r in runs.items()
                  if k.startswith("alignd c=") and "depth" not in k and "reuse" not in k
                  or k in ("alignd warm c=8", "alignd warm c=32"))
    if conc:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        xs = [c for c, _ in conc]
        ax[0].plot(xs, [r["msgs_per_s"] for _, r in conc], "o-")
        ax[0].set_xscale("log"); ax[0].set_xlabel("concurrency"); ax[0].set_ylabel("msgs/s")
        for key in ("p50_ms", "p99_ms"):
            ax[1].plot(xs, [r[key] for _, r in conc], "o-", label=key)
        ax[1].set_xscale("log"); ax[1].set_yscale("log"); ax[1].set_xlabel("concurrency")
        ax[1].set_ylabel("latency ms"); ax[1].legend()
        save(fig, "concurrency.png")
    size = sorted((int(k.split(":")[1].split()[0]), r) for k, r in runs.items()
                  if k.startswith("alignd size:"))
    if size:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        xs = [s / 1024 for s, _ in size]
        ax[0].plot(xs, [r["daemon_cpu_ms_per_msg"] for _, r in size], "o-")
        ax[0].set_xscale("log"); ax[0].set_yscale("log")
        ax[0].set_xlabel("message KB"); ax[0].set_ylabel("daemon CPU ms / msg")
        ax[1].plot(xs, [r["mb_per_s"] for _, r in size], "o-")
        ax[1].set_xscale("log"); ax[1].set_xlabel("message KB"); ax[1].set_ylabel("MB/s")
        save(fig, "size.png")
    sigs = sorted((int(k.split(":")[1].split()[0]), r) for k, r in runs.items()
                  if k.startswith("alignd sigs:"))
    if sigs:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([s for s, _ in sigs], [r["msgs_per_s"] for _, r in sigs], "o-")
        ax.set_xlabel("DKIM signatures per message"); ax.set_ylabel("msgs/s (c=32)")
        save(fig, "signatures.png")
    wk = sorted((int(k.split("=")[1].split()[0]), r) for k, r in runs.items()
                if k.startswith("alignd workers="))
    if wk:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([w for w, _ in wk], [r["msgs_per_s"] for _, r in wk], "o-")
        ax.set_xlabel("worker threads"); ax.set_ylabel("msgs/s (c=32)")
        save(fig, "workers.png")
    if res.get("idle"):
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ax[0].plot([i["connections"] for i in res["idle"]],
                   [i["rss_kb"] / 1024 for i in res["idle"]], "o-")
        ax[0].set_xlabel("idle connections"); ax[0].set_ylabel("daemon RSS MB")
        inf = res.get("inflight") or []
        if inf:
            ax[1].plot([i["size"] / 1024 for i in inf],
                       [max(i["per_msg_kb"], 1) for i in inf], "o-", label="measured")
            ax[1].plot([i["size"] / 1024 for i in inf],
                       [i["size"] / 1024 + 64 for i in inf], "--", label="size + 64 KB")
            ax[1].set_xscale("log"); ax[1].set_yscale("log")
            ax[1].set_xlabel("message KB"); ax[1].set_ylabel("peak RSS per in-flight msg, KB")
            ax[1].legend()
        save(fig, "memory.png")
    if res.get("cold"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter([c["chain"] for c in res["cold"]], [c["ms"] for c in res["cold"]])
        xs = sorted(set(c["chain"] for c in res["cold"]))
        ax.plot(xs, [1.2 * x * 20 for x in xs], "--", label="1.2 x chain x 20 ms")
        ax.set_xlabel("dependent DNS round trips (model)"); ax.set_ylabel("cold scan ms")
        ax.legend()
        save(fig, "cold.png")
    return made


def _row(name, r):
    return "| %s | %.0f | %.2f | %.2f | %.2f | %.1f | %.3f | %.1f | %d |" % (
        name, r["msgs_per_s"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
        r["daemon_cpu_ms_per_msg"], r["daemon_hwm_kb"] / 1024.0, r["errors"])


def write(res, outdir):
    plots = _plots(res, outdir)
    runs = res["runs"]
    L = []
    c = res.get("corpus", {})
    L.append("# alignd benchmark results%s\n" % (" (--quick)" if res.get("quick") else ""))
    L.append("Corpus: %d messages, median %.1f KB, mean %.1f KB, max %.0f KB, "
             "%.2f DKIM signatures per message (histogram %s). Run time %.0f s.\n"
             % (c.get("messages", 0), c.get("median_kb", 0), c.get("mean_kb", 0),
                c.get("max_kb", 0), c.get("sigs_mean", 0), c.get("sigs_hist"),
                res.get("elapsed_s", 0)))
    L.append("| run | msgs/s | p50 ms | p90 ms | p99 ms | max ms | daemon CPU ms/msg | daemon peak RSS MB | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for k, r in runs.items():
        if k.startswith("mem ") or k == "cold one":
            continue
        L.append(_row(k, r))
    L.append("")
    # targets
    ceil = [m for m in res.get("micro", []) if m.get("bench") == "dkim_ceiling"]
    ceil2 = max(ceil, key=lambda m: m["threads"]) if ceil else None
    w32 = runs.get("alignd warm c=32")
    w8 = runs.get("alignd warm c=8")
    rs32 = runs.get("rspamd warm c=32")
    L.append("## Targets\n")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    if w32 and rs32:
        ratio = w32["msgs_per_s"] / max(rs32["msgs_per_s"], 1e-9)
        L.append("| warm c=32 >= 4x rspamd | %.0f vs %.0f msgs/s = %.2fx | %s |"
                 % (w32["msgs_per_s"], rs32["msgs_per_s"], ratio, "yes" if ratio >= 4 else "no"))
    elif w32:
        L.append("| warm c=32 >= 4x rspamd | alignd %.0f msgs/s; rspamd not measured (%s) | ? |"
                 % (w32["msgs_per_s"], res.get("rspamd_error", "skipped")))
    if w32 and ceil2:
        f = w32["msgs_per_s"] / ceil2["msgs_per_s"]
        L.append("| warm c=32 >= 85%% of the DKIM ceiling | %.0f / %.0f msgs/s (%d threads) = %.0f%% | %s |"
                 % (w32["msgs_per_s"], ceil2["msgs_per_s"], ceil2["threads"], 100 * f,
                    "yes" if f >= 0.85 else "no"))
    if w8:
        L.append("| p99 at c=8 warm <= 3 ms | %.2f ms | %s |" % (
            w8["p99_ms"], "yes" if w8["p99_ms"] <= 3 else "no"))
    cold = res.get("cold") or []
    if cold:
        med = statistics.median(c["ms"] for c in cold)
        medb = statistics.median(c["bound_ms"] for c in cold)
        ok = sum(1 for c in cold if c["ms"] <= c["bound_ms"])
        L.append("| cold, 20 ms/query: median <= 1.2 x chain x 20 ms | median %.0f ms vs bound %.0f ms; %d/%d messages within their own bound | %s |"
                 % (med, medb, ok, len(cold), "yes" if med <= medb else "no"))
    cq = res.get("cold_noqmin") or []
    if cq:
        med = statistics.median(c["ms"] for c in cq)
        medb = statistics.median(c["bound_ms"] for c in cq)
        L.append("| same, libunbound qname-minimisation off | median %.0f ms vs bound %.0f ms; %d/%d within | %s |"
                 % (med, medb, sum(1 for c in cq if c["ms"] <= c["bound_ms"]), len(cq),
                    "yes" if med <= medb else "no"))
    idle = {i["connections"]: i for i in res.get("idle") or []}
    if 1000 in idle:
        mb = idle[1000]["rss_kb"] / 1024
        L.append("| RSS <= 64 MB with 1,000 idle connections | %.1f MB | %s |" % (mb, "yes" if mb <= 64 else "no"))
    inf = res.get("inflight") or []
    if inf:
        bad = [i for i in inf if i["per_msg_kb"] > i["size"] / 1024 + 64]
        L.append("| in-flight memory <= size + 64 KB | %s | %s |" % (
            ", ".join("%.0f KB: %.0f KB" % (i["size"] / 1024, i["per_msg_kb"]) for i in inf),
            "yes" if not bad else "no"))
    wk = {int(k.split("=")[1].split()[0]): r for k, r in runs.items() if k.startswith("alignd workers=")}
    if wk:
        L.append("| throughput grows with workers up to the cores | %s | %s |" % (
            ", ".join("%d: %.0f/s" % (k, v["msgs_per_s"]) for k, v in sorted(wk.items())),
            "yes" if wk.get(2, {}).get("msgs_per_s", 0) > 1.1 * wk.get(1, {}).get("msgs_per_s", 1) else "no"))
    h = res.get("history_cost")
    if h:
        pairs = h.get("pair_cost_pct") or []
        pm = h.get("pair_cost_median_pct", h["cost_pct"])
        L.append("| history store costs <= 5%% of warm throughput | history=off %.0f, "
                 "history=sqlite %.0f msgs/s (c=32, median of %d alternated runs): %.1f%%; "
                 "round by round %s (median %.1f%%); daemon CPU per message %+.1f%%; "
                 "%d records written, %d dropped | %s |"
                 % (h["off_msgs_s"], h["sqlite_msgs_s"], h["rounds"], h["cost_pct"],
                    ", ".join("%.1f%%" % p for p in pairs), pm, h["cpu_pct"], h["written"],
                    h["dropped"],
                    "yes" if h["cost_pct"] <= 5 and pm <= 5 and h["dropped"] == 0 else "no"))
    rp = res.get("replay")
    if rp and "same" in rp and "qonly" in rp:
        worst = max(rp["same"]["seconds"], rp["qonly"]["seconds"])
        L.append("| what-if: a million stored records replayed in seconds | %d records (%.0f MB "
                 "SQLite): %.1f s unchanged configuration (%d changed), %.1f s policy_mode "
                 "quarantine-only (%d changed); %.0f records/s | %s |"
                 % (rp["records"], rp["store_mb"], rp["same"]["seconds"], rp["same"]["changed"],
                    rp["qonly"]["seconds"], rp["qonly"]["changed"],
                    rp["same"]["records_per_s"],
                    "yes" if rp["records"] >= 1000000 and worst <= 20 else
                    "not measured at a million (--quick)" if rp["records"] < 1000000 else "no"))
    L.append("")
    if ceil:
        L.append("## DKIM ceiling (libopendkim alone, keys in memory, same corpus)\n")
        for m in ceil:
            L.append("- %d thread(s): %.0f msgs/s, %.0f µs per message per core, %.2f signatures per message; "
                     "decoding one RSA public key (base64 + d2i_PUBKEY, OpenSSL 3) costs %.0f µs; "
                     "with decoded keys cached per selector (projection: same run minus the decode) "
                     "%.0f µs per message, %.0f msgs/s."
                     % (m["threads"], m["msgs_per_s"], m["us_per_msg_per_core"], m["sigs_per_msg"],
                        m["key_decode_us"], m["cached_key_us_per_msg_per_core"], m["cached_key_msgs_per_s"]))
        L.append("")
    eng = [m for m in res.get("micro", []) if m.get("bench") == "dkim_engines"]
    if eng:
        L.append("## DKIM engines: native against libopendkim (bench/engines.c)\n")
        L.append("dkv_verify() alone over the typical corpus, keys in memory, same run:\n")
        for m in eng:
            L.append("- %d thread(s): libopendkim %.0f msgs/s, native %.0f msgs/s (%.2fx); "
                     "%d of %d signatures get the same result, %d differ; key cache %d hits, "
                     "%d misses." % (m["threads"], m["libopendkim_msgs_s"], m["native_msgs_s"],
                                     m["speedup"], m["signatures_agree"], m["signatures"],
                                     m["signatures_differ"], m["key_cache_hits"],
                                     m["key_cache_misses"]))
        for m in res.get("micro", []):
            if m.get("bench") == "dkim_canon":
                L.append("- body canonicalisation + SHA-256 (checks/dkim/dkc), one core: simple "
                         "%.0f MB/s, relaxed %.0f MB/s." % (m["simple_mb_s"], m["relaxed_mb_s"]))
        L.append("")
    mic = [m for m in res.get("micro", []) if m.get("bench") not in ("dkim_ceiling", "dkim_engines", "dkim_canon")]
    if mic:
        L.append("## Micro-benchmarks (one thread)\n")
        L.append("| piece | µs/op | MB/s |")
        L.append("|---|---|---|")
        for m in mic:
            L.append("| %s | %.2f | %s |" % (m["bench"], m["us_per_op"],
                                             "%.0f" % m["mb_per_s"] if m.get("mb_per_s") else ""))
        L.append("")
    if cold:
        L.append("## Cold cache (20 ± 2 ms per DNS query, fresh daemon per message)\n")
        L.append("| message | kind | chain (round trips) | bound ms | scan ms | DNS queries |")
        L.append("|---|---|---|---|---|---|")
        for c0 in cold:
            L.append("| %s | %s | %d | %.0f | %.1f | %d |" % (
                c0["name"], c0["kind"], c0["chain"], c0["bound_ms"], c0["ms"], c0["queries"]))
        for c0 in cold:
            if c0.get("query_log"):
                L.append("Queries the resolver sent for %s (%s), time from the first "
                         "(qtype numbers: 1 A, 2 NS, 16 TXT, 28 AAAA, 43 DS, 48 DNSKEY):\n"
                         % (c0["name"], c0["kind"]))
                L.append("```\n" + "\n".join(c0["query_log"]) + "\n```")
        L.append("")
    if res.get("idle"):
        L.append("## Idle connections\n")
        for i in res["idle"]:
            L.append("- %d connections: daemon RSS %.1f MB (%.1f MB before they opened), %d errors"
                     % (i["connections"], i["rss_kb"] / 1024, i["rss_before_kb"] / 1024, i["errors"]))
        L.append("")
    prof = res.get("profile")
    if prof:
        L.append("## Profile of the warm path (perf, c=32)\n")
        L.append("By object: " + ", ".join("%s %.1f%%" % (d, p) for p, d in prof["dsos"]) + "\n")
        L.append("| % | object | symbol |")
        L.append("|---|---|---|")
        for p, d, s in prof["symbols"]:
            L.append("| %.1f | %s | %s |" % (p, d, s))
        L.append("")
    dis = res.get("disagreements")
    if dis is not None:
        L.append("## alignd vs rspamd verdicts\n")
        L.append("%d messages compared, %d disagreements.\n" % (res.get("compared", 0), len(dis)))
        acc = res.get("agreement_with_intent")
        if acc:
            L.append("Results equal to what the corpus generator intended (per RFC): " +
                     "; ".join("%s spf %d, dkim %d, dmarc %d" % (e, v["spf"], v["dkim"], v["dmarc"])
                               for e, v in acc.items()) + "\n")
        for d in dis[:60]:
            L.append("- %s" % d)
        L.append("")
    if plots:
        L.append("## Plots\n")
        for p in plots:
            L.append("![%s](%s)" % (p, p))
        L.append("")
    text = "\n".join(L)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "results.json")
    with open(path) as f:
        write(json.load(f), os.path.dirname(os.path.abspath(path)))
