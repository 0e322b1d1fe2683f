#!/usr/bin/python3
"""Man pages (suite 'units'): each built page renders with man -l and groff
warnings on and prints nothing on stderr; alignd.conf(5) documents exactly
the keys of the daemon's configuration table, taken from the daemon itself
(alignd --print-config prints every key), so the two cannot drift."""
import os, re, subprocess, sys

ALIGND = os.environ['ALIGND']
SRC = os.environ['ALIGND_SOURCE_ROOT']
pages = sys.argv[1:]
failed = 0

env = dict(os.environ, MANWIDTH='80', LC_ALL='C.UTF-8')
for p in pages:
    r = subprocess.run(['man', '--warnings', '-l', p], capture_output=True, text=True, env=env)
    if r.returncode != 0 or r.stderr.strip() or not r.stdout.strip():
        print(f'FAIL render {os.path.basename(p)}: rc={r.returncode}\n{r.stderr}'); failed += 1
    else:
        print(f'ok render {os.path.basename(p)} ({len(r.stdout.splitlines())} lines)')

out = subprocess.run([ALIGND, '--print-config'], capture_output=True, text=True, check=True).stdout
table = {l.split(' = ', 1)[0] for l in out.splitlines() if ' = ' in l and not l.startswith('#')}
scd = open(os.path.join(SRC, 'man', 'alignd.conf.5.scd')).read()
# a key's entry starts a line: *key* or *key1*, *key2* followed by "(default:"
documented = set()
for m in re.finditer(r'^((?:\*[^*\n]+\*(?:, )?)+) \(default:', scd, re.M):
    for k in re.findall(r'\*([^*]+)\*', m.group(1)):
        documented.add(k.replace('\\', ''))
missing, extra = sorted(table - documented), sorted(documented - table)
if len(table) < 50:
    print(f'FAIL: only {len(table)} keys from --print-config'); failed += 1
if missing or extra:
    print(f'FAIL alignd.conf(5): missing {missing}, not in the daemon {extra}'); failed += 1
else:
    print(f'ok alignd.conf(5) documents all {len(table)} keys')
sys.exit(1 if failed else 0)
