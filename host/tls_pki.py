"""Certificates made with `openssl`: for the TLS tests, and a throwaway CA for trying TLS (`make demo`).

Two CAs we trust (ECDSA P-256 and RSA-2048), one we do not, and server
certificates for 127.0.0.1 / localhost: good ones of each key type, an
expired one, one not valid yet, one for another host; a client
certificate for mutual TLS.  `openssl ca` is used because it is the one
openssl command (in 3.0) that takes explicit start and end dates.
"""
import os
import subprocess

_CA_CONF = """
[ ca ]
default_ca = ca_here
[ ca_here ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
[ server_ext ]
basicConstraints = CA:FALSE
subjectAltName = {san}
extendedKeyUsage = serverAuth
[ client_ext ]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
"""


def _run(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr))
    return r.stdout


def _key(path, kind):
    if kind == "ec":
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    else:
        _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)


class CA:
    def __init__(self, folder, name, kind):
        self.dir = os.path.join(folder, name)
        os.makedirs(os.path.join(self.dir, "new"), exist_ok=True)
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.kind = kind
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        _key(self.key, kind)
        _run("req", "-x509", "-new", "-key", self.key, "-out", self.cert, "-days", "3650",
             "-subj", "/CN=Test CA %s" % name, "-sha256")
        self.der = os.path.join(self.dir, "ca.der")
        _run("x509", "-in", self.cert, "-outform", "DER", "-out", self.der)

    def issue(self, name, start=None, end=None, san="IP:127.0.0.1,DNS:localhost",
              client=False, kind=None):
        """A certificate and key (PEM files): start/end as YYMMDDHHMMSSZ, or
        valid from yesterday for a year."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        _key(key, kind or self.kind)
        _run("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + name)
        conf = os.path.join(self.dir, name + ".cnf")
        with open(conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir, san=san))
        args = ["ca", "-batch", "-config", conf, "-keyfile", self.key, "-cert", self.cert,
                "-in", csr, "-out", cert, "-notext",
                "-extensions", "client_ext" if client else "server_ext"]
        if start:
            args += ["-startdate", start, "-enddate", end]
        else:
            args += ["-days", "365"]
        _run(*args)
        return cert, key


class PKI:
    """Everything the TLS tests need, in one folder."""

    def __init__(self, folder):
        self.folder = folder
        self.ec = CA(folder, "ec", "ec")
        self.rsa = CA(folder, "rsa", "rsa")
        self.stranger = CA(folder, "stranger", "ec")
        self.server_ec = self.ec.issue("server-ec")
        self.server_rsa = self.rsa.issue("server-rsa")
        self.expired = self.ec.issue("expired", start="200101000000Z", end="210101000000Z")
        self.future = self.ec.issue("future", start="400101000000Z", end="410101000000Z")
        self.wrong_host = self.ec.issue("wrong-host", san="DNS:broker.example.com")
        self.unknown = self.stranger.issue("unknown-ca")
        self.client = self.ec.issue("device-1", client=True)


def demo_pki(folder):
    """A throwaway CA and a broker certificate for localhost / 127.0.0.1
    (ECDSA P-256), for trying TLS on this machine (`make demo`): returns
    (the CA as DER, for the board; (certificate, key) PEM files, for mosquitto)."""
    os.makedirs(folder, exist_ok=True)
    ca = CA(folder, "demo-ca", "ec")
    return ca.der, ca.issue("broker")
