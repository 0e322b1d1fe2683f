#!/usr/bin/python3
"""The world generator is deterministic in structure: two generations give
the same files, names, types and non-key record data (only keys and
signatures differ); signed zones verify, broken ones do not; every DKIM
private key matches its published record (signed and verified with
python3-dkim)."""

import os
import re
import subprocess
import sys
import tempfile

import dkim
import dns.rdatatype
import dns.zone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkworld  # noqa: E402

RANDOM_TYPES = {"DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"}
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def files_of(d):
    out = set()
    for root, _, names in os.walk(d):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), d)
            out.add(re.sub(r"\+\d{3}\+\d+", "+ALG+ID", rel))
    return out


def zone_shape(path, origin):
    z = dns.zone.from_file(path, origin=origin, relativize=False,
                           check_origin=True)
    shape = set()
    for name, node in z.nodes.items():
        for rds in node.rdatasets:
            t = dns.rdatatype.to_text(rds.rdtype)
            if t in RANDOM_TYPES or "_domainkey" in str(name):
                shape.add((str(name), t, None))
            else:
                for rd in rds:
                    shape.add((str(name), t, rd.to_text()))
    return z, shape


def shape_of(d, info):
    out = {}
    for zname, z in info["zones"].items():
        zone, shape = zone_shape(os.path.join(d, z["file"]), z["origin"])
        out[zname] = shape
        for name, node in zone.nodes.items():
            for rds in node.rdatasets:
                if rds.rdtype == dns.rdatatype.TXT:
                    for rd in rds:
                        check(all(len(s) <= 255 for s in rd.strings),
                              "%s: TXT string over 255" % name)
    return out


def verify_dkim(d, info):
    keys = {"%s._domainkey.%s." % (k["selector"], k["domain"]): k["txt"]
            for k in info["dkim"]}

    def dnsfunc(name, timeout=5):
        return keys.get(name.decode() if isinstance(name, bytes) else name,
                        "").encode()

    msg = (b"From: a@example.com\r\nTo: b@example.net\r\n"
           b"Subject: world\r\n\r\nbody\r\n")
    for k in info["dkim"]:
        with open(os.path.join(d, k["private_key"]), "rb") as f:
            priv = f.read()
        alg = b"ed25519-sha256" if k["alg"] == "ed25519" else b"rsa-sha256"
        sig = dkim.sign(msg, k["selector"].encode(), k["domain"].encode(),
                        priv.strip() if k["alg"] == "ed25519" else priv,
                        signature_algorithm=alg,
                        include_headers=[b"from", b"to", b"subject"])
        ok = dkim.verify(sig + msg, dnsfunc=dnsfunc, minkey=1024)
        check(ok, "DKIM %s/%s (%s) does not verify" %
              (k["domain"], k["selector"], k["alg"]))


def main():
    desc = mkworld.load()
    with tempfile.TemporaryDirectory() as a, \
            tempfile.TemporaryDirectory() as b:
        ia = mkworld.generate(a)
        ib = mkworld.generate(b)
        check(files_of(a) == files_of(b), "file sets differ: %s" %
              (files_of(a) ^ files_of(b)))
        check(set(ia["zones"]) == set(desc["zones"]) | {"."},
              "zones in world.json differ from world.yaml")
        check(ia["zones"] == ib["zones"], "zone table differs")
        sa, sb = shape_of(a, ia), shape_of(b, ib)
        for z in sa:
            check(sa[z] == sb[z], "zone %s differs: %s" %
                  (z, sorted(sa[z] ^ sb[z], key=str)[:6]))
        check([(k["domain"], k["selector"], k["alg"]) for k in ia["dkim"]] ==
              [(k["domain"], k["selector"], k["alg"]) for k in ib["dkim"]],
              "DKIM key list differs")

        # configs: same text apart from the output directory
        ports = {z: 40000 + i
                 for i, z in enumerate(mkworld.responder_zones(ia))}
        ca = mkworld.write_configs(a, a, 39999, ports)
        cb = mkworld.write_configs(b, b, 39999, ports)
        for pa, pb in zip(ca, cb):
            with open(pa) as fa, open(pb) as fb:
                check(fa.read().replace(a, "D") == fb.read().replace(b, "D"),
                      "%s differs" % os.path.basename(pa))

        # DNSSEC: good zones verify, broken ones do not
        for zname, z in ia["zones"].items():
            if z["sign"] == "no":
                continue
            r = subprocess.run(["ldns-verify-zone", os.path.join(a, z["file"])],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if z["sign"] == "yes":
                check(r.returncode == 0, "%s does not verify" % zname)
            else:
                check(r.returncode != 0, "%s (%s) verifies" %
                      (zname, z["sign"]))
        verify_dkim(a, ia)
        # PTRs land in the reverse zones
        check(("25.2.0.192.in-addr.arpa.", "PTR", "mail.example.com.")
              in sa["2.0.192.in-addr.arpa"], "IPv4 PTR missing")
        # a rejected description
        bad = os.path.join(a, "bad.yaml")
        with open(bad, "w") as f:
            f.write("zones:\n  x.example:\n    server: loud\n")
        try:
            mkworld.generate(os.path.join(a, "bad"), bad)
            check(False, "bad server mode accepted")
        except mkworld.WorldError:
            pass
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("world structure deterministic; %d zones, %d DKIM keys" %
          (len(ia["zones"]), len(ia["dkim"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
