#!/usr/bin/python3
"""systemd units (suite 'units'): systemd-analyze verify on every unit in
systemd/, systemd-analyze security --offline on the services (exposure "OK"
or better), and a deliberately broken copy that verify must reject, so the
check can fail. ExecStart paths are pointed at the build tree, because
verify insists that the program exists. There is no systemd as PID 1 here:
the units are checked offline only, not started."""
import os, re, shutil, subprocess, sys, tempfile

SRC = os.environ['ALIGND_SOURCE_ROOT']
PROGS = {'/usr/sbin/alignd-milter': os.environ['ALIGND_MILTER'],
         '/usr/sbin/alignd-report': os.environ['ALIGND_REPORT'],
         '/usr/sbin/alignd': os.environ['ALIGND']}
UNITS = ['alignd.service', 'alignd-milter.service', 'alignd-report.service', 'alignd-report.timer',
         'alignd-report-failures.service', 'alignd-report-failures.timer']
GOOD = ('SAFE', 'OK')

if not shutil.which('systemd-analyze'):
    print('systemd-analyze missing'); sys.exit(77)

def verify(path):
    r = subprocess.run(['systemd-analyze', 'verify', '--man=no', path],
                       capture_output=True, text=True, cwd=os.path.dirname(path))
    return r.returncode, r.stdout + r.stderr

failed = 0
with tempfile.TemporaryDirectory() as d:
    for u in UNITS:
        text = open(os.path.join(SRC, 'systemd', u)).read()
        for k, v in PROGS.items():   # longest names first: no prefix clash
            text = re.sub(re.escape(k) + r'(?=\s)', v, text)
        with open(os.path.join(d, u), 'w') as f:
            f.write(text)
    for u in UNITS:
        rc, out = verify(os.path.join(d, u))
        # verify exits 0 on warnings too; any line about our unit is a defect
        bad = [l for l in out.splitlines() if u in l]
        if rc != 0 or bad:
            print(f'FAIL verify {u}: rc={rc}\n{out}'); failed += 1
        else:
            print(f'ok verify {u}')
    for u in UNITS:
        if not u.endswith('.service'):
            continue
        r = subprocess.run(['systemd-analyze', 'security', '--offline=true', '--no-pager',
                            os.path.join(d, u)], capture_output=True, text=True)
        m = re.search(r'Overall exposure level for \S+: ([0-9.]+) (\w+)', r.stdout)
        if not m or m.group(2) not in GOOD:
            print(f'FAIL security {u}: {m.group(0) if m else r.stdout + r.stderr}'); failed += 1
        else:
            print(f'ok security {u}: {m.group(1)} {m.group(2)}')
    # the negative control: a missing program must make verify fail
    broken = os.path.join(d, 'broken.service')
    with open(os.path.join(d, 'alignd.service')) as f:
        text = f.read().replace(PROGS['/usr/sbin/alignd'], '/nonexistent/alignd')
    with open(broken, 'w') as f:
        f.write(text)
    rc, out = verify(broken)
    if rc == 0 and 'broken.service' not in out:
        print('FAIL: verify accepted a unit whose program does not exist'); failed += 1
    else:
        print('ok verify rejects a broken unit')
sys.exit(1 if failed else 0)
