#!/usr/bin/python3
"""sd_notify(3) protocol (suite 'units'): alignd started with NOTIFY_SOCKET
pointing at a datagram socket of this test sends READY=1 once it listens,
RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.
This is what a Type=notify unit waits for; no systemd is needed."""
import os, signal, socket, subprocess, sys, tempfile

ALIGND = os.environ['ALIGND']

def expect(sock, want):
    got = []
    while True:
        msg = sock.recv(4096).decode()
        got.append(msg)
        if want in msg.split('\n'):
            return
        if len(got) > 10:
            raise SystemExit(f'FAIL: no {want} in {got}')

with tempfile.TemporaryDirectory() as d:
    ns = os.path.join(d, 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(ns)
    sock.settimeout(30)   # a hang guard, not a speed threshold
    env = dict(os.environ, NOTIFY_SOCKET=ns)
    p = subprocess.Popen([ALIGND, '-s', os.path.join(d, 'a.sock'),
                          '-o', 'dns_forwarders=127.0.0.1', '-o', 'history=off'], env=env)
    try:
        expect(sock, 'READY=1')
        assert os.path.exists(os.path.join(d, 'a.sock')), 'READY=1 before the socket exists'
        print('ok READY=1 after listening')
        p.send_signal(signal.SIGHUP)
        expect(sock, 'RELOADING=1')
        expect(sock, 'READY=1')
        print('ok RELOADING=1, READY=1 on SIGHUP')
        p.send_signal(signal.SIGTERM)
        expect(sock, 'STOPPING=1')
        print('ok STOPPING=1 on SIGTERM')
        rc = p.wait(timeout=60)
        if rc != 0:
            raise SystemExit(f'FAIL: alignd exited {rc}')
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
