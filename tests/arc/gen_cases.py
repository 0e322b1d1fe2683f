#!/usr/bin/python3
"""Seals the ARC test messages with python3-dkim (an independent ARC
implementation) and fresh keys, asks python3-dkim's own arc_verify what it
thinks of each, writes them with their key table and expectations, then
runs the verifier test program(s) on them.

usage: gen_cases.py --out DIR --runner PROGRAM [--runner PROGRAM2 ...]
Writes DIR/keys.txt ("<name> <TXT>" lines; NXDOMAIN and ~~SERVFAIL~~ as
special values), DIR/cases.tsv (file, then name=value expectations, one of
them python=<what python3-dkim's arc_verify said>) and DIR/*.eml, then runs
each PROGRAM DIR NOW.
"""
import argparse
import base64
import os
import subprocess
import sys
import time

import dkim
import dkim.crypto
import nacl.encoding
import nacl.signing
from dkim.canonicalization import CanonicalizationPolicy

CRLF = b'\r\n'
NOW = int(time.time())
T = NOW - 3600
SEL = b'arc'


def rsa_key(bits):
    pem = subprocess.run(['openssl', 'genrsa', '-traditional', str(bits)],
                         check=True, capture_output=True).stdout
    der = subprocess.run(['openssl', 'rsa', '-pubout', '-outform', 'DER'],
                         input=pem, check=True, capture_output=True).stdout
    return pem, 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()


def ed_key():
    sk = nacl.signing.SigningKey.generate()
    return (base64.b64encode(bytes(sk)),
            'v=DKIM1; k=ed25519; p=' + base64.b64encode(bytes(sk.verify_key)).decode())


def original(body_lines=30, lf=False):
    hdr = [
        b'Received: from mail.example.com by mx.forwarder.example; '
        b'Mon, 02 Jun 2025 10:00:01 +0000',
        b'From: Alice Example <alice@example.com>',
        b'To: list@lists.example.org',
        b'Subject: Quarterly  report',
        b'Date: Mon, 02 Jun 2025 10:00:00 +0000',
        b'Message-ID: <report-1@example.com>',
        b'MIME-Version: 1.0',
        b'Content-Type: text/plain; charset=us-ascii',
    ]
    body = [b'Line %d of the report,\twith  some text to hash.  ' % i
            for i in range(body_lines)]
    m = CRLF.join(hdr) + CRLF + CRLF + CRLF.join(body) + CRLF + CRLF
    return m.replace(CRLF, b'\n') if lf else m


KEYS = {}      # domain -> (private key, alg)
TABLE = {}     # qname -> TXT or special value


def add_domain(domain, kind='rsa', bits=2048, selector=SEL):
    if kind == 'ed25519':
        priv, txt = ed_key()
        alg = b'ed25519-sha256'
    else:
        priv, txt = rsa_key(bits)
        alg = b'rsa-sha256'
    KEYS[domain] = (priv, alg)
    TABLE[selector.decode() + '._domainkey.' + domain.decode()] = txt


def ar_line(domain, cv):
    res = (b'spf=fail smtp.mailfrom=example.com; '
           b'dkim=pass header.d=example.com header.s=s1; '
           b'dmarc=pass (p=reject) header.from=example.com')
    if cv is not None:
        res += b'; arc=' + cv
    return b'Authentication-Results: ' + domain + b'; ' + res + CRLF


SRV_IDS = set()


def seal(msg, domain, cv=None, selector=SEL, include=None):
    """One hop: the receiver at `domain` records its results, then seals
    with python3-dkim's arc_sign."""
    priv, alg = KEYS[domain]
    # arc_sign reads cv= from the A-R fields of its own authserv-id, so a
    # domain that seals again uses another one
    srv, k = domain, 1
    while srv in SRV_IDS:
        k += 1
        srv = b'mx%d.' % k + domain
    SRV_IDS.add(srv)
    lf = b'\r\n' not in msg
    m = ar_line(srv, cv) + (msg.replace(b'\n', CRLF) if lf else msg)
    if alg == b'rsa-sha256':
        hdrs = dkim.arc_sign(m, selector, domain, priv, srv, timestamp=T,
                             include_headers=include)
    else:
        # arc_sign always signs rsa-sha256 and reads the key as PEM: use the
        # class it wraps, handing it the Ed25519 key
        saved = dkim.parse_pem_private_key
        dkim.parse_pem_private_key = lambda k: nacl.signing.SigningKey(
            k, encoder=nacl.encoding.Base64Encoder)
        try:
            a = dkim.ARC(m, signature_algorithm=alg, linesep=CRLF)
            hdrs = a.sign(selector, domain, priv, srv,
                          include_headers=a.default_sign_headers(), timestamp=T)
        finally:
            dkim.parse_pem_private_key = saved
    if not hdrs:
        raise SystemExit('arc_sign made no set for %s' % domain)
    out = b''.join(hdrs) + m
    return out.replace(CRLF, b'\n') if lf else out


def make_set(msg, instance, cv, domain, selector=SEL):
    """An ARC set that arc_sign refuses to make (i=1 with cv=pass, i=51),
    built from python3-dkim's own signing primitives (gen_header)."""
    priv, alg = KEYS[domain]
    d = dkim.ARC(msg, signature_algorithm=alg, linesep=CRLF)
    pk = dkim.crypto.parse_pem_private_key(priv)
    policy = CanonicalizationPolicy.from_c_value(b'relaxed/relaxed')
    d.hasher = dkim.HASH_ALGORITHMS[alg]
    arc_before = [x for (x, y) in d.headers
                  if x.lower() in dkim.ARC.ARC_HEADERS]
    aar = b' i=%d; %s; spf=pass smtp.mailfrom=example.com' % (instance, domain) + CRLF
    d.headers.insert(0, (b'ARC-Authentication-Results', aar))
    bh = base64.b64encode(d.hasher(policy.canonicalize_body(d.body)).digest())
    include = (b'from', b'to', b'subject', b'date')
    fields = [(b'i', b'%d' % instance), (b'a', alg), (b'c', b'relaxed/relaxed'),
              (b'd', domain), (b's', selector), (b't', b'%d' % T),
              (b'h', b':'.join(include)), (b'bh', bh), (b'b', b'0' * 60)]
    ams = d.gen_header(fields, include, policy, b'ARC-Message-Signature', pk)
    d.headers.insert(0, (b'ARC-Message-Signature', ams))
    # the seal covers every older set, oldest first, then the new AAR, AMS
    names = [x.lower() for x in reversed(arc_before)]
    names += [b'arc-authentication-results', b'arc-message-signature']
    fields = [(b'i', b'%d' % instance), (b'cv', cv), (b'a', alg), (b'd', domain),
              (b's', selector), (b't', b'%d' % T), (b'b', b'0' * 60)]
    seal_v = d.gen_header(fields, names, policy, b'ARC-Seal', pk)
    return (b'ARC-Seal: ' + seal_v + b'ARC-Message-Signature: ' + ams +
            b'ARC-Authentication-Results:' + aar + msg)


def drop_set(msg, instance):
    """Removes every ARC field of one instance (folded lines included)."""
    out, skip = [], False
    for line in msg.split(CRLF):
        if line[:1] in (b' ', b'\t'):
            if not skip:
                out.append(line)
            continue
        low = line.lower()
        skip = (low.startswith((b'arc-seal:', b'arc-message-signature:',
                                b'arc-authentication-results:')) and
                (b' i=%d;' % instance) in low.replace(b'\t', b' '))
        if not skip:
            out.append(line)
    return CRLF.join(out)


def field(msg, name, instance):
    """The whole raw field `name` of the given instance, with its CRLF."""
    lines = msg.split(CRLF)
    for k, line in enumerate(lines):
        if line.lower().startswith(name.lower() + b':') and \
                (b' i=%d;' % instance) in line:
            j = k + 1
            while lines[j][:1] in (b' ', b'\t'):
                j += 1
            return CRLF.join(lines[k:j]) + CRLF
    raise SystemExit('no %s i=%d' % (name, instance))


def flip_b(msg, name, instance):
    """Changes one character of the b= signature of a field."""
    f = field(msg, name, instance)
    pos = f.index(b' b=') + 10
    c = f[pos:pos + 1]
    g = f[:pos] + (b'A' if c != b'A' else b'B') + f[pos + 1:]
    return msg.replace(f, g)


def python_verdict(msg):
    def dns(name, timeout=5):
        n = name.decode().rstrip('.')
        txt = TABLE.get(n)
        if txt is None or txt == 'NXDOMAIN':
            return None
        if txt == '~~SERVFAIL~~':
            raise dkim.DnsTimeoutError('servfail')
        return txt.encode()
    try:
        cv, _, _ = dkim.arc_verify(msg, dnsfunc=dns)
    except Exception:
        return 'fail'
    # arc_verify says None for "a cv=fail ended the chain": a failed chain
    return 'fail' if cv is None else cv.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--runner', action='append', default=[])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    for dom in (b'fwd.example', b'lists.example.org', b'mx.example.net',
                b'other.example', b'wrongkey.example', b'nokey.example',
                b'tempfail.example'):
        add_domain(dom)
    add_domain(b'ed.example', kind='ed25519')
    add_domain(b'small.example', bits=768)
    # the published key of wrongkey.example is not the one it signs with
    _, TABLE['arc._domainkey.wrongkey.example'] = rsa_key(2048)
    TABLE['arc._domainkey.nokey.example'] = 'NXDOMAIN'
    TABLE['arc._domainkey.tempfail.example'] = '~~SERVFAIL~~'

    cases = []

    def case(name, msg, *expect, python=None):
        with open(os.path.join(args.out, name + '.eml'), 'wb') as f:
            f.write(msg)
        pv = python_verdict(msg)
        cases.append((name, list(expect), pv if python is None else python, pv))

    orig = original()
    one = seal(orig, b'lists.example.org')
    case('no-arc', orig, 'chain=none', 'n=0')
    case('hop1-pass', one, 'chain=pass', 'n=1', 'oldest_pass=0',
         'sealer1=lists.example.org', 'ams1=pass', 'as1=pass',
         'aar1.authserv=lists.example.org', 'aar1.spf=fail', 'aar1.dkim=pass',
         'aar1.dmarc=pass', 'aar1.n=3')
    two = seal(one, b'fwd.example', b'pass')
    three = seal(two, b'mx.example.net', b'pass')
    case('hop3-pass', three, 'chain=pass', 'n=3', 'oldest_pass=0',
         'sealer1=lists.example.org', 'sealer2=fwd.example',
         'sealer3=mx.example.net', 'aar1.authserv=lists.example.org',
         'as1=pass', 'as2=pass', 'as3=pass', 'ams1=pass', 'ams3=pass')
    case('hop3-lf', three.replace(CRLF, b'\n'), 'chain=pass', 'n=3',
         'oldest_pass=0')
    case('hop3-received-on-top',
         b'Received: from mx.example.net by mx.final.example; '
         b'Mon, 02 Jun 2025 10:00:09 +0000' + CRLF + three,
         'chain=pass', 'n=3')

    # a list that rewrites the subject and adds a footer, then seals: its
    # own AMS holds, the first one no longer does
    listed = one.replace(b'Subject: Quarterly  report',
                         b'Subject: [team] Quarterly  report')
    listed = listed + b'-- \r\nteam mailing list\r\n'
    hop2 = seal(listed, b'fwd.example', b'pass')
    case('body-modified', hop2, 'chain=pass', 'n=2', 'oldest_pass=2',
         'ams1=fail', 'ams2=pass', 'as1=pass', 'as2=pass')
    # h= names Resent-To twice: the two bottom-most are signed (RFC 6376
    # 5.4.2), so one more Resent-To added on top later changes nothing
    rsealed = seal(b'Resent-To: team@fwd.example' + CRLF +
                   b'Resent-To: first@lists.example.org' + CRLF + one,
                   b'fwd.example', b'pass',
                   include=[b'from', b'subject', b'resent-to', b'resent-to'])
    case('h-repeated-fields', b'Resent-To: later@mx.example.net' + CRLF +
         rsealed, 'chain=pass', 'n=2', 'ams2=pass', 'ams1=pass')
    case('h-repeated-fields-changed',
         rsealed.replace(b'first@lists', b'First@lists'),
         'chain=fail', 'n=2', 'ams2=fail')
    hop3m = seal(hop2, b'mx.example.net', b'pass')
    case('body-modified-3', hop3m, 'chain=pass', 'n=3', 'oldest_pass=2',
         'ams1=fail', 'ams2=pass', 'ams3=pass')
    # modified after the last seal: the newest AMS fails (5.2 step 4)
    case('modified-after-seal', two.replace(b'Line 3 of', b'Line 3 0f'),
         'chain=fail', 'n=2', 'ams2=fail')
    case('from-added-after-seal',
         b'From: Mallory <m@evil.example>' + CRLF + two, 'chain=fail',
         'ams2=fail')

    # every newer seal covers an older seal's b=, so it breaks them all
    case('bad-seal-sig', flip_b(three, b'ARC-Seal', 2), 'chain=fail', 'n=3',
         'as3=fail')
    # a seal that was already bad when the next hop sealed over it
    case('bad-older-seal-resealed',
         seal(flip_b(two, b'ARC-Seal', 2), b'mx.example.net', b'pass'),
         'chain=fail', 'n=3', 'as3=pass', 'as2=fail', 'ams3=pass')
    case('bad-first-seal-resealed',
         seal(flip_b(one, b'ARC-Seal', 1), b'fwd.example', b'pass'),
         'chain=fail', 'n=2', 'as2=pass', 'as1=fail')
    case('bad-newest-seal-sig', flip_b(three, b'ARC-Seal', 3), 'chain=fail',
         'as3=fail')
    f = field(three, b'ARC-Authentication-Results', 1)
    case('aar1-tampered', three.replace(f, f.replace(b'spf=fail', b'spf=pass')),
         'chain=fail', 'as3=fail', 'aar1.spf=pass')

    cvfail = seal(one, b'fwd.example', b'fail')
    case('cv-fail-newest', cvfail, 'chain=fail', 'n=2')
    case('cv-fail-middle', seal(cvfail, b'mx.example.net', b'pass'),
         'chain=fail', 'n=3')
    case('gap', drop_set(three, 2), 'chain=fail', 'n=3')
    case('missing-first', drop_set(three, 1), 'chain=fail', 'n=3')
    dup = seal(one, b'other.example', b'pass')
    s2 = b''.join(field(dup, nm, 2) for nm in
                  (b'ARC-Seal', b'ARC-Message-Signature',
                   b'ARC-Authentication-Results'))
    case('duplicate-instance', s2 + two, 'chain=fail', 'n=2')
    case('missing-aar', one.replace(field(one, b'ARC-Authentication-Results', 1),
                                    b''), 'chain=fail', 'n=1')
    case('missing-ams', one.replace(field(one, b'ARC-Message-Signature', 1),
                                    b''), 'chain=fail')
    case('i1-cv-pass', make_set(orig, 1, b'pass', b'lists.example.org'),
         'chain=fail', 'n=1')
    case('i1-made-cv-none', make_set(orig, 1, b'none', b'lists.example.org'),
         'chain=pass', 'n=1', 'oldest_pass=0')
    case('i2-cv-none', make_set(one, 2, b'none', b'fwd.example'),
         'chain=fail', 'n=2')

    m = orig
    for k in range(50):
        m = seal(m, b'fwd.example', None if k == 0 else b'pass')
    case('hop50-pass', m, 'chain=pass', 'n=50', 'oldest_pass=0')
    # python3-dkim's arc_verify does not enforce the limit of 50 sets
    # (RFC 8617 5.2 step 1), so it says pass here; we must say fail
    case('hop51', make_set(m, 51, b'pass', b'fwd.example'), 'chain=fail',
         python='fail')

    case('wrong-key', seal(one, b'wrongkey.example', b'pass'), 'chain=fail',
         'ams2=fail', 'sealer2=wrongkey.example')
    case('key-missing', seal(one, b'nokey.example', b'pass'), 'chain=fail',
         'ams2=permerror')
    # a DNS failure is not a verdict; python3-dkim cannot tell it apart
    case('key-tempfail', seal(one, b'tempfail.example', b'pass'),
         'chain=temperror', 'ams2=temperror', python='temperror')
    case('key-tempfail-old-seal',
         seal(seal(seal(orig, b'tempfail.example'), b'fwd.example', b'pass'),
              b'mx.example.net', b'pass'),
         'chain=temperror', 'as3=pass', 'as2=pass', 'as1=temperror',
         'oldest_pass=2', python='temperror')
    case('small-key', seal(one, b'small.example', b'pass'), 'chain=fail',
         'ams2=policy')
    # python3-dkim 1.1.4 signs ARC with ed25519-sha256 but its arc_verify
    # does not know the algorithm ("unknown signature algorithm")
    edm = seal(one, b'ed.example', b'pass')
    case('ed25519-hop', edm, 'chain=pass', 'n=2', 'as2=pass', 'ams2=pass',
         'sealer2=ed.example', python='pass')
    case('ed25519-then-rsa', seal(edm, b'mx.example.net', b'pass'),
         'chain=pass', 'n=3', 'as2=pass', python='pass')
    case('ed25519-bad-seal', flip_b(edm, b'ARC-Seal', 2), 'chain=fail',
         'as2=fail', 'ams2=pass')

    with open(os.path.join(args.out, 'keys.txt'), 'w') as f:
        for name, txt in sorted(TABLE.items()):
            f.write('%s %s\n' % (name, txt))
    with open(os.path.join(args.out, 'cases.tsv'), 'w') as f:
        for name, expect, pv, _ in cases:
            f.write('\t'.join([name + '.eml'] + expect + ['python=' + pv]) + '\n')

    bad = 0
    for name, expect, pv, got in cases:
        want = [e for e in expect if e.startswith('chain=')][0][6:]
        if pv != got:
            print('note %s: python3-dkim says %s (expected to differ: %s)'
                  % (name, got, pv))
        elif got != want and not (want == 'temperror' and got == 'fail'):
            print('FAIL %s: python3-dkim says %s, the case expects %s'
                  % (name, got, want))
            bad += 1
    print('%d cases written, %d disagree with python3-dkim' % (len(cases), bad))
    rc = 1 if bad else 0
    for r in args.runner:
        p = subprocess.run([r, args.out, str(NOW)])
        if p.returncode != 0:
            rc = 1
    return rc


if __name__ == '__main__':
    sys.exit(main())
