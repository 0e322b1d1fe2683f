#!/usr/bin/python3
"""Generates the test DNS world from tests/dnsworld/world.yaml.

    mkworld.py OUTDIR [--world world.yaml] [--nsd-port N] [--responder-port N]

OUTDIR receives (port-independent, cacheable):
    zones/<zone>.zone     zone files as served (signed where asked)
    zones/<zone>.unsigned the same data before signing
    keys/<zone>/K*        zone signing keys (ldns-keygen)
    anchors.keys          DNSKEY trust anchors of the signed zones
    dkim/<domain>/<sel>.pem | .ed25519   DKIM private keys
    world.json            the expanded description, for tests
and, from write_configs() (port-dependent; the CLI writes them with the
ports given, for inspection):
    nsd.conf, unbound.conf

Every signed zone is its own island of trust (its DNSKEY is in
anchors.keys); "." is served unsigned by nsd so that names outside the world
get a quick NXDOMAIN instead of leaving the machine. Use the unbound.conf
with no other trust anchor (alignd: trust_anchor_file = "").
"""

import argparse
import base64
import ipaddress
import json
import os
import re
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WORLD = os.path.join(HERE, "world.yaml")

SIGN_MODES = ("yes", "no", "tampered", "expired")
# Validity window of the "expired" zone: long past, fixed.
EXPIRED_INCEPTION = "20000101000000"
EXPIRED_EXPIRATION = "20000201000000"


class WorldError(Exception):
    pass


def fqdn(name):
    return name if name.endswith(".") else name + "."


def load(path=DEFAULT_WORLD):
    with open(path, encoding="utf-8") as f:
        desc = yaml.safe_load(f)
    if not isinstance(desc, dict) or not isinstance(desc.get("zones"), dict):
        raise WorldError("%s: no zones" % path)
    return desc


def txt_escape(chunk):
    out = []
    for b in chunk:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    return '"' + "".join(out) + '"'


def txt_rdata(strings):
    """Zone-file text of one TXT record made of these character-strings."""
    parts = []
    for s in strings:
        data = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        if len(data) > 255:
            raise WorldError("TXT string longer than 255 bytes: %r" % s)
        parts.append(txt_escape(data))
    return " ".join(parts)


def split_txt(text):
    """One long text as 255-byte character-strings (RFC 7208 3.3)."""
    data = text.encode("utf-8")
    if not data:
        return [b""]
    return [data[i:i + 255] for i in range(0, len(data), 255)]


def entry_to_rr(entry):
    """(type, rdata-text) of one YAML record entry."""
    if isinstance(entry, dict):
        if "TXT" not in entry:
            raise WorldError("record entry without TXT: %r" % entry)
        val = entry["TXT"]
        if isinstance(val, list):
            return "TXT", txt_rdata(val)
        rep = int(entry.get("repeat", 1))
        return "TXT", txt_rdata(split_txt(str(val) * rep))
    if not isinstance(entry, str) or " " not in entry.strip():
        raise WorldError("bad record entry: %r" % (entry,))
    rtype, rest = entry.strip().split(None, 1)
    rtype = rtype.upper()
    if rtype == "TXT":
        return "TXT", txt_rdata(split_txt(rest))
    return rtype, rest


def reverse_name(ip):
    return ipaddress.ip_address(ip).reverse_pointer + "."


def zone_for(name, zones):
    """The longest declared zone containing name (both fully qualified)."""
    best = None
    for z in zones:
        zf = fqdn(z).lower()
        if name.lower() == zf or name.lower().endswith("." + zf):
            if best is None or len(zf) > len(fqdn(best)):
                best = z
    return best


def gen_dkim_key(alg, path_base):
    """Writes the private key; returns (path, public TXT text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if alg in ("rsa-1024", "rsa-2048"):
        bits = int(alg.split("-")[1])
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        pub = key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)
        path = path_base + ".pem"
        with open(path, "wb") as f:
            f.write(pem)
        return path, "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
    if alg == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw,
                                 serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        pub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        path = path_base + ".ed25519"
        with open(path, "wb") as f:
            f.write(base64.b64encode(seed) + b"\n")
        # RFC 8463 4.2: p= is the base64 of the raw 32-byte public key
        return path, ("v=DKIM1; k=ed25519; p="
                      + base64.b64encode(pub).decode())
    raise WorldError("unknown DKIM key type %r" % alg)


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise WorldError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def tamper_signed(text):
    """Corrupts every RRSIG except those over DNSKEY: the keys validate
    against the anchor, every other answer (data or denial) is bogus."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) > 12 and f[3] == "RRSIG" and f[4] != "DNSKEY":
            sig = list(f[-1])
            i = len(sig) // 2
            sig[i] = "A" if sig[i] != "A" else "B"
            f[-1] = "".join(sig)
            line = "\t".join(f)
        out.append(line)
    return "\n".join(out) + "\n"


def build_zone_records(desc):
    """{zone: [(owner-fqdn, ttl, type, rdata)]} including apex SOA/NS."""
    zones = desc["zones"]
    dttl = int((desc.get("defaults") or {}).get("ttl", 300))
    recs = {}
    all_zones = dict(zones)
    all_zones.setdefault(".", {"sign": "no"})
    for zname, z in all_zones.items():
        z = z or {}
        origin = fqdn(zname) if zname != "." else "."
        ttl = int(z.get("ttl", dttl))
        ns = "ns." + (origin if origin != "." else "")
        ns = ns if ns.endswith(".") else ns + "."
        hm = "hostmaster." + (origin if origin != "." else "")
        hm = hm if hm.endswith(".") else hm + "."
        rr = [(origin, ttl, "SOA", "%s %s 1 3600 600 86400 %d" % (ns, hm, ttl)),
              (origin, ttl, "NS", ns),
              (ns, ttl, "A", "127.0.0.1")]

        def owner(rel, _origin=origin):
            if rel in ("@", ""):
                return _origin
            return rel + "." + _origin if _origin != "." else rel + "."

        if z.get("spf") is not None:
            rr.append((origin, ttl, "TXT", txt_rdata(split_txt(z["spf"]))))
        if z.get("dmarc") is not None:
            rr.append((owner("_dmarc"), ttl, "TXT",
                       txt_rdata(split_txt(z["dmarc"]))))
        for rel, entries in (z.get("records") or {}).items():
            for e in entries or []:
                t, rd = entry_to_rr(e)
                rr.append((owner(str(rel)), ttl, t, rd))
        recs[zname] = rr
    for ip, target in (desc.get("ptr") or {}).items():
        rname = reverse_name(str(ip))
        z = zone_for(rname, zones)
        if z is None:
            raise WorldError("no reverse zone declared for %s" % ip)
        ttl = int((zones[z] or {}).get("ttl", dttl))
        recs[z].append((rname, ttl, "PTR", fqdn(target)))
    return recs


def zone_text(origin, rr):
    lines = ["$ORIGIN %s" % origin]
    for o, ttl, t, rd in rr:
        lines.append("%s\t%d\tIN\t%s\t%s" % (o, ttl, t, rd))
    return "\n".join(lines) + "\n"


def generate(outdir, world=DEFAULT_WORLD):
    desc = load(world)
    zones = desc["zones"]
    outdir = os.path.abspath(outdir)
    for sub in ("zones", "keys", "dkim"):
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)

    info = {"zones": {}, "dkim": [], "ptr": {}}
    # DKIM keys first: their TXT records join the zone data.
    extra = {}
    for zname, z in zones.items():
        for sel, alg in ((z or {}).get("dkim") or {}).items():
            ddir = os.path.join(outdir, "dkim", zname)
            os.makedirs(ddir, exist_ok=True)
            path, txt = gen_dkim_key(str(alg), os.path.join(ddir, str(sel)))
            extra.setdefault(zname, []).append(
                ("%s._domainkey.%s" % (sel, fqdn(zname)), txt))
            info["dkim"].append({
                "domain": zname, "selector": str(sel), "alg": str(alg),
                "private_key": os.path.relpath(path, outdir), "txt": txt})

    recs = build_zone_records(desc)
    for zname, items in extra.items():
        ttl = recs[zname][0][1]
        for owner, txt in items:
            recs[zname].append((owner, ttl, "TXT", txt_rdata(split_txt(txt))))

    anchors = []
    for zname, rr in recs.items():
        z = zones.get(zname) or {}
        sign = str(z.get("sign", "yes" if zname != "." else "no")).lower()
        if sign in ("true", "false"):
            sign = "yes" if sign == "true" else "no"
        if sign not in SIGN_MODES:
            raise WorldError("%s: sign must be one of %s" % (zname, SIGN_MODES))
        server = str(z.get("server", "nsd"))
        if not (server in ("nsd", "silent", "servfail", "refused", "switch")
                or re.fullmatch(r"delay:\d+", server)):
            raise WorldError("%s: bad server %r" % (zname, server))
        origin = fqdn(zname) if zname != "." else "."
        fname = "root" if zname == "." else zname
        src = os.path.join(outdir, "zones", fname + ".unsigned")
        dst = os.path.join(outdir, "zones", fname + ".zone")
        with open(src, "w", encoding="utf-8") as f:
            f.write(zone_text(origin, rr))
        if sign == "no":
            with open(src, encoding="utf-8") as f, \
                    open(dst, "w", encoding="utf-8") as g:
                g.write(f.read())
        else:
            kdir = os.path.join(outdir, "keys", fname)
            os.makedirs(kdir, exist_ok=True)
            # One ECDSA P-256 key with the SEP flag signs everything.
            base = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k",
                        "-r", "/dev/urandom", origin], cwd=kdir).strip()
            cmd = ["ldns-signzone", "-f", dst, "-o", origin]
            if sign == "expired":
                cmd += ["-i", EXPIRED_INCEPTION, "-e", EXPIRED_EXPIRATION]
            run(cmd + [src, os.path.join(kdir, base)])
            if sign == "tampered":
                with open(dst, encoding="utf-8") as f:
                    text = f.read()
                with open(dst, "w", encoding="utf-8") as f:
                    f.write(tamper_signed(text))
            with open(os.path.join(kdir, base + ".key"), encoding="utf-8") as f:
                anchors.append(f.read().strip())
        info["zones"][zname] = {
            "origin": origin, "sign": sign, "server": server,
            "file": os.path.relpath(dst, outdir),
            "secure": sign == "yes",
            "bogus": sign in ("tampered", "expired"),
        }
    for ip, target in (desc.get("ptr") or {}).items():
        info["ptr"][str(ip)] = fqdn(target)
    with open(os.path.join(outdir, "anchors.keys"), "w", encoding="utf-8") as f:
        f.write("\n".join(anchors) + "\n")
    with open(os.path.join(outdir, "world.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return info


def responder_zones(info):
    """Zones whose stub points at a Python responder: {zone: server}."""
    return {z: v["server"] for z, v in sorted(info["zones"].items())
            if v["server"] != "nsd"}


def write_configs(outdir, rundir, nsd_port, responder_ports):
    """nsd.conf and unbound.conf into rundir; responder_ports maps each zone
    of responder_zones() to its loopback port. Returns their paths."""
    outdir = os.path.abspath(outdir)
    rundir = os.path.abspath(rundir)
    with open(os.path.join(outdir, "world.json"), encoding="utf-8") as f:
        info = json.load(f)

    nsd = [
        "server:",
        "    ip-address: 127.0.0.1",
        "    port: %d" % nsd_port,
        "    do-ip6: no",
        "    server-count: 1",
        '    username: ""',
        '    chroot: ""',
        '    database: ""',
        '    zonelistfile: "%s/zone.list"' % rundir,
        '    xfrdfile: "%s/xfrd.state"' % rundir,
        '    xfrdir: "%s"' % rundir,
        '    pidfile: "%s/nsd.pid"' % rundir,
        '    logfile: "%s/nsd.log"' % rundir,
        "    zonefiles-write: 0",
        "    verbosity: 1",
        "    hide-version: yes",
        "    tcp-count: 200",
        "remote-control:",
        "    control-enable: no",
    ]
    for zname, z in sorted(info["zones"].items()):
        if z["server"] in ("silent", "servfail", "refused"):
            continue
        nsd += ["zone:", '    name: "%s"' % z["origin"],
                '    zonefile: "%s"' % os.path.join(outdir, z["file"])]

    ub = [
        "server:",
        "    do-not-query-localhost: no",
        '    trust-anchor-file: "%s"' % os.path.join(outdir, "anchors.keys"),
        # Keeps bogus reasons detailed in why_bogus.
        "    val-log-level: 2",
    ]
    for zname, z in sorted(info["zones"].items()):
        if zname == ".":
            continue
        # Several of these names are special-use zones that libunbound
        # answers locally by default (reverse zones of the documentation
        # prefixes): transparent lets queries through to the stub.
        ub.append('    local-zone: "%s" transparent' % z["origin"])
        if not z["secure"] and not z["bogus"]:
            ub.append('    domain-insecure: "%s"' % z["origin"])
    for zname, z in sorted(info["zones"].items()):
        port = responder_ports.get(zname, nsd_port) \
            if z["server"] != "nsd" else nsd_port
        ub += ["stub-zone:", '    name: "%s"' % z["origin"],
               "    stub-addr: 127.0.0.1@%d" % port]
    nsd_conf = os.path.join(rundir, "nsd.conf")
    ub_conf = os.path.join(rundir, "unbound.conf")
    with open(nsd_conf, "w", encoding="utf-8") as f:
        f.write("\n".join(nsd) + "\n")
    with open(ub_conf, "w", encoding="utf-8") as f:
        f.write("\n".join(ub) + "\n")
    return nsd_conf, ub_conf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--world", default=DEFAULT_WORLD)
    ap.add_argument("--nsd-port", type=int, default=53530)
    ap.add_argument("--responder-port", type=int, default=53540,
                    help="first port of the fault responders")
    a = ap.parse_args()
    try:
        info = generate(a.outdir, a.world)
        ports = {z: a.responder_port + i
                 for i, z in enumerate(responder_zones(info))}
        write_configs(a.outdir, a.outdir, a.nsd_port, ports)
    except WorldError as e:
        print("mkworld: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
