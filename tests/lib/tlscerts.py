"""Test certificates made with the openssl command in a directory:

    certs = TlsCerts(directory)
    certs.ca, certs.server_cert, certs.server_key     (SAN 127.0.0.1, localhost)
    certs.client_cert, certs.client_key               (CN mta1.test, signed by ca)
    certs.other_ca, certs.rogue_cert, certs.rogue_key (CN rogue.test, another CA)
    certs.wrong_cert, certs.wrong_key                 (by ca, SAN wrong.test only)

Keys are EC P-256 so that making them takes milliseconds; the files live
as long as the directory does.
"""
import os
import subprocess

OPENSSL = "openssl"


def _run(*args, cwd):
    subprocess.run([OPENSSL] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class TlsCerts:
    def __init__(self, directory):
        self.dir = os.path.abspath(os.path.join(directory, "tls"))
        os.makedirs(self.dir, exist_ok=True)
        self.ca, self.ca_key = self._ca("ca", "alignd test CA")
        self.other_ca, self.other_ca_key = self._ca("otherca", "another test CA")
        self.server_cert, self.server_key = self._leaf(
            "server", "alignd.test", self.ca, self.ca_key,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
        self.wrong_cert, self.wrong_key = self._leaf(
            "wrong", "wrong.test", self.ca, self.ca_key,
            "subjectAltName=DNS:wrong.test\nextendedKeyUsage=serverAuth")
        self.client_cert, self.client_key = self._leaf(
            "client", "mta1.test", self.ca, self.ca_key, "extendedKeyUsage=clientAuth")
        self.rogue_cert, self.rogue_key = self._leaf(
            "rogue", "rogue.test", self.other_ca, self.other_ca_key,
            "extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        key = self.path(name + ".key")
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", key, cwd=self.dir)
        return key

    def _ca(self, name, cn):
        key = self._key(name)
        cert = self.path(name + ".pem")
        _run("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "30",
             "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return cert, key

    def _leaf(self, name, cn, ca, ca_key, ext):
        key = self._key(name)
        csr = self.path(name + ".csr")
        cert = self.path(name + ".pem")
        extf = self.path(name + ".ext")
        with open(extf, "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext + "\n")
        _run("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn, cwd=self.dir)
        _run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "30", "-extfile", extf, cwd=self.dir)
        return cert, key

    def daemon_args(self, client_ca=True):
        args = ["--set", "tls_cert_file=" + self.server_cert,
                "--set", "tls_key_file=" + self.server_key]
        if client_ca:
            args += ["--set", "tls_client_ca_file=" + self.ca]
        return args
