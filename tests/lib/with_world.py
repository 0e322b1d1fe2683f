#!/usr/bin/python3
"""Runs a command inside a running test DNS world.

    with_world.py [--cache-dir DIR] [--world YAML] [--keep] -- CMD [ARGS...]

CMD runs with ALIGND_TEST_UNBOUND_CONF (libunbound config of the world),
ALIGND_TEST_RUN_DIR (nsd state; switch files for `server: switch` zones),
ALIGND_TEST_WORLD_DIR (generated data: world.json, dkim/ keys, zones/) and
ALIGND_TEST_NSD_PORT set. The exit status is CMD's (128+N if killed by
signal N). The world is stopped when CMD ends, and on SIGTERM/SIGINT/SIGHUP
(which are passed on to CMD first).
"""

import argparse
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsworld  # noqa: E402


class Stop(Exception):
    pass


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        print("usage: with_world.py [options] -- CMD [ARGS...]",
              file=sys.stderr)
        return 2
    i = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", default=os.environ.get("ALIGND_WORLD_CACHE"))
    ap.add_argument("--world", default=dnsworld.mkworld.DEFAULT_WORLD)
    ap.add_argument("--keep", action="store_true",
                    help="leave the run directory behind (debugging)")
    opts = ap.parse_args(argv[:i])
    cmd = argv[i + 1:]
    if not cmd:
        print("with_world.py: no command", file=sys.stderr)
        return 2

    child = None

    def on_signal(signum, frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        raise Stop(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    try:
        with dnsworld.World(opts.world, cache_dir=opts.cache_dir,
                            keep=opts.keep) as w:
            env = dict(os.environ)
            env.update(w.env())
            child = subprocess.Popen(cmd, env=env)
            rc = child.wait()
            return rc if rc >= 0 else 128 - rc
    except Stop as e:
        if child is not None:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 128 + e.args[0]


if __name__ == "__main__":
    sys.exit(main())
