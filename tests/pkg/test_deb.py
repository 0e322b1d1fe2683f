#!/usr/bin/python3
"""Debian package (suite 'deb'): builds alignd_*.deb with dpkg-buildpackage
from a copy of the source tree (tracked and new files, no build
directories) in a temporary directory, runs lintian (any E: or W: line
fails; explained exceptions live in debian/alignd.lintian-overrides), checks
the control data (Depends, computed by dpkg-shlibdeps, names the package of
every library the binaries link; the conffile; the maintainer scripts) and
the exact file list of the extracted package, and validates the shipped
configuration with the shipped daemon.

Then a real install, in private mount and PID namespaces on an overlay of
this machine's root (so it changes nothing here, and whatever it started
dies with it): dpkg -i, the daemon started by hand as the package's user on
a private socket, alignc --ping, SIGTERM by PID, dpkg --purge, and a check
that the user, group, state directory, configuration and unit links are
gone. ALIGND_DEB_INSTALL=0 skips that part."""
import fcntl, glob, grp, gzip, os, pwd, re, shutil, signal, socket, stat
import subprocess, sys, tempfile, time

SRC = os.environ['ALIGND_SOURCE_ROOT']
USER = 'alignd'
BINARIES = ['usr/sbin/alignd', 'usr/sbin/alignd-milter', 'usr/sbin/alignd-filter',
            'usr/sbin/alignd-report', 'usr/bin/alignc']
UNITS = ['alignd.service', 'alignd-milter.service', 'alignd-report.service',
         'alignd-report.timer', 'alignd-report-failures.service', 'alignd-report-failures.timer']
MANPAGES = ['man1/alignc.1', 'man5/alignd.conf.5', 'man8/alignd.8',
            'man8/alignd-milter.8', 'man8/alignd-filter.8', 'man8/alignd-report.8']
CONFFILE = 'etc/alignd/alignd.conf'
# Every regular file the package may ship: a new installed file must be
# added here on purpose, a missing one fails.
EXPECTED = set(BINARIES + ['lib/systemd/system/' + u for u in UNITS]
               + ['usr/share/man/' + m + '.gz' for m in MANPAGES]
               + [CONFFILE, 'usr/share/doc/alignd/copyright',
                  'usr/share/doc/alignd/changelog.gz',
                  'usr/share/lintian/overrides/alignd'])
# What a real install creates outside the package's file list.
STATE_PATHS = ['/var/lib/alignd', '/etc/alignd', '/var/spool/postfix/alignd',
               '/etc/systemd/system/multi-user.target.wants/alignd.service',
               '/etc/systemd/system/timers.target.wants/alignd-report.timer',
               '/etc/systemd/system/timers.target.wants/alignd-report-failures.timer']

for prog in ('dpkg-buildpackage', 'dh', 'dpkg-deb'):
    if not shutil.which(prog):
        print(f'{prog} missing (packages dpkg-dev, debhelper)'); sys.exit(77)
if not shutil.which('lintian'):
    print('FAIL: lintian missing (scripts/deps.sh test installs it)'); sys.exit(1)

failed = 0


def fail(msg):
    global failed
    print('FAIL ' + msg)
    failed += 1


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def copy_tree(dst):
    """The working tree as git sees it (tracked files plus new, not ignored
    ones), so that uncommitted changes are built too; a plain copy without
    build directories when this is not a git checkout."""
    r = run(['git', '-C', SRC, 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard']) if shutil.which('git') else None
    if r is not None and r.returncode == 0 and r.stdout:
        for rel in sorted(set(r.stdout.split('\0')) - {''}):
            s = os.path.join(SRC, rel)
            if not os.path.lexists(s):      # deleted, not yet committed
                continue
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(s, os.path.join(dst, rel), follow_symlinks=False)
    else:
        shutil.copytree(SRC, dst, symlinks=True, ignore=shutil.ignore_patterns(
            '.git', 'build', 'build-*', 'obj-*', '__pycache__', '*.pyc'))


def control_field(deb, field):
    r = run(['dpkg-deb', '-f', deb, field])
    return r.stdout.strip()


def depends_names(depends):
    names = set()
    for clause in depends.split(','):
        for alt in clause.split('|'):
            alt = alt.strip()
            if alt:
                names.add(alt.split()[0].split(':')[0])
    return names


def owner(lib):
    """The packages that ship a library, as dpkg -S names them; dpkg knows
    the path the package installed (/lib or /usr/lib, before or after the
    soname link), so try each spelling."""
    real = os.path.realpath(lib)
    for p in dict.fromkeys([lib, real, lib.replace('/usr/lib/', '/lib/', 1),
                            real.replace('/usr/lib/', '/lib/', 1)]):
        r = run(['dpkg', '-S', p])
        if r.returncode == 0:
            return {x.strip().split(':')[0] for x in r.stdout.split(': ', 1)[0].split(',')}
    return set()


def check_control(deb, root):
    arch = run(['dpkg', '--print-architecture']).stdout.strip()
    for field, want in (('Package', 'alignd'), ('Architecture', arch)):
        got = control_field(deb, field)
        if got != want:
            fail(f'control {field}: {got!r}, want {want!r}')
    depends = control_field(deb, 'Depends')
    if '${' in depends or not depends:
        fail(f'Depends not substituted: {depends!r}')
    names = depends_names(depends)
    for must in ('adduser', 'dns-root-data', 'publicsuffix', 'libc6'):
        if must not in names:
            fail(f'Depends lacks {must}: {depends}')
    # dpkg-shlibdeps must have covered every shared library a shipped binary
    # links directly (DT_NEEDED): resolve each with ldd, find its package
    # with dpkg -S. (Libraries those pull in are their packages' business.)
    before = failed
    needed = {}
    for b in BINARIES:
        path = os.path.join(root, b)
        r = run(['readelf', '-d', path])
        direct = re.findall(r'\(NEEDED\)\s+Shared library: \[([^]]+)\]', r.stdout)
        if r.returncode != 0 or not direct:
            fail(f'readelf -d {b}: no NEEDED entries {r.stderr.strip()}')
            continue
        where = {}
        for line in run(['ldd', path]).stdout.splitlines():
            m = re.match(r'\s*(\S+) => (\S+)', line)
            if m:
                where[m.group(1)] = m.group(2)
            m = re.match(r'\s*(/\S+) \(', line)      # the dynamic loader
            if m:
                where[os.path.basename(m.group(1))] = m.group(1)
        for soname in direct:
            if not where.get(soname, '').startswith('/'):
                fail(f'{b}: {soname} not found by ldd')
                continue
            needed.setdefault(where[soname], set()).add(os.path.basename(b))
    for lib, users in sorted(needed.items()):
        pkgs = owner(lib)
        if not pkgs:
            fail(f'{lib} (needed by {", ".join(sorted(users))}) belongs to no package')
        elif not pkgs & names:
            fail(f'{lib} (needed by {", ".join(sorted(users))}) comes from {pkgs}, '
                 f'which Depends does not name')
    if failed == before:
        print(f'ok Depends names the package of each of the {len(needed)} libraries '
              f'linked directly: {depends}')
    ctl = os.path.join(os.path.dirname(root), 'control')
    os.makedirs(ctl, exist_ok=True)
    subprocess.run(['dpkg-deb', '-e', deb, ctl], check=True)
    conffiles = open(os.path.join(ctl, 'conffiles')).read().split()
    if conffiles != ['/' + CONFFILE]:
        fail(f'conffiles: {conffiles}')
    postinst = open(os.path.join(ctl, 'postinst')).read()
    postrm = open(os.path.join(ctl, 'postrm')).read()
    if f'adduser --system --group' not in postinst or f' {USER}\n' not in postinst:
        fail('postinst does not create the system user ' + USER)
    if 'deb-systemd-helper enable' not in postinst:
        fail('postinst does not enable the units (dh_installsystemd)')
    if 'deluser' not in postrm or '/var/lib/alignd' not in postrm:
        fail('postrm purge does not remove the user and the state directory')
    print('ok control: conffiles, maintainer scripts')


def check_build_depends(deb):
    """debian/control and scripts/deps.sh must name the same build
    dependencies, so that a library added to one is added to the other.
    build-essential brings the compiler; the data packages the daemon reads
    at run time belong in Depends."""
    text = open(os.path.join(SRC, 'scripts/deps.sh')).read()
    build_pkgs = set(re.search(r'BUILD_PKGS="([^"]*)"', text).group(1).split())
    control = open(os.path.join(SRC, 'debian/control')).read()
    m = re.search(r'^Build-Depends:(.*(?:\n .*)*)', control, re.M)
    bdeps = depends_names(m.group(1).replace('\n', ' ')) - {'debhelper-compat'}
    runtime = {'dns-root-data', 'publicsuffix'}
    essential = {'gcc', 'libc6-dev'}
    for p in sorted(build_pkgs - essential - runtime - bdeps):
        fail(f'scripts/deps.sh builds with {p}, debian/control Build-Depends lacks it')
    for p in sorted(bdeps - build_pkgs):
        fail(f'debian/control Build-Depends has {p}, scripts/deps.sh build lacks it')
    depends = depends_names(control_field(deb, 'Depends'))
    for p in sorted(runtime - depends):
        fail(f'the daemon reads {p} at run time, Depends lacks it')
    print(f'ok Build-Depends: the {len(bdeps)} packages of scripts/deps.sh build')


def check_files(root):
    before = failed
    files = set()
    for d, dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                fail(f'unexpected symlink {rel}')
            files.add(rel)
    for rel in sorted(EXPECTED - files):
        fail(f'missing from the package: {rel}')
    for rel in sorted(files - EXPECTED):
        fail(f'unexpected file in the package: {rel}')
    for b in BINARIES:
        p = os.path.join(root, b)
        if os.path.exists(p) and os.stat(p).st_mode & 0o7777 != 0o755:
            fail(f'{b}: mode {oct(os.stat(p).st_mode & 0o7777)}')
    for u in UNITS:
        p = os.path.join(root, 'lib/systemd/system', u)
        if os.path.exists(p) and open(p, 'rb').read() != open(os.path.join(SRC, 'systemd', u), 'rb').read():
            fail(f'{u} differs from systemd/{u}')
        if u.endswith('.service') and os.path.exists(p) and f'User={USER}\n' not in open(p).read():
            fail(f'{u} does not run as {USER}')
    for m in MANPAGES:
        p = os.path.join(root, 'usr/share/man', m + '.gz')
        if os.path.exists(p):
            text = gzip.open(p, 'rt').read()
            if '.TH' not in text:
                fail(f'{m}: not a man page')
    if failed == before:
        print(f'ok file list: {len(files)} files, as expected')


def check_config(root):
    alignd = os.path.join(root, 'usr/sbin/alignd')
    conf = os.path.join(root, CONFFILE)
    r = run([alignd, '--check-config', '-c', conf])
    if r.returncode != 0:
        fail(f'--check-config on the shipped file: {r.stdout}{r.stderr}')
    # Every key is there, commented out with its default: uncommented, the
    # file must be valid and say exactly what the daemon's defaults say.
    body = [l[2:] for l in open(conf).read().splitlines() if l.startswith('# ') and ' = ' in l]
    full = conf + '.uncommented'
    with open(full, 'w') as f:
        f.write('\n'.join(body) + '\n')
    r = run([alignd, '--check-config', '-c', full])
    if r.returncode != 0:
        fail(f'--check-config on the uncommented file: {r.stdout}{r.stderr}')
    defaults = run([alignd, '--print-config']).stdout.splitlines()
    if body != defaults:
        fail('the shipped file does not list the built-in defaults')
    # negative control: the check must reject a bad value
    with open(full, 'a') as f:
        f.write('workers = many\n')
    if run([alignd, '--check-config', '-c', full]).returncode == 0:
        fail('--check-config accepted workers = many')
    os.unlink(full)
    print(f'ok shipped configuration: valid, {len(body)} keys at their defaults')


def dpkg(*args):
    """dpkg, waiting a while for the lock if an apt run holds it."""
    for _ in range(30):
        r = run(['dpkg'] + list(args), env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
        if r.returncode == 0 or 'lock' not in r.stderr:
            return r
        time.sleep(2)
    return r


def pkg_status():
    r = run(['dpkg-query', '-W', '-f', '${db:Status-Status}', 'alignd'])
    return r.stdout.strip() if r.returncode == 0 else 'not-installed'


def wait_socket(path, proc, limit=30.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                s.close()
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def sandbox_install(deb, tmp):
    """Runs the install part in private mount and PID namespaces, on a
    copy-on-write view of this machine: the real dpkg, adduser and daemon,
    while nothing of it reaches the real system and everything started
    there dies with the namespace."""
    if os.geteuid() != 0:
        print('skip real install: not root'); return
    if os.environ.get('ALIGND_DEB_INSTALL') == '0':
        print('skip real install: ALIGND_DEB_INSTALL=0'); return
    if not shutil.which('unshare'):
        print('skip real install: unshare missing'); return
    cmd = ['unshare', '--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private',
           '/usr/bin/python3', os.path.abspath(__file__), '--sandbox', deb, tmp]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        fail(f'the install sandbox did not finish in 240 s: {e.stdout}{e.stderr}')
        return
    sys.stdout.write(r.stdout + r.stderr)
    if r.returncode == 77 or (r.returncode != 0 and r.stderr.startswith('unshare: ')):
        print('skip real install: no namespaces or overlayfs here')
    elif r.returncode != 0:
        fail(f'real install: exit {r.returncode}')


def sandbox_main(deb, tmp):
    """In the new namespaces (PID 1 there): an overlay of / whose upper layer
    is a tmpfs, with its own /proc, the real /dev and an empty /run (so that
    a systemd on the host, if any, is out of reach: postinst starts
    nothing), then chroot into it."""
    top = os.path.join(tmp, 'ovl')
    root = os.path.join(top, 'root')
    os.makedirs(top)
    steps = [['mount', '-t', 'tmpfs', 'tmpfs', top],
             ['mkdir', f'{top}/upper', f'{top}/work', root],
             ['mount', '-t', 'overlay', 'overlay', '-o',
              f'lowerdir=/,upperdir={top}/upper,workdir={top}/work', root],
             ['mount', '-t', 'proc', 'proc', f'{root}/proc'],
             ['mount', '--rbind', '/dev', f'{root}/dev'],
             ['mount', '-t', 'tmpfs', 'tmpfs', f'{root}/run']]
    for c in steps:
        r = run(c)
        if r.returncode != 0:
            print(f'sandbox: {" ".join(c)}: {r.stderr.strip()}')
            sys.exit(77)
    os.chroot(root)
    os.chdir('/')
    # A machine without alignd: whatever a developer left here (a package,
    # the user, a state directory) is removed from the view, not from disk.
    if pkg_status() != 'not-installed':
        dpkg('--purge', 'alignd')
    for c in (['deluser', '--quiet', '--system', USER], ['delgroup', '--quiet', USER]):
        run(c)
    for p in STATE_PATHS:
        if os.path.lexists(p):
            print(f'sandbox: hiding {p} (it exists on this machine)')
            run(['rm', '-rf', p])
    real_install(deb, tmp)
    sys.exit(1 if failed else 0)


def real_install(deb, tmp):
    proc = None
    rundir = tempfile.mkdtemp(prefix='alignd-deb-run.', dir='/tmp')
    try:
        r = dpkg('-i', deb)
        if r.returncode != 0:
            fail(f'dpkg -i: {r.stdout}{r.stderr}')
            return
        pw = pwd.getpwnam(USER)
        if pw.pw_uid >= 1000 or pw.pw_dir != '/var/lib/alignd' or not pw.pw_shell.endswith('nologin'):
            fail(f'user {USER}: uid {pw.pw_uid} home {pw.pw_dir} shell {pw.pw_shell}')
        st = os.stat('/var/lib/alignd')
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (pw.pw_uid, pw.pw_gid, 0o750):
            fail(f'/var/lib/alignd: {st.st_uid}:{st.st_gid} {oct(stat.S_IMODE(st.st_mode))}')
        for link in STATE_PATHS[3:]:
            if os.readlink(link) != '/lib/systemd/system/' + os.path.basename(link):
                fail(f'{link} -> {os.readlink(link)}')
        if pkg_status() != 'installed':
            fail(f'dpkg status after -i: {pkg_status()}')
        try:
            pf = grp.getgrnam('postfix')
        except KeyError:
            pf = None
        if pf and os.path.isdir('/var/spool/postfix'):
            st = os.stat('/var/spool/postfix/alignd')
            if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (pw.pw_uid, pf.gr_gid, 0o750):
                fail(f'/var/spool/postfix/alignd: {st.st_uid}:{st.st_gid} '
                     f'{oct(stat.S_IMODE(st.st_mode))}')
        print(f'ok dpkg -i: user {USER} ({pw.pw_uid}), /var/lib/alignd 0750, units enabled')

        # An upgrade (here: the same version again) keeps an edited
        # conffile and the user, and postinst copes with both existing.
        conf = '/etc/alignd/alignd.conf'
        with open(conf, 'a') as f:
            f.write('authserv_id = deb-test.example\n')
        r = dpkg('-i', deb)
        if r.returncode != 0:
            fail(f'dpkg -i again: {r.stdout}{r.stderr}')
        if 'authserv_id = deb-test.example\n' not in open(conf).read():
            fail('the edited conffile was replaced on upgrade')
        if pwd.getpwnam(USER).pw_uid != pw.pw_uid:
            fail('the user changed on upgrade')
        print('ok dpkg -i again: the edited conffile and the user are kept')

        # The installed daemon as the package's user, on a private socket,
        # with the history store in the packaged state directory (so its
        # ownership is tested). No DNS is needed to answer PING.
        os.chown(rundir, pw.pw_uid, pw.pw_gid)
        os.chmod(rundir, 0o750)
        sock = os.path.join(rundir, 'alignd.sock')
        log = open(os.path.join(tmp, 'alignd.log'), 'w')
        proc = subprocess.Popen(
            ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups',
             '--', '/usr/sbin/alignd', '-c', '/etc/alignd/alignd.conf', '--socket', sock,
             '--set', 'workers=1'],
            stdout=log, stderr=subprocess.STDOUT)
        if not wait_socket(sock, proc):
            fail(f'the installed daemon did not listen: {open(log.name).read()}')
            return
        r = run(['/usr/bin/alignc', '-s', sock, '--ping'])
        if r.returncode != 0 or 'PONG' not in r.stdout:
            fail(f'alignc --ping: rc={r.returncode} {r.stdout}{r.stderr}')
        else:
            print('ok installed alignd answers alignc --ping as ' + USER)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            fail(f'alignd exit after SIGTERM: {rc}: {open(log.name).read()}')
        proc = None
        hist = '/var/lib/alignd/history.sqlite'
        if not os.path.exists(hist) or os.stat(hist).st_uid != pw.pw_uid:
            fail(f'{hist} was not written by {USER}: {open(log.name).read()}')

        # remove keeps the configuration, the user and the state; purge
        # takes them all
        r = dpkg('--remove', 'alignd')
        if r.returncode != 0:
            fail(f'dpkg --remove: {r.stdout}{r.stderr}')
        kept = [p for p in (conf, hist) if not os.path.exists(p)]
        if os.path.exists('/usr/sbin/alignd') or kept or pkg_status() != 'config-files':
            fail(f'after dpkg --remove: status {pkg_status()}, missing {kept}')
        else:
            print('ok dpkg --remove: programs gone, configuration and state kept')
        r = dpkg('--purge', 'alignd')
        if r.returncode != 0:
            fail(f'dpkg --purge: {r.stdout}{r.stderr}')
        left = [p for p in STATE_PATHS + ['/usr/sbin/alignd'] if os.path.lexists(p)]
        for db in (pwd.getpwnam, grp.getgrnam):
            try:
                db(USER)
                left.append(f'{"user" if db is pwd.getpwnam else "group"} {USER}')
            except KeyError:
                pass
        if pkg_status() != 'not-installed':
            left.append(f'dpkg status {pkg_status()}')
        if left:
            fail(f'left after dpkg --purge: {left}')
        else:
            print('ok dpkg --purge: user, group, state, configuration and unit links gone')
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(rundir, ignore_errors=True)


def main():
    # One package test at a time on this machine (the install part is global).
    lock = open('/tmp/alignd-test-deb.lock', 'w')
    fcntl.flock(lock, fcntl.LOCK_EX)
    tmp = tempfile.mkdtemp(prefix='alignd-deb.')
    try:
        version = run(['dpkg-parsechangelog', '-l', os.path.join(SRC, 'debian/changelog'),
                       '-S', 'Version']).stdout.strip()
        tree = os.path.join(tmp, f'alignd-{version}')
        copy_tree(tree)
        env = dict(os.environ)
        env.setdefault('DEB_BUILD_OPTIONS', 'parallel=2')
        for k in [k for k in env if k.startswith(('MESON', 'ASAN', 'UBSAN', 'LSAN'))]:
            del env[k]              # the package is built as Debian builds it
        t0 = time.monotonic()
        with open(os.path.join(tmp, 'build.log'), 'w') as log:
            r = subprocess.run(['dpkg-buildpackage', '-us', '-uc', '-b'], cwd=tree,
                               stdout=log, stderr=subprocess.STDOUT, env=env)
        if r.returncode != 0:
            print(''.join(open(os.path.join(tmp, 'build.log')).readlines()[-60:]))
            fail(f'dpkg-buildpackage exit {r.returncode}')
            return
        debs = glob.glob(os.path.join(tmp, 'alignd_*.deb'))
        if len(debs) != 1:
            fail(f'want one alignd_*.deb, got {debs}')
            return
        deb = debs[0]
        print(f'ok dpkg-buildpackage: {os.path.basename(deb)} in {time.monotonic() - t0:.0f} s')
        # dh_auto_test runs the unit suite unless DEB_BUILD_OPTIONS says nocheck
        m = re.search(r'^Ok:\s+(\d+)', open(os.path.join(tmp, 'build.log')).read(), re.M)
        if 'nocheck' not in env['DEB_BUILD_OPTIONS'] and not (m and int(m.group(1)) > 0):
            fail('the package build ran no unit test')
        elif m:
            print(f'ok the package build ran {m.group(1)} unit tests')

        changes = glob.glob(os.path.join(tmp, 'alignd_*.changes'))
        r = run(['lintian', '--pedantic', '-I'] + changes)
        tags = [l for l in r.stdout.splitlines() if l[:2] in ('E:', 'W:')]
        for l in tags:
            fail('lintian ' + l)
        if r.returncode not in (0, 1) or (r.returncode == 1 and not tags):
            fail(f'lintian exit {r.returncode}: {r.stdout}{r.stderr}')
        if not tags:
            print('ok lintian: no errors, no warnings')
        for l in r.stdout.splitlines():
            if not l.startswith(('E:', 'W:', 'N:')):
                print('  lintian ' + l)

        root = os.path.join(tmp, 'root')
        subprocess.run(['dpkg-deb', '-x', deb, root], check=True)
        check_files(root)
        check_build_depends(deb)
        check_control(deb, root)
        check_config(root)
        sandbox_install(deb, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.close()


if len(sys.argv) == 4 and sys.argv[1] == '--sandbox':
    sandbox_main(sys.argv[2], sys.argv[3])
main()
print('deb: ' + ('FAIL' if failed else 'all passed'))
sys.exit(1 if failed else 0)
