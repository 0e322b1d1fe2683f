#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/.

Seeds come from the protocol contract, the unit tests' inputs and the
public conformance data beside the project (../shared/conformance, see
README.md for sources and licences). Each file is named by a hash of its
bytes, so running this again only adds what is new. Usage:
    tests/fuzz/mkseeds.py [SHARED_DIR]
"""
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
CONF = os.path.join(SHARED, "conformance")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    try:
        with open(os.path.join(CONF, *parts), "rb") as f:
            return f.read()
    except OSError:
        return None


# ---- messages ----
MSGS = [
    b"From: Joe <joe@example.com>\r\nTo: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n",
    b"From: a@b.example, \"Q, x\" <c@d.example>\nSubject: folded\n line\n\nbody",
    b"From: =?utf-8?q?J=C3=B6e?= <joe@xn--bcher-kva.example>\r\n\r\n",
    b"From: group: a@x.example, b@y.example;\r\nFrom: second@z.example\r\n\r\n",
    b"From: (comment (nested)) user@[192.0.2.1]\r\n\r\n",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=BBBB\r\n"
    b"DKIM-Signature: v=1; a=ed25519-sha256; d=EXAMPLE.com; s=sel; h=from; bh=; b=\r\n"
    b"DKIM-Signature: v=1; d=; s=x\r\nFrom: a@example.com\r\n\r\nx\r\n",
    b"X: 1\n\tcontinued\n no colon line\nY: 2\n\n",
    b" leading continuation\r\n\r\n",
    b"\r\nbody only",
]
rfc8463 = read("dkim", "rfc8463", "rfc8463-example.signed.msg")
if rfc8463:
    MSGS.append(rfc8463)
    MSGS.append(rfc8463.replace(b"\n", b"\r\n"))
corpus = os.path.join(CONF, "dkim", "mail-dkim", "corpus")
if os.path.isdir(corpus):
    for n in sorted(os.listdir(corpus))[:40]:
        with open(os.path.join(corpus, n), "rb") as f:
            MSGS.append(f.read())
am = os.path.join(CONF, "dkim", "authentication_milter", "messages")
if os.path.isdir(am):
    for n in sorted(os.listdir(am))[:20]:
        p = os.path.join(am, n)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                MSGS.append(f.read())
for m in MSGS:
    put("msg", m)

# ---- the signer: a message, then one byte (key, c=, x=) ----
SIGN_MSGS = [
    b"From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\nSubject: y\r\n\r\nbody \t \r\n\r\n",
    b"From: a@example.org\nSubject: folded\n\t line\n\nno final line end",
    b"From: a@example.org\r\nList-Id: <l.example>\r\nList-Post: <mailto:l@example>\r\n\r\n",
    b"From: a@example.org\r\nContent-Type: text/plain;\r\n charset=utf-8\r\n\r\n\xc3\xa4\r\n",
]
for i, m in enumerate(SIGN_MSGS + MSGS[:20]):
    put("sign", m + bytes([i % 16]))
    put("dkim_list", m)

# ---- the two DKIM engines: key record, NUL, message, chunk-size byte ----
KEYS = {}
for rel in (("dkim", "mail-dkim", "FAKE_DNS.dat"), ("dkim", "rfc8463", "keys.txt")):
    t = read(*rel) or b""
    for line in t.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith(b"#"):
            KEYS[parts[0].lower().rstrip(b".")] = parts[1].strip()
for line in (read("dkim", "authentication_milter", "zonefile") or b"").splitlines():
    if b"._domainkey." in line and b"TXT" in line:
        name = line.split()[0].lower().rstrip(b".")
        KEYS[name] = b"".join(re.findall(rb'"([^"]*)"', line))
for k, m in enumerate(MSGS):
    sig = re.search(rb"(?ims)^DKIM-Signature:(.*?)(?=^\S)", m)
    if not sig:
        continue
    v = re.sub(rb"\s+", b"", sig.group(1))
    d = re.search(rb"(?:^|;)d=([^;]*)", v)
    sel = re.search(rb"(?:^|;)s=([^;]*)", v)
    if not d or not sel:
        continue
    txt = KEYS.get(sel.group(1).lower() + b"._domainkey." + d.group(1).lower())
    if txt is None or txt in (b"NXDOMAIN",) or txt.startswith(b"~~"):
        continue
    put("dkim_engines", txt + b"\x00" + m + bytes([k % 67]))

# ---- DMARC records ----
DMARC = [
    "v=DMARC1; p=reject", "v=DMARC1; p=none; rua=mailto:r@example.com",
    "v=DMARC1; p=quarantine; sp=none; np=reject; psd=y; t=y",
    "v=DMARC1; p=reject; adkim=s; aspf=r; pct=50; fo=0:1:d:s; ri=86400",
    "v=DMARC1; p=bogus; rua=mailto:a@b.example,mailto:c@d.example!10m",
    "v=DMARC1; p=none; p=reject", "v=DMARC1;", "v=DMARC1 ; p = reject ;",
    "v=dmarc1; p=reject", "v=DMARC1; p=reject; ruf=https://x.example/r; zz=1",
]
zf = read("dkim", "authentication_milter", "zonefile")
if zf:
    for m in re.finditer(rb'"(v=DMARC1[^"]*)"', zf):
        DMARC.append(m.group(1).decode("latin-1"))
for r in DMARC:
    put("dmarc_record", r)

# ---- SPF records and macro strings ----
SPF = [
    "v=spf1 -all", "v=spf1 +a -mx ~ptr ?exists:%{i}.x.example include:a.example ip4:1.2.3.4 ip6:::1 all",
    "v=spf1 a/24//64 mx:foo.example//0 redirect=_spf.example.com exp=why.%{d}",
    "v=spf1 a:%{l1r-}.%{d2}.%{ir}.%{v}.%{h}._spf.%{d} -all",
    "%{s} %{o} %{d} %{i} %{p} %{v} %{h} %{c} %{r} %{t} %% %_ %-",
    "%{ir}.%{v}._spf.%{d2}", "%{lr-}.lp._spf.%{d2}", "%{L}%{S}.example.com",
    "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1",
]
yml = read("spf", "rfc7208-tests.yml")
if yml:
    for m in re.finditer(rb'(v=spf1[^"\n]*)', yml):
        SPF.append(m.group(1).decode("latin-1").rstrip("'"))
for r in SPF:
    put("spf", r)

# ---- protocol requests: data, then chunk sizes (0: the rest), then mode ----
def req(data, chunks=(0,), mode=0):
    if isinstance(data, str):
        data = data.encode()
    return data + bytes(reversed(list(chunks))) + bytes([mode])


REQS = [
    "PING\r\n\r\n", "STATS\n\n", "QUIT\r\n\r\n",
    "SCAN ALIGND/1\r\nClient-IP: 203.0.113.7\r\nHelo: mail.example.org\r\n"
    "Mail-From: bounce@example.org\r\nRcpt-To: user@example.net\r\nRcpt-To: u2@example.net\r\n"
    "Queue-Id: 4FzX1\r\nFormat: msgpack\r\nExplain: yes\r\nContent-Length: 12\r\n\r\n"
    "From: a@b\r\n\r\nPING\r\n\r\n",
    "SCAN ALIGND/1\nMail-From:\nContent-Length: 0\n\nPING\n\n",
    "SCAN ALIGND/1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "SCAN ALIGND/1\r\nContent-Length: 99999999999\r\n\r\n",
    "SCAN ALIGND/2\r\n\r\nPING\r\n\r\n", "NOPE\r\n\r\n", "\r\n\r\n",
    "SCAN ALIGND/1\r\nBad field\r\nContent-Length: 3\r\n\r\nabcPING\r\n\r\n",
    "SCAN ALIGND/1\r\nClient-IP: \x00\xff\r\nContent-Length: 1\r\n\r\nx",
    "SIGN ALIGND/1\r\nContent-Length: 12\r\n\r\nFrom: a@b\r\n\r\nPING\r\n\r\n",
    "SIGN\nContent-Length: 0\n\nSIGN ALIGND/1\n\n",
]
for r in REQS:
    put("request", req(r))
    put("request", req(r, chunks=(1, 2, 3, 5, 7, 11, 13, 0)))
    put("request", req(r, mode=0x31))

# ---- Authentication-Results values: sel (2 bytes) at the end ----
for vals in ([b"plain", b"a@b.example", b"ok", b"sel"],
             [b"has space", b'q"uote\\', b"(c)", b"\xff\x01x"],
             [b"", b"example.com", b"example.com", b"a"]):
    body = b"\x00".join(vals * 6)
    for sel in (0, 0x1234, 0xffff, 0x8001):
        put("ar", body + bytes([sel & 0xff, sel >> 8]))

# ---- reply encoders ----
for vals in ([b"4FzX1", b"reject", b"550 5.7.1 no", b"mx; spf=pass", b"bad request"],
             [b"q\r\nInjected: 1", b"accept\r\n", b"x\ny", b"\x00", b"Content-Length: 5"]):
    body = bytes([20]) + b"ALIGND/1 200 OK\r\n\r\n" + b"\x00".join(vals * 4)
    for sel in (0, 0x7ff, 0xffff):
        put("reply", body + bytes([sel & 0xff, sel >> 8]))


# ---- the scan path: spf\0 dmarc\0 key\0 mail_from\0 helo\0 message, sel ----
def scan(spf, dmarc, key, mail_from, helo, msg, sel):
    parts = [x.encode() if isinstance(x, str) else x for x in (spf, dmarc, key, mail_from, helo)]
    return b"\x00".join(parts) + b"\x00" + msg + bytes([sel & 0xff, sel >> 8])


S = "v=spf1 ip4:192.0.2.0/24 include:football.example.com a mx -all"
D = "v=DMARC1; p=reject; adkim=r"
K = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
if rfc8463:
    for sel in (0, 16, 1, 8, 0x8000 | 22):
        put("scan", scan(S, D, K, "joe@football.example.com", "mx.example.net", rfc8463, sel))
    put("scan", scan(S, D, K, "x@fuzz.example", "h", rfc8463.replace(b"football", b"fuzz"), 2))
for m in MSGS[:9]:
    put("scan", scan(S, D, K, "a@fuzz.example", "fuzz.example", m, 2))
    put("scan", scan("v=spf1 redirect=temp.example", "v=DMARC1; p=quarantine", "", "b@temp.example",
                     "bogus.example", m, 0x11))
put("scan", scan("v=spf1 include:loop.example exists:%{l}.%{o} ptr:%{d} -all exp=%{d}",
                 "v=DMARC1; p=reject; t=y", K, "l@fuzz.example", "x",
                 b"From: a@fuzz.example\r\nFrom: b@example.org\r\n\r\n", 0x8002))
put("scan", scan(S, D, K, "", "football.example.com",
                 b"From: a@football.example.com, b@sub.example.org\r\n\r\n", 0x8009))
# ---- authserv-id of incoming Authentication-Results (clients/dclient.c) ----
# value bytes, then the selector byte and the id buffer size (u16, from the end)
for v in [b" mx.test.example; dmarc=pass", b'"mx.test.example"; dmarc=pass',
          b" (comment) MX.test.example.; x=y", b'\r\n\t"mx.te\\st.example"\r\n\t; dmarc=pass',
          b" mx.test.example 1; none", b" (a\\) mx.test.example; dmarc=pass", b" (unterminated",
          b' "open', b"mx.test.example", b"", b" other.example; spf=pass smtp.mailfrom=x.example",
          b' mx.test.example"x"; y', b" ((((((deep)))))) a.b; c=d", b'" spaced " ; x']:
    for sel in (0, 0x0f):
        for size in (256, 8):
            put("authserv", v + bytes([sel, size & 0xff, size >> 8]))
# ---- HTTP request heads (protocol/http_req.h) ----
# head bytes, then (from the end) the max body in 64 KB units and the step
HEADS = [
    "POST /checkv2 HTTP/1.1\r\nHost: localhost\r\nIP: 192.0.2.1\r\nHelo: mx.example\r\n"
    "From: <a@example.com>\r\nRcpt: <b@example.net>\r\nQueue-Id: Q1\r\n"
    "Content-Length: 120\r\n\r\nFrom: a@example.com\r\n",
    "GET /ping HTTP/1.1\r\n\r\n",
    "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\n",
    "CHECK RSPAMC/1.3\r\nContent-length: 10\r\n\r\n",
    "PROCESS / RSPAMC/1.3\nContent-Length: 0\n\n",
    "POST /check HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /check HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "POST /check HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    "POST /symbols HTTP/2\r\n\r\n",
    "DELETE /checkv2 HTTP/1.1\r\n\r\n",
    "POST /nope HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\nIP: [IPv6:2001:db8::1]\r\nContent-Length: 99999999999\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\nIP: 300.1.1.1\r\nContent-Length: 1\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\nFrom: a\r\nFrom: b\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\nBad Name: x\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\nX: \x01\r\n\r\n",
    "\r\n\r\n",
    "POST /checkv2 HTTP/1.1\r\n" + "Rcpt: <r@example.net>\r\n" * 40 + "Content-Length: 3\r\n\r\n",
]
for h in HEADS:
    for step, maxk in ((1, 16), (7, 0), (16, 255)):
        put("http", h.encode("latin-1") + bytes([maxk, step - 1]))
# ---- TLS client flights to listen_tcp (server/tls.c) ----
# a piece-size byte, then what a client sends first: ClientHellos of
# TLS 1.2 and 1.3 from Python's ssl, a plain-text request, a bare record
def client_hello(ver):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ver
    inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outb, server_hostname="alignd.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()


import ssl  # noqa: E402
for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    hello = client_hello(ver)
    for piece in (96, 0, 4):
        put("tls", bytes([piece]) + hello)
put("tls", b"\x60PING\r\n\r\n")
put("tls", b"\x60\x16\x03\x01\x00\x00")
put("tls", b"\x60\x17\x03\x03\x40\x00" + b"\x00" * 64)
print("seeds written under", os.path.join(HERE, "corpus"))
