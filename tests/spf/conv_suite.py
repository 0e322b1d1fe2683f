#!/usr/bin/python3
"""Turns the OpenSPF RFC 7208 test suite (YAML) into the plain line format
that tests/spf/test_suite.c reads. Every string field is hex-encoded with an
'x' prefix so that spaces, NULs and non-ASCII bytes survive.

  S x<description>
  Z x<name> A|AAAA <address>
  Z x<name> MX <pref> x<exchange>
  Z x<name> PTR|CNAME x<target>
  Z x<name> TXT x<part>[,x<part>...]      (no parts: "-")
  Z x<name> SPF99                          (the name exists: served type 99)
  Z x<name> TIMEOUT <TYPE>[,<TYPE>...]     (these types time out)
  T x<test> <host> x<mailfrom> x<helo> <result>[,<result>...] x<explanation>|-

Conventions of the suite (see the README next to it): an SPF record is
also served as TXT unless the name has its own TXT entry ("TXT: NONE" only
blocks that copy); TIMEOUT applies to every type with no record before it.
"""
import sys

import yaml

TYPES = ["A", "AAAA", "MX", "PTR", "TXT", "CNAME"]


def raw(s):
    if isinstance(s, bytes):
        return s
    s = str(s)
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def hx(s):
    return "x" + raw(s).hex()


def parts(v):
    if isinstance(v, list):
        return v
    return [v]


def convert(docs, out):
    ntests = 0
    for doc in docs:
        if not doc:
            continue
        out.write("S %s\n" % hx(doc.get("description", "")))
        zone = doc.get("zonedata") or {}
        for name, recs in zone.items():
            recs = recs or []
            own_txt = any(isinstance(r, dict) and "TXT" in r for r in recs)
            listed = set()
            for r in recs:
                if r == "TIMEOUT":
                    left = [t for t in TYPES if t not in listed]
                    out.write("Z %s TIMEOUT %s\n" % (hx(name), ",".join(left)))
                    continue
                if not isinstance(r, dict) or len(r) != 1:
                    raise SystemExit("unexpected record %r at %s" % (r, name))
                (typ, val), = r.items()
                if typ in ("A", "AAAA"):
                    out.write("Z %s %s %s\n" % (hx(name), typ, val))
                elif typ == "MX":
                    out.write("Z %s MX %d %s\n" % (hx(name), int(val[0]), hx(val[1])))
                elif typ in ("PTR", "CNAME"):
                    out.write("Z %s %s %s\n" % (hx(name), typ, hx(val)))
                elif typ == "TXT":
                    if val == "NONE":
                        continue
                    p = parts(val)
                    out.write("Z %s TXT %s\n" % (hx(name), ",".join(hx(x) for x in p) or "-"))
                elif typ == "SPF":
                    out.write("Z %s SPF99\n" % hx(name))
                    if not own_txt:
                        p = parts(val)
                        out.write("Z %s TXT %s\n" % (hx(name), ",".join(hx(x) for x in p) or "-"))
                        listed.add("TXT")
                else:
                    raise SystemExit("unknown record type %s at %s" % (typ, name))
                listed.add(typ)
        for tname, t in (doc.get("tests") or {}).items():
            res = t["result"]
            res = res if isinstance(res, list) else [res]
            exp = t.get("explanation")
            out.write("T %s %s %s %s %s %s\n" % (
                hx(tname), t["host"], hx(t.get("mailfrom", "")), hx(t.get("helo", "")),
                ",".join(res), hx(exp) if exp is not None else "-"))
            ntests += 1
    return ntests


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: conv_suite.py SUITE.yml OUT")
    try:
        with open(sys.argv[1], "rb") as f:
            docs = list(yaml.safe_load_all(f))
    except OSError as e:
        raise SystemExit("SPF conformance suite missing: %s" % e)
    with open(sys.argv[2], "w") as out:
        n = convert(docs, out)
    if n == 0:
        raise SystemExit("no tests found in %s" % sys.argv[1])


if __name__ == "__main__":
    main()
