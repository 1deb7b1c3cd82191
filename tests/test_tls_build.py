"""build/micropython carries the `tls` module (MicroPython's mbedTLS binding),
built from the mbedTLS source the RP2040 image uses, with the board's
config: TLS 1.2 only.  A handshake against CPython's ssl on loopback."""
import os
import re
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import MICROPYTHON, ROOT


def mbedtls_deb_version():
    with open(os.path.join(ROOT, "firmware", "common.sh")) as f:
        return re.search(r"^MBEDTLS_DEB_VERSION=(\S+)", f.read(), re.M).group(1)


def upstream_version(deb):  # 3.6.6-0.1~deb13u1 -> 3.6.6
    return deb.split("-")[0].split("+")[0]


def mpy(code, timeout=30):
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first")
    return subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_tls_module_has_the_pinned_mbedtls():
    r = mpy("import tls; print(tls.MBEDTLS_VERSION)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Mbed TLS " + upstream_version(mbedtls_deb_version())


def test_mbedtls_is_linked_in_not_the_system_library():
    r = subprocess.run(["ldd", MICROPYTHON], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "mbed" not in r.stdout, r.stdout


def test_build_cache_keys_on_the_mbedtls_version():
    with open(os.path.join(ROOT, "tools", "build-micropython.sh")) as f:
        script = f.read()
    key = re.search(r"^key=\$\(.*?\n", script, re.M | re.S).group(0)
    assert "mbedtls_ver" in key


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(crt), str(key)


def serve_once(ctx):
    """An echo server for one TLS connection; returns (port, thread, result dict)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    result = {}

    def run():
        try:
            conn, _ = srv.accept()
            conn.settimeout(20)
            with ctx.wrap_socket(conn, server_side=True) as s:
                result["version"] = s.version()
                result["cipher"] = s.cipher()[0]
                s.sendall(s.recv(64).upper())
        except Exception as e:  # reported by the test
            result["error"] = repr(e)
        finally:
            srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv.getsockname()[1], t, result


CLIENT = """
import socket, tls
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(open(%r, "rb").read())  # cadata (DER)
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
s = ctx.wrap_socket(s, server_hostname="localhost")
s.write(b"hello over tls")
print(s.read(14))
s.close()
"""


def server_ctx(cert, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_cert_chain(*cert)
    return ctx


def pem_to_der(crt, tmp_path):
    der = tmp_path / "cert.der"
    subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER", "-out", str(der)], check=True)
    return str(der)


def test_tls12_handshake_with_cpython(cert, tmp_path):
    port, t, result = serve_once(server_ctx(cert, ssl.TLSVersion.TLSv1_2))
    r = mpy(CLIENT % (pem_to_der(cert[0], tmp_path), port))
    t.join(20)
    assert r.returncode == 0, (r.stdout, r.stderr, result)
    assert r.stdout.strip() == "b'HELLO OVER TLS'", (r.stdout, result)
    assert result.get("version") == "TLSv1.2", result


def test_tls13_only_server_is_refused(cert, tmp_path):
    # the board's mbedTLS config has TLS 1.2 only: a TLS 1.3-only peer fails the handshake
    port, t, result = serve_once(server_ctx(cert, ssl.TLSVersion.TLSv1_3))
    r = mpy(CLIENT % (pem_to_der(cert[0], tmp_path), port))
    t.join(20)
    assert r.returncode != 0, r.stdout
    assert "OSError" in r.stderr or "Error" in r.stderr, r.stderr
    assert "version" not in result, result
