#!/usr/bin/python3
"""Runs dkim_sign (tests/dkim/sign.c), which signs the test messages with
alignd's signer and checks them with both of alignd's verifiers, then
verifies every message it wrote with python3-dkim, an independent verifier:
NAME.eml must pass, NAME.bad.eml (changed after signing, or signed with a
key other than the published one) must not.

usage: sign_check.py --out DIR --runner PROGRAM
"""
import argparse
import os
import shutil
import subprocess
import sys

import dkim


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--runner', required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    r = subprocess.run([a.runner, '--out', a.out])
    if r.returncode != 0:
        print('dkim_sign failed', file=sys.stderr)
        return 1
    keys = {}
    with open(os.path.join(a.out, 'keys.tsv'), 'rb') as f:
        for line in f:
            name, txt = line.rstrip(b'\n').split(b'\t', 1)
            keys[name + b'.'] = txt

    def dns(name, timeout=5):
        return keys.get(name, keys.get(name + b'.'))

    good = bad = fails = 0
    for fn in sorted(os.listdir(a.out)):
        if not fn.endswith('.eml'):
            continue
        with open(os.path.join(a.out, fn), 'rb') as f:
            data = f.read()
        want = not fn.endswith('.bad.eml')
        try:
            got = dkim.verify(data, dnsfunc=dns)
        except Exception as e:  # noqa: BLE001 - any failure is "no pass"
            got = False
            err = str(e)
        else:
            err = ''
        if got != want:
            fails += 1
            print('FAIL: %s: python3-dkim says %s, want %s %s'
                  % (fn, got, want, err), file=sys.stderr)
        elif want:
            good += 1
        else:
            bad += 1
    print('python3-dkim: %d signed messages verify, %d changed ones do not, '
          '%d failures' % (good, bad, fails))
    if good == 0 or bad == 0:
        print('FAIL: nothing checked', file=sys.stderr)
        return 1
    return 1 if fails else 0


if __name__ == '__main__':
    sys.exit(main())
