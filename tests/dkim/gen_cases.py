#!/usr/bin/python3
"""Signs the DKIM test messages with python3-dkim (a real, independent
signer) and fresh keys, writes them with their key table and expectations,
then runs the verifier test program on them.

usage: gen_cases.py --out DIR [--runner PROGRAM ...] [--oracle PROGRAM]
Writes DIR/keys.txt (one "<name> <TXT>" line per key record, same format as
the Mail::DKIM corpus), DIR/cases.tsv (file, signature number or *, then
name=value expectations) and DIR/*.eml, then runs each PROGRAM DIR NOW, and an --oracle PROGRAM (tests/dkim/oracle.c)
as PROGRAM --now NOW --keys DIR/keys.txt --dir DIR --ext .eml.
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

DOMAIN = b'example.org'
CRLF = b'\r\n'


def rsa_key(bits):
    pem = subprocess.run(['openssl', 'genrsa', '-traditional', str(bits)],
                         check=True, capture_output=True).stdout
    der = subprocess.run(['openssl', 'rsa', '-pubout', '-outform', 'DER'],
                         input=pem, check=True, capture_output=True).stdout
    return pem, base64.b64encode(der).decode()


def ed_key():
    sk = nacl.signing.SigningKey.generate()
    seed = base64.b64encode(bytes(sk))
    pub = base64.b64encode(bytes(sk.verify_key)).decode()
    return seed, pub


def message(subject=b'Quarterly report', body_lines=40):
    hdr = [
        b'From: Alice Example <alice@example.org>',
        b'To: Bob <bob@example.net>',
        b'Subject: ' + subject,
        b'Date: Mon, 02 Jun 2025 10:00:00 +0000',
        b'Message-ID: <report-1@example.org>',
        b'MIME-Version: 1.0',
        b'Content-Type: text/plain; charset=us-ascii',
    ]
    body = [b'Line %d of the report, with some text to hash.' % i
            for i in range(body_lines)]
    return CRLF.join(hdr) + CRLF + CRLF + CRLF.join(body) + CRLF


def sign(msg, selector, key, alg=b'rsa-sha256', headers=None, extra=(),
         length=False, t=None, domain=DOMAIN, canon=b'relaxed/simple'):
    """A DKIM-Signature field for msg, made by dkimpy's own signing code
    (DKIM.gen_header), with control over t=, x=, l= and h=."""
    d = dkim.DKIM(msg, signature_algorithm=alg, linesep=CRLF)
    if alg == b'ed25519-sha256':
        pk = nacl.signing.SigningKey(key, encoder=nacl.encoding.Base64Encoder)
    else:
        pk = dkim.crypto.parse_pem_private_key(key)
    policy = CanonicalizationPolicy.from_c_value(canon)
    if headers is None:
        headers = [b'from', b'to', b'subject', b'date', b'message-id']
    include = tuple(h.lower() for h in headers)
    body = policy.canonicalize_body(d.body)
    d.hasher = dkim.HASH_ALGORITHMS[alg]
    bh = base64.b64encode(d.hasher(body).digest())
    fields = [(b'v', b'1'), (b'a', alg), (b'c', canon), (b'd', domain),
              (b'i', b'@' + domain)]
    if length:
        fields.append((b'l', str(len(body)).encode()))
    fields += [(b'q', b'dns/txt'), (b's', selector),
               (b't', str(t).encode())]
    fields += list(extra)
    fields += [(b'h', b' : '.join(include)), (b'bh', bh), (b'b', b'0' * 60)]
    value = d.gen_header(fields, include, policy, b'DKIM-Signature', pk)
    return b'DKIM-Signature: ' + value


def b_prefix(sigfield):
    v = sigfield.split(b'b=')[-1]
    v = b''.join(v.split())
    return v[:16].decode()


def canon_body_len(msg, canon=b'relaxed/simple'):
    d = dkim.DKIM(msg)
    return len(CanonicalizationPolicy.from_c_value(canon).canonicalize_body(d.body))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--runner', action='append', default=[])
    ap.add_argument('--oracle', action='append', default=[])
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith('.eml') or f in ('keys.txt', 'cases.tsv'):
            os.unlink(os.path.join(out, f))

    now = int(time.time())
    t = now - 60

    k2048, p2048 = rsa_key(2048)
    k1024, p1024 = rsa_key(1024)
    k512, p512 = rsa_key(512)
    ked, ped = ed_key()
    keys = {
        's2048': 'v=DKIM1; k=rsa; p=' + p2048,
        's1024': 'v=DKIM1; k=rsa; p=' + p1024,
        's512': 'v=DKIM1; k=rsa; p=' + p512,
        'ed': 'v=DKIM1; k=ed25519; p=' + ped,
        'testing': 'v=DKIM1; k=rsa; t=y; p=' + p2048,
        'revoked': 'v=DKIM1; k=rsa; p=',
        'missing': 'NXDOMAIN',
        'nodata': '~~NODATA~~',
        'servfail': '~~SERVFAIL~~',
        'timeout': '~~Query timed out~~',
        'bogus': '~~BOGUS~~',
        'secure': '~~SECURE~~ v=DKIM1; k=rsa; p=' + p2048,
        'edwrongk': 'v=DKIM1; k=rsa; p=' + ped,
    }
    with open(os.path.join(out, 'keys.txt'), 'w') as f:
        for sel, txt in keys.items():
            f.write('%s._domainkey.%s %s\n' % (sel, DOMAIN.decode(), txt))

    cases = []   # (file, index, [expectations])

    def write(name, data, *expect):
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
        for idx, exp in expect:
            cases.append((name, idx, exp))

    m = message()

    s = sign(m, b's2048', k2048, t=t)
    write('rsa2048_crlf.eml', s + m,
          ('*', ['n=1', 'best=pass', 'not_evaluated=0']),
          ('1', ['res=pass', 'bits=2048', 'keytype=rsa', 'a=rsa-sha256',
                 'd=example.org', 's=s2048', 'i=@example.org', 'from=1',
                 'bh=1', 'sig=1', 'testing=0', 'l=none', 'x=none',
                 't=%d' % t, 'sec=insecure', 'keyfound=1',
                 'bprefix=' + b_prefix(s)]))
    write('rsa2048_lf.eml', (s + m).replace(CRLF, b'\n'),
          ('1', ['res=pass', 'bits=2048']))

    s = sign(m, b'ed', ked, alg=b'ed25519-sha256', t=t)
    write('ed25519.eml', s + m,
          ('1', ['res=pass', 'keytype=ed25519', 'a=ed25519-sha256', 'bits=256']))
    write('ed25519_lf.eml', (s + m).replace(CRLF, b'\n'),
          ('1', ['res=pass', 'keytype=ed25519']))
    write('ed25519_body.eml', s + m.replace(b'Line 7 ', b'Line 8 '),
          ('1', ['res=fail', 'bh=0']))
    # an RSA signature pointing at an ed25519 key record
    write('rsa_sig_ed_key.eml', sign(m, b's2048', k2048, t=t).replace(b's=s2048', b's=ed') + m,
          ('1', ['res=permerror', 'reason~=key type']))
    write('ed25519_wrong_key_type.eml',
          sign(m, b'edwrongk', ked, alg=b'ed25519-sha256', t=t) + m,
          ('1', ['res=permerror']))

    s = sign(m, b's2048', k2048, t=t)
    # the header signature still verifies (libopendkim sets PASSED), only
    # the body hash tells the change
    write('body_tampered.eml', s + m.replace(b'Line 7 ', b'Line 8 '),
          ('1', ['res=fail', 'sig=1', 'bh=0', 'reason~=body hash']))
    write('header_tampered.eml',
          s + m.replace(b'Subject: Quarterly report', b'Subject: Quarterly rep0rt'),
          ('1', ['res=fail', 'sig=0']))
    # relaxed header canonicalization tolerates re-folding whitespace
    write('header_refolded.eml',
          s + m.replace(b'Subject: Quarterly report', b'Subject:  Quarterly\r\n\treport'),
          ('1', ['res=pass']))

    write('rsa_sha1.eml', sign(m, b's2048', k2048, alg=b'rsa-sha1', t=t) + m,
          ('1', ['res=policy', 'a=rsa-sha1', 'reason~=RFC 8301']))
    write('rsa1024.eml', sign(m, b's1024', k1024, t=t) + m,
          ('1', ['res=pass', 'bits=1024']))
    write('rsa512.eml', sign(m, b's512', k512, t=t) + m,
          ('1', ['res=policy', 'bits=512', 'reason~=RFC 8301 3.2']))

    s = sign(m, b's2048', k2048, t=t, length=True)
    extra = b'-- \r\nAppended by a list: click here\r\n'
    m_appended = m + extra
    unsigned_len = canon_body_len(m_appended) - canon_body_len(m)
    write('l_tag.eml', s + m_appended,
          ('1', ['res=pass', 'l=%d' % canon_body_len(m),
                 'unsigned=%d' % unsigned_len, 'reason~=unsigned']))

    write('h_without_from.eml',
          sign(m, b's2048', k2048, t=t, headers=[b'to', b'subject', b'date']) + m,
          ('1', ['res=permerror', 'from=0', 'reason~=From']))

    write('expired.eml',
          sign(m, b's2048', k2048, t=now - 7200, extra=[(b'x', str(now - 3600).encode())]) + m,
          ('1', ['res=permerror', 'x=%d' % (now - 3600), 'reason~=expired']))
    write('not_expired.eml',
          sign(m, b's2048', k2048, t=t, extra=[(b'x', str(now + 3600).encode())]) + m,
          ('1', ['res=pass', 'x=%d' % (now + 3600)]))
    write('future_t.eml', sign(m, b's2048', k2048, t=now + 3600) + m,
          ('1', ['res=permerror', 'reason~=future']))
    write('slightly_future_t.eml', sign(m, b's2048', k2048, t=now + 100) + m,
          ('1', ['res=pass']))

    write('testing_key.eml', sign(m, b'testing', k2048, t=t) + m,
          ('1', ['res=pass', 'testing=1', 'reason~=t=y']))
    write('revoked_key.eml', sign(m, b'revoked', k2048, t=t) + m,
          ('1', ['res=permerror', 'reason~=revoked']))
    write('missing_key.eml', sign(m, b'missing', k2048, t=t) + m,
          ('1', ['res=permerror', 'keyfound=0', 'reason~=nxdomain']))
    write('nodata_key.eml', sign(m, b'nodata', k2048, t=t) + m,
          ('1', ['res=permerror', 'reason~=nodata']))
    write('servfail_key.eml', sign(m, b'servfail', k2048, t=t) + m,
          ('1', ['res=temperror']))
    write('timeout_key.eml', sign(m, b'timeout', k2048, t=t) + m,
          ('1', ['res=temperror']))
    write('bogus_key.eml', sign(m, b'bogus', k2048, t=t) + m,
          ('1', ['res=temperror', 'keyfound=0', 'reason~=DNSSEC']))
    write('unlisted_key.eml', sign(m, b'neverasked', k2048, t=t) + m,
          ('1', ['res=temperror', 'reason~=not looked up']))
    # a selector that is no usable DNS name: the key cannot exist, so
    # the signature fails for good (RFC 6376 6.1.1, 6.1.2), not temporarily
    write('bad_selector_chars.eml', sign(m, b'bad!sel', k2048, t=t) + m,
          ('1', ['res=permerror', 'keyfound=0', 'reason~=usable']))
    write('bad_selector_long_label.eml', sign(m, b'a' * 64, k2048, t=t) + m,
          ('1', ['res=permerror', 'keyfound=0', 'reason~=usable']))
    write('bad_selector_long_name.eml',
          sign(m, b'.'.join([b'a' * 60] * 4), k2048, t=t) + m,
          ('1', ['res=permerror', 'keyfound=0', 'reason~=usable']))
    write('secure_key.eml', sign(m, b'secure', k2048, t=t) + m,
          ('1', ['res=pass', 'sec=secure']))

    # nine signatures, at most eight evaluated
    sigs = b''.join(sign(m, b's2048', k2048, t=t + k) for k in range(9))
    write('nine_sigs.eml', sigs + m,
          ('*', ['n=8', 'not_evaluated=1', 'best=pass']),
          *[(str(k), ['res=pass', 't=%d' % (t + k - 1)]) for k in range(1, 9)])

    # one malformed extra signature above a valid one
    junk = b'DKIM-Signature: v=1; a=rsa-sha256; d=example.org; garbage\r\n'
    write('malformed_extra.eml', junk + sign(m, b's2048', k2048, t=t) + m,
          ('*', ['n=2', 'best=pass']),
          ('1', ['res=permerror']),
          ('2', ['res=pass']))
    write('malformed_extra_lf.eml',
          (junk + sign(m, b's2048', k2048, t=t) + m).replace(CRLF, b'\n'),
          ('*', ['n=2', 'best=pass']),
          ('2', ['res=pass']))

    # a broken signature and a good one from another algorithm
    s1 = sign(m, b's2048', k2048, t=t)
    s2 = sign(m, b'ed', ked, alg=b'ed25519-sha256', t=t)
    broken = s1.replace(b'b=', b'b=AAAA', 1) if s1.count(b' b=') else s1
    write('rsa_broken_ed_good.eml', broken[:-40] + b'AAAA' + broken[-38:] + s2 + m,
          ('*', ['n=2', 'best=pass']),
          ('1', ['res=fail']),
          ('2', ['res=pass', 'keytype=ed25519']))

    write('unsigned.eml', m, ('*', ['n=0', 'best=none']))

    # the benchmark message: about 15 KB, one rsa-2048 signature
    big = message(body_lines=300)
    write('bench_15k.eml', sign(big, b's2048', k2048, t=t) + big,
          ('1', ['res=pass', 'bits=2048']))

    with open(os.path.join(out, 'cases.tsv'), 'w') as f:
        for name, idx, exp in cases:
            f.write('\t'.join([name, idx] + exp) + '\n')

    sys.stdout.flush()
    rc = 0
    for runner in args.runner:
        rc |= subprocess.run([runner, out, str(now)]).returncode
    for oracle in args.oracle:
        rc |= subprocess.run([oracle, '--now', str(now), '--keys',
                              os.path.join(out, 'keys.txt'), '--dir', out,
                              '--ext', '.eml']).returncode
    if not args.runner and not args.oracle:
        print('gen_cases.py: nothing to run')
        return 2
    return rc


if __name__ == '__main__':
    sys.exit(main())
