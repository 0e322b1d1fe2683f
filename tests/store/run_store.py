#!/usr/bin/python3
"""Runs the store unit tests (test_store) against both back ends: a SQLite
file in a temporary directory, and a private PostgreSQL server started
here (tests/lib/pgserver.py) and stopped by PID at the end.

usage: run_store.py TEST_STORE_BINARY [sqlite|postgresql ...]
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pgserver import PgServer  # noqa: E402

STORES = ("fields", "retention", "migrate")


def main():
    exe = sys.argv[1]
    backends = sys.argv[2:] or ["sqlite", "postgresql"]
    failed = 0
    for b in backends:
        if b == "sqlite":
            d = tempfile.mkdtemp(prefix="alignd-store-")
            try:
                rc = subprocess.run([exe, "sqlite:" + d + "/%s.sqlite"]).returncode
            finally:
                shutil.rmtree(d, ignore_errors=True)
        else:
            with PgServer() as pg:
                for name in STORES:
                    pg.createdb(name)
                rc = subprocess.run([exe, pg.uri("%s")]).returncode
        print("backend %s: %s" % (b, "ok" if rc == 0 else "FAILED (%d)" % rc))
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
