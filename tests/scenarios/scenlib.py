"""Building blocks of the scenario table: messages, DKIM signing
instructions, transformations applied after signing, and the parsed reply.

Messages are signed by python3-dkim with the private keys the test DNS
world generated (dkim/<domain>/<selector>.pem or .ed25519), never by
alignd's own code.
"""
import os
import re

import dkim
import dkim.canonicalization
import dkim.crypto

HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL_KEYS = {
    # selector weak of aligned.example: a 768-bit key whose public half is
    # published in world.yaml (the world generator makes no keys that small)
    ("aligned.example", "weak"): os.path.join(HERE, "keys", "weak768.pem"),
}

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def message(frm="Alice <alice@aligned.example>", to="bob@rcpt.example",
            subject="Quarterly report", body=None, headers=(), msgid=None,
            date="Tue, 04 Mar 2025 10:00:00 +0000"):
    """An RFC 5322 message with CRLF line ends. frm may be a list (one
    From: field per item) or None (no From: at all)."""
    lines = []
    if frm is not None:
        for f in (frm if isinstance(frm, list) else [frm]):
            lines.append(b"From: " + _b(f))
    lines.append(b"To: " + _b(to))
    lines.append(b"Subject: " + _b(subject))
    lines.append(b"Date: " + _b(date))
    lines.append(b"Message-ID: " + _b(msgid or "<scenario.%d@rcpt.example>" % id(lines)))
    for h in headers:
        lines.append(_b(h))
    if body is None:
        body = b"Hello,\r\n\r\nthe numbers are attached.\r\n\r\n-- \r\nAlice\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + _b(body)


def _b(s):
    return s if isinstance(s, bytes) else s.encode("utf-8")


def sig(d, s, a="rsa-sha256", key=None, length=False, headers=None,
        canon=(b"relaxed", b"relaxed")):
    """One signing instruction: domain d=, selector s=, algorithm a=.
    key=(domain, selector) signs with another key than the one published
    at s._domainkey.d (a signature that cannot verify)."""
    return {"d": d, "s": s, "a": a, "key": key or (d, s), "length": length,
            "headers": headers, "canon": canon}


def load_key(world_dir, domain, selector):
    if (domain, selector) in LOCAL_KEYS:
        with open(LOCAL_KEYS[(domain, selector)], "rb") as f:
            return f.read()
    base = os.path.join(world_dir, "dkim", domain, selector)
    for ext in (".pem", ".ed25519"):
        if os.path.exists(base + ext):
            with open(base + ext, "rb") as f:
                return f.read().strip() if ext == ".ed25519" else f.read()
    raise KeyError("no private key for %s/%s in the world" % (domain, selector))


def sign(msg, instr, world_dir):
    """Prepends one DKIM-Signature per instruction, in order (the last
    one ends up on top)."""
    for i in instr:
        key = load_key(world_dir, *i["key"])
        h = i["headers"] or SIGNED_HEADERS
        linesep = b"\r\n"
        header = dkim.sign(msg, i["s"].encode(), i["d"].encode(), key,
                           signature_algorithm=i["a"].encode(),
                           include_headers=list(h), length=i["length"],
                           canonicalize=i["canon"], linesep=linesep)
        msg = header + msg
    return msg


# ---- transformations applied after signing (what relays do) ----

def to_lf(msg):
    return msg.replace(b"\r\n", b"\n")


def add_top(*headers):
    def f(msg):
        return b"".join(_b(h) + b"\r\n" for h in headers) + msg
    f.__name__ = "add_top"
    return f


def prefix_subject(prefix):
    def f(msg):
        return msg.replace(b"\r\nSubject: ", b"\r\nSubject: " + _b(prefix), 1)
    f.__name__ = "prefix_subject"
    return f


def append_body(text):
    def f(msg):
        return msg + _b(text)
    f.__name__ = "append_body"
    return f


def replace_body(old, new):
    def f(msg):
        head, sep, body = msg.partition(b"\r\n\r\n")
        assert _b(old) in body, "replace_body: %r not in the body" % old
        return head + sep + body.replace(_b(old), _b(new), 1)
    f.__name__ = "replace_body"
    return f


# ---- ARC (RFC 8617): sealing hops ----
#
# arc_seal is an honest intermediary: its MTA writes an
# Authentication-Results field with what it saw, then python3-dkim's
# arc_sign turns that into the next ARC set (AAR, AMS, AS), cv= taken
# from the arc= result it recorded. arc_set builds a set with any instance
# and cv= (what arc_sign refuses to make: forged chains) from the same
# primitives a verifier checks: relaxed canonicalization (RFC 6376 3.4.2
# and 3.4.4) and RSASSA-PKCS1-v1_5 with SHA-256 (python3-dkim's crypto).
# Each forged shape has a control in the table made with the same helper
# and a correct value, so a failure means the forged detail, not the helper.
# Both take the world directory (the sealers' private keys) as a second
# argument: build_message passes it to steps marked needs_world.

ARC_TIME = 1741082400    # 2025-03-04 10:00:00 UTC, shortly after the Date:


def arc_seal(d, results, s="arc", authserv=None, keep_ar=True):
    """One sealing hop of domain d: A-R "authserv; results" (results
    with arc=pass or arc=fail for a hop after the first), then arc_sign.
    keep_ar=False drops that A-R field afterwards (RFC 8601 5 lets the
    next hop delete it; the AMS never covers it)."""
    srv = authserv or "mx." + d

    def f(msg, world_dir):
        key = load_key(world_dir, d, s)
        m = b"Authentication-Results: " + _b(srv) + b"; " + _b(results) + b"\r\n" + msg
        hdrs = dkim.arc_sign(m, s.encode(), d.encode(), key, srv.encode(), timestamp=ARC_TIME)
        assert hdrs, "arc_sign made no ARC set for %s" % d
        out = b"".join(hdrs) + m
        if not keep_ar:
            out = out.replace(b"Authentication-Results: " + _b(srv) + b"; " + _b(results) + b"\r\n",
                              b"", 1)
        return out
    f.__name__ = "arc_seal(%s)" % d
    f.needs_world = True
    return f


def _split(msg):
    """(fields, body): fields as raw bytes with their folding and CRLF."""
    head, _, body = msg.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return [x + b"\r\n" for x in fields], body


def _name(field):
    return field.split(b":", 1)[0].strip().lower()


def _relaxed(field):
    """RFC 6376 3.4.2 relaxed header canonicalization of one raw field."""
    name, _, value = field.partition(b":")
    value = re.sub(rb"\r\n(?=[ \t])", b"", value)
    value = re.sub(rb"[ \t]+", b" ", value).strip(b" \t\r\n")
    return name.strip().lower() + b":" + value + b"\r\n"


def _instance(field):
    m = re.search(rb"(?:^|[;:\s])i\s*=\s*(\d+)", field.split(b":", 1)[1])
    return int(m.group(1)) if m else 0


def _sign(world_dir, d, s, data):
    import hashlib
    pk = dkim.crypto.parse_pem_private_key(load_key(world_dir, d, s))
    import base64
    return base64.b64encode(dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), pk))


ARC_NAMES = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")


def arc_set(d, instance, cv, results="spf=pass smtp.mailfrom=aligned.example",
            s="arc", authserv=None, ams_headers=("from", "to", "subject", "date", "message-id")):
    """An ARC set built by hand: AAR "i=N; authserv; results", an AMS over
    ams_headers and the body, and an AS with the given cv= over every ARC
    field already in the message (ordered by instance, oldest first, each
    set as AAR, AMS, AS; RFC 8617 5.1.1) and the new AAR and AMS."""
    srv = authserv or "mx." + d

    def f(msg, world_dir):
        import base64
        import hashlib
        fields, body = _split(msg)
        canon_body = dkim.canonicalization.CanonicalizationPolicy.from_c_value(
            b"relaxed/relaxed").canonicalize_body(body)
        bh = base64.b64encode(hashlib.sha256(canon_body).digest())
        aar = b"ARC-Authentication-Results: i=%d; %s; %s\r\n" % (instance, _b(srv), _b(results))
        # AMS: like a DKIM signature; h= names select fields bottom-up
        ams = (b"ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s;"
               b" t=%d; h=%s; bh=%s; b=" % (instance, _b(d), _b(s), ARC_TIME,
                                          b":".join(_b(h) for h in ams_headers), bh))
        used = {}
        data = b""
        for h in ams_headers:
            h = _b(h).lower()
            same = [x for x in fields if _name(x) == h]
            k = used.get(h, 0)
            if k < len(same):
                data += _relaxed(same[len(same) - 1 - k])
                used[h] = k + 1
        data += _relaxed(ams + b"\r\n")[:-2]
        ams += _sign(world_dir, d, s, data) + b"\r\n"
        # AS: all sets, oldest instance first (stable: lower fields first
        # for equal instances), then the new AAR, AMS and this seal
        old = [x for x in fields if _name(x) in ARC_NAMES]
        order = {b"arc-authentication-results": 0, b"arc-message-signature": 1, b"arc-seal": 2}
        old = sorted(reversed(old), key=lambda x: (_instance(x), order[_name(x)]))
        seal = (b"ARC-Seal: i=%d; a=rsa-sha256; t=%d; cv=%s; d=%s; s=%s; b="
                % (instance, ARC_TIME, _b(cv), _b(d), _b(s)))
        data = b"".join(_relaxed(x) for x in old) + _relaxed(aar) + _relaxed(ams)
        data += _relaxed(seal + b"\r\n")[:-2]
        seal += _sign(world_dir, d, s, data) + b"\r\n"
        return seal + ams + aar + msg
    f.__name__ = "arc_set(%s i=%d cv=%s)" % (d, instance, cv)
    f.needs_world = True
    return f


def arc_edit(name, instance, old, new):
    """Replaces old by new in the ARC field `name` of `instance` (after its
    signature was made: the signature over it no longer verifies)."""
    def f(msg):
        fields, body = _split(msg)
        hit = [k for k, x in enumerate(fields)
               if _name(x) == _b(name).lower() and _instance(x) == instance]
        assert len(hit) == 1, "arc_edit: %d %s i=%d fields" % (len(hit), name, instance)
        assert _b(old) in fields[hit[0]], "arc_edit: %r not in %r" % (old, fields[hit[0]][:80])
        fields[hit[0]] = fields[hit[0]].replace(_b(old), _b(new), 1)
        return b"".join(fields) + b"\r\n" + body
    f.__name__ = "arc_edit"
    return f


def arc_flip_b(name, instance):
    """Changes one character in the middle of the b= value of an ARC field."""
    def f(msg):
        fields, body = _split(msg)
        hit = [k for k, x in enumerate(fields)
               if _name(x) == _b(name).lower() and _instance(x) == instance]
        assert len(hit) == 1, "arc_flip_b: %d %s i=%d fields" % (len(hit), name, instance)
        x = fields[hit[0]]
        m = re.search(rb"[;\s]b=", x)
        pos = m.end() + 20
        while x[pos:pos + 1] in (b"\r", b"\n", b" ", b"\t"):
            pos += 1
        c = x[pos:pos + 1]
        fields[hit[0]] = x[:pos] + (b"A" if c != b"A" else b"B") + x[pos + 1:]
        return b"".join(fields) + b"\r\n" + body
    f.__name__ = "arc_flip_b"
    return f


# ---- replies ----

TRACE_RE = re.compile(r"^\+([0-9.]+)ms ([A-Za-z0-9_-]+): (.*)$")


class Result:
    """A scan reply in one shape, whether it came as text or msgpack."""

    def __init__(self):
        self.status = None
        self.action = None
        self.score = None
        self.smtp = None
        self.symbols = []        # (name, score, detail)
        self.ar = None
        self.add_headers = []
        self.trace = []          # (ms, area, text)
        self.raw = b""
        self.seconds = 0.0

    @classmethod
    def from_text(cls, raw):
        """The daemon's text reply: status line, CRLF fields, blank line."""
        r = cls()
        r.raw = raw
        lines = raw.decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split(" ", 2)
        r.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        end = lines.index("") if "" in lines else len(lines)
        r._fields(lines[1:end])
        return r

    @classmethod
    def from_alignc(cls, out):
        """alignc's printout: "Action: ..." and the other fields, LF;
        "Error: CODE text" when the daemon answered an error."""
        r = cls()
        r.raw = out
        lines = [x for x in out.decode("utf-8", "replace").split("\n") if x]
        if lines and lines[0].startswith("Error: "):
            r.status = int(lines[0].split()[1])
        elif any(x.startswith("Action: ") for x in lines):
            r.status = 200
        r._fields(lines)
        return r

    def _fields(self, lines):
        r = self
        for line in lines:
            name, _, value = line.partition(": ")
            ln = name.lower()
            if ln == "action":
                r.action = value
            elif ln == "score":
                r.score = float(value)
            elif ln == "smtp-reply":
                r.smtp = value
            elif ln == "symbol":
                p = value.split(" ", 2)
                r.symbols.append((p[0], float(p[1]), p[2] if len(p) > 2 else ""))
            elif ln == "authentication-results":
                r.ar = value
            elif ln == "add-header":
                r.add_headers.append(value)
            elif ln == "trace":
                m = TRACE_RE.match(value)
                if m:
                    r.trace.append((float(m.group(1)), m.group(2), m.group(3)))
                else:
                    r.trace.append((None, "?", value))

    @classmethod
    def from_msgpack(cls, raw):
        import msgpack
        r = cls()
        r.raw = raw
        head, _, body = raw.partition(b"\r\n\r\n")
        hl = head.decode("utf-8", "replace").split("\r\n")
        assert "content-type: application/msgpack" in [x.lower() for x in hl], \
            "no msgpack Content-Type in %r" % hl
        m = msgpack.unpackb(body, raw=False)
        r.status = m.get("status")
        r.action = m.get("action")
        r.score = m.get("score")
        r.smtp = m.get("smtp_reply")
        r.symbols = [(s["name"], s["score"], s.get("detail", "")) for s in m.get("symbols", [])]
        r.ar = m.get("authentication_results")
        r.add_headers = list(m.get("add_headers") or [])
        r.trace = [(t["t_us"] / 1000.0, t["area"], t["text"]) for t in m.get("trace") or []]
        r.msgpack = m
        return r

    def symbol_names(self):
        return [s[0] for s in self.symbols]

    def has_symbol(self, spec):
        """spec: "NAME" or "NAME detail-substring"."""
        name, _, want = spec.partition(" ")
        return any(n == name and want in d for n, _, d in self.symbols)

    def trace_text(self):
        return "\n".join("+%.3fms %s: %s" % (t if t is not None else -1, a, x)
                         for t, a, x in self.trace)

    def brief(self):
        return "action=%s smtp=%r symbols=%s ar=%r" % (
            self.action, self.smtp,
            ",".join("%s(%s)" % (n, d) for n, _, d in self.symbols), self.ar)
