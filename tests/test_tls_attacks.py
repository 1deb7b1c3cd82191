"""Attacks on the client's TLS (modules/mqtt_tls.py): hostile TLS servers,
a TLS mosquitto with modem faults, concurrent writers, cancellations, and
misuse of every "ssl" option; both interpreters.

Device side: tests/scenarios/tls_attacks.py.  The hostile servers:
tests/tls_attack_server.py.  The bugs these attacks found (each test's
docstring says which) are fixed; the tests keep them fixed.
"""
import os
import uuid

import pytest

from broker import Broker, free_port
from tls_attack_server import TLSAttackServer
from tls_pki import PKI
from test_sim800l import sim  # noqa: F401  (a fixture)

VIAS = ("native", "sim_sync", "sim_async")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("tls-attack-pki")))


@pytest.fixture(scope="module")
def tls_broker(pki, tmp_path_factory):
    """mosquitto with a TLS 1.2 listener (server-ec, CA ec) at .tls_port."""
    port, mtls_port = free_port(), free_port()
    cert, key = pki.server_ec
    extra = ("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\ncafile %s\ntls_version tlsv1.2\n"
             % (port, cert, key, pki.ec.cert))
    extra += ("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\ncafile %s\ntls_version tlsv1.2\n"
              "require_certificate true\n" % (mtls_port, cert, key, pki.ec.cert))
    b = Broker(str(tmp_path_factory.mktemp("tls-attack-mosq")), extra_config=extra).start()
    b.tls_port, b.mtls_port = port, mtls_port
    yield b
    b.stop()


def ca_ssl(pki, **kw):
    d = {"cafile": pki.ec.cert, "server_hostname": "localhost"}
    d.update(kw)
    return d


def sim_params(sim, **kw):        # noqa: F811
    p = dict(uart_port=sim.port, host="127.0.0.1", timeouts="fast")
    p.update(kw)
    return p


def topic():
    return "tls-attack/" + uuid.uuid4().hex[:10]


# ---- cancellation of a publish the TLS link holds ---------------------------

def test_cancelled_publish_does_not_swallow_the_next(interp, run_scenario, tls_broker, pki):
    """Found by this attack: a publish cancelled while its TLS record waited
    for the link made the next publish of the same length vanish (the TLS
    link answered it from the cancelled one's record).  Now a write is
    taken whole (record staged) or not at all."""
    out = run_scenario(interp, "tls_attacks", "cancel_publish", via="gated",
                       port=tls_broker.tls_port, ssl=ca_ssl(pki), topic=topic(), timeout=30)
    print(out)
    assert out["a"] == "done"                      # taken: its record staged
    assert out["b"] == "cancelled", out            # waited (the link took nothing): the attack
    assert out["publish_c"] == "ok" and out["disconnects"] == 0, out
    assert out["got"] == [b"A" * 20, b"C" * 20, b"Dd" * 10], out


# ---- hostile TLS servers ----------------------------------------------------

def _stall_before_server_hello(c):
    c.stall(30)


def _stall_after_server_hello(c):
    flight = c.first_flight()
    c.send_raw(flight[:90])            # ServerHello (and a bit), then nothing
    c.stall(30)


def _certificate_then_drop(c):
    flight = c.first_flight()
    c.send_raw(flight[:len(flight) - 30])  # all but the end of the first flight
    c.close()


@pytest.fixture
def hostile_tls(pki):
    made = []

    def make(script, **kw):
        cert, key = pki.server_ec
        s = TLSAttackServer(cert, key, script, **kw).start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def _vparams(via_, sim, **kw):          # noqa: F811
    kw["via"] = via_
    if via_.startswith("sim"):
        return sim_params(sim, **kw)
    return kw


HANDSHAKE_ATTACKS = {
    "stall_before_server_hello": _stall_before_server_hello,
    "stall_after_server_hello": _stall_after_server_hello,
    "certificate_then_drop": _certificate_then_drop,
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("attack", sorted(HANDSHAKE_ATTACKS))
def test_handshake_attack_fails_in_time_and_clearly(interp, via, attack, run_scenario,
                                                    hostile_tls, pki, sim):  # noqa: F811
    srv = hostile_tls(HANDSHAKE_ATTACKS[attack])
    out = run_scenario(interp, "tls_attacks", "connect_fails", timeout=40,
                       **_vparams(via, sim, port=srv.port, ssl=ca_ssl(pki),
                                  timeout_ms=2000))
    print(out)
    assert "error" in out, out
    e = out["error"]
    # within timeout_ms (+ the modem's own round trips)
    assert out["ms"] < 2000 + 2500, out
    assert not out["isconnected"]
    assert is_oserror(e) and e["text"], out
    if via == "sim_async":
        assert out["gap"] < 250, out         # the event loop was never held


OSERRORS = ("OSError", "ConnectionResetError", "ConnectionAbortedError", "TimeoutError",
            "ConnectionRefusedError", "BrokenPipeError", "SSLError", "IsADirectoryError",
            "PermissionError", "FileNotFoundError")


def is_oserror(e):
    return e["type"] in OSERRORS and isinstance(e["errno"], int)


def says_tls(e):
    """docs/tls.md, When it fails: 'Every failure is an OSError whose text
    starts with TLS: and names the cause'."""
    text = e["text"]
    for prefix in ("[Errno %s] " % e["errno"], "ECONNRESET: ", "ECONNABORTED: ", "ETIMEDOUT: ",
                   "EIO: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return is_oserror(e) and text.startswith("TLS:")


@pytest.mark.parametrize("via", ("sim_async", "sim_sync"))
def test_stalled_handshake_error_says_tls(interp, via, run_scenario, hostile_tls, pki,
                                          sim):  # noqa: F811
    srv = hostile_tls(_stall_after_server_hello)
    out = run_scenario(interp, "tls_attacks", "connect_fails", timeout=40,
                       **_vparams(via, sim, port=srv.port, ssl=ca_ssl(pki), timeout_ms=1500))
    print(out)
    assert "error" in out and out["ms"] < 1500 + 2500, out
    assert says_tls(out["error"]), out


# ---- hostile TLS servers after the handshake --------------------------------

from hostile_broker import publish as mqtt_publish  # noqa: E402


def _garbage_records(c):
    c.mqtt_connect()
    c.stall(0.3)
    c.send_raw(b"\x17\x03\x03\x00\x40" + os.urandom(64))   # application data, bad MAC
    c.stall(30)


def _truncated_record_then_silence(c):
    c.mqtt_connect()
    c.stall(0.3)
    c.send_raw(b"\x17\x03\x03\x01\x00" + os.urandom(20))   # 256 announced, 20 sent
    c.stall(30)


def _close_notify_mid_packet(c):
    c.mqtt_connect()
    c.stall(0.3)
    c.send_app(mqtt_publish(b"t/cut", b"x" * 40)[:9])
    c.close_notify()
    c.stall(30)


def _huge_record(c):
    c.mqtt_connect()
    c.stall(0.3)
    c.send_app(mqtt_publish(b"t/big", b"B" * 16000))      # one record of ~16 KB
    c.send_app(mqtt_publish(b"t/small", b"small one"))
    c.stall(30)


def _flood(c):
    c.mqtt_connect()
    import time
    end = time.monotonic() + 2.0
    i = 0
    while time.monotonic() < end and not c.closed_by_peer:
        c.send_app(mqtt_publish(b"t/flood", b"%06d" % i + b"f" * 30))   # one record each
        i += 1
    c.stall(30)


SESSION_ATTACKS = {
    "garbage_records": (_garbage_records, "error"),
    "truncated_record_then_silence": (_truncated_record_then_silence, "error"),
    "close_notify_mid_packet": (_close_notify_mid_packet, "error"),
    "huge_record": (_huge_record, "small"),
    "flood": (_flood, "flood"),
}


@pytest.mark.parametrize("via", ("native", "sim_async"))
@pytest.mark.parametrize("attack", sorted(SESSION_ATTACKS))
def test_session_attack(interp, via, attack, run_scenario, hostile_tls, pki, sim,  # noqa: F811
                        request):
    script, expect = SESSION_ATTACKS[attack]
    srv = hostile_tls(script)
    out = run_scenario(interp, "tls_attacks", "session", timeout=40,
                       **_vparams(via, sim, port=srv.port, ssl=ca_ssl(pki), timeout_ms=2000,
                                  keepalive=1 if expect == "error" else 0,
                                  ms=2500))
    print({k: (v if k != "got" else (len(v), v[:3])) for k, v in out.items()})
    assert out.get("connected"), out
    if via == "sim_async" or expect == "flood":
        assert out["gap"] < 250, out["gap"]
    if expect == "error":
        assert "error" in out, out
        assert out["got"] == [], out            # nothing cut or forged was delivered
        assert out["ms"] < 3000, out
        if attack == "garbage_records":
            assert says_tls(out["error"]), out
            assert not out["error"]["text"].rstrip().split(" ")[-1].lstrip("-").isdigit(), out
    elif expect == "small":
        assert "error" not in out, out
        assert out["got"] == [(b"t/small", 9, b"small on")] and out["dropped"] == 1, out
    else:
        assert "error" not in out, out
        nums = [int(g[2][:6]) for g in out["got"]]
        assert nums == list(range(len(nums))) and len(nums) > 10, nums[:20]


# ---- misuse of the "ssl" option ----------------------------------------------

def _misuse_cases(pki, folder):
    def f(name, data):
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path
    ca_pem = open(pki.ec.cert, "rb").read()
    ca_der = open(pki.ec.der, "rb").read()
    key_pem = open(pki.server_ec[1], "rb").read()
    ccert, ckey = pki.client
    sub = os.path.join(folder, "adir")
    os.makedirs(sub, exist_ok=True)
    good = {"server_hostname": "localhost"}
    return [
        # (name, ssl, expectation): "ok" must connect; "error" a clear error
        ("directory_as_cafile", dict(good, cafile=sub), "error"),
        ("empty_cafile", dict(good, cafile=f("empty.pem", b"")), "error"),
        ("garbage_pem", dict(good, cafile=f("garbage.pem", b"-----BEGIN CERTIFICATE-----\n"
                                            b"!!!!not base64 at all!!!!\n"
                                            b"-----END CERTIFICATE-----\n")), "error"),
        ("garbage_der", dict(good, cafile=f("garbage.der", os.urandom(300))), "error"),
        ("key_as_ca", dict(good, cafile=f("key-as-ca.pem", key_pem)), "error"),
        ("cert_as_key", dict(good, cafile=pki.ec.cert, certfile=ccert, keyfile=ccert), "error"),
        ("directory_as_certfile", dict(good, cafile=pki.ec.cert, certfile=sub, keyfile=ckey),
         "error"),
        ("cadata_list", dict(good, cadata=[ca_pem.decode()]), "error"),
        ("verify_no", dict(good, cafile=pki.ec.cert, verify="no"), "error"),
        ("hostname_int", dict(good, cafile=pki.ec.cert, server_hostname=127), "error"),
        ("unknown_key", dict(good, cafile=pki.ec.cert, ca="x"), "error"),
        ("huge_cadata_bundle", dict(good, cadata=(ca_pem * 200).decode()), "ok"),
        ("der_with_trailing_junk", dict(good, cafile=f("junk.der", ca_der + b"\x00junk")),
         "either"),
        ("pem_crlf", dict(good, cafile=f("crlf.pem", ca_pem.replace(b"\n", b"\r\n"))), "ok"),
        ("der_cafile", dict(good, cafile=pki.ec.der), "ok"),
    ]


MISUSE_OK_LATER = {
    # PEM that is common in the wild but does not start with "-----BEGIN "
    "pem_with_leading_comment": lambda pki, f: dict(
        server_hostname="localhost",
        cafile=f("commented.pem", b"## Bundle of CA Root Certificates\n##\n\n"
                 + open(pki.ec.cert, "rb").read())),
    "pem_with_bom": lambda pki, f: dict(
        server_hostname="localhost",
        cafile=f("bom.pem", b"\xef\xbb\xbf" + open(pki.ec.cert, "rb").read())),
}


def test_misuse_of_ssl_options(interp, run_scenario, tls_broker, pki, tmp_path):
    cases = _misuse_cases(pki, str(tmp_path))
    out = run_scenario(interp, "tls_attacks", "misuse", timeout=60, port=tls_broker.tls_port,
                       cases=[(n, s) for n, s, _ in cases], timeout_ms=3000)
    for r in out:
        print(r)
    bad = []
    for (name, ssl, expect), r in zip(cases, out):
        assert r["name"] == name
        if expect == "ok" or (expect == "either" and r["stage"] == "connected"):
            if r["stage"] != "connected":
                bad.append(r)
            continue
        e = r.get("error")
        if r["stage"] == "connected" or e is None:
            bad.append(r)
        elif e["type"] not in ("ValueError", "TypeError") and not is_oserror(e):
            bad.append(r)                       # neither ValueError, TypeError nor OSError
        elif r.get("ms", 0) > 5000:
            bad.append(r)
    assert not bad, bad


def _file_maker(folder):
    def f(name, data):
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path
    return f


def test_unusable_file_error_names_the_option(interp, run_scenario, tls_broker, pki, tmp_path):
    cases = [c for c in _misuse_cases(pki, str(tmp_path))
             if c[0] in ("directory_as_cafile", "garbage_pem", "garbage_der", "key_as_ca",
                         "cert_as_key", "directory_as_certfile")]
    out = run_scenario(interp, "tls_attacks", "misuse", timeout=60, port=tls_broker.tls_port,
                       cases=[(n, s) for n, s, _ in cases], timeout_ms=3000)
    unnamed = []
    for (name, ssl, _), r in zip(cases, out):
        text = r.get("error", {}).get("text", "")
        key = "certfile" if "certfile" in name else "keyfile" if "key" in name.split("_")[-1] \
            else "cafile"
        if r["stage"] == "connected" or (key not in text and ssl[key] not in text):
            unnamed.append((name, r))
    assert not unnamed, unnamed


def test_mismatched_key_is_refused(interp, run_scenario, tls_broker, pki):
    """A keyfile that does not belong to certfile.  CPython refuses it at
    connect (KEY_VALUES_MISMATCH).  MicroPython's tls module has no call
    that checks the pair (mbedTLS's mbedtls_pk_check_pair is not bound), so
    there the key is only tried when a broker asks for the certificate: a
    broker that requires one refuses the handshake (the signature made
    with the wrong key does not verify).  Both: never a session with a
    broker that checks."""
    ccert, _ = pki.client
    ssl = {"server_hostname": "localhost", "cafile": pki.ec.cert, "certfile": ccert,
           "keyfile": pki.server_ec[1]}
    out = run_scenario(interp, "tls_attacks", "misuse", timeout=30, port=tls_broker.mtls_port,
                       cases=[("mismatched_key", ssl)], timeout_ms=3000)
    print(out)
    assert out[0]["stage"] != "connected", out
    assert "TLS:" in out[0]["error"]["text"] or "config['ssl']" in out[0]["error"]["text"], out
    if interp == "cpython":
        out = run_scenario(interp, "tls_attacks", "misuse", timeout=30, port=tls_broker.tls_port,
                           cases=[("mismatched_key", ssl)], timeout_ms=3000)
        assert out[0]["stage"] != "connected", out


@pytest.mark.parametrize("case", ("pem_with_leading_comment", "pem_with_bom", "ec_params_key"))
def test_pem_as_found_in_the_wild(interp, case, run_scenario, tls_broker, pki, tmp_path, request):
    """docs/tls.md: cafile 'PEM (one or more certificates; a bundle is loaded
    whole)'; keyfile 'PEM or DER; EC P-256'.  A bundle such as curl's
    cacert.pem starts with comment lines; `openssl ecparam -genkey` writes an
    EC PARAMETERS block before the key."""
    f = _file_maker(str(tmp_path))
    if case == "ec_params_key":
        import subprocess
        params = subprocess.run(["openssl", "ecparam", "-name", "prime256v1"],
                                capture_output=True, check=True).stdout
        ccert, ckey = pki.client
        ssl = {"server_hostname": "localhost", "cafile": pki.ec.cert, "certfile": ccert,
               "keyfile": f("ecparams.key", params + open(ckey, "rb").read())}
    else:
        ssl = MISUSE_OK_LATER[case](pki, f)
    out = run_scenario(interp, "tls_attacks", "misuse", timeout=30, port=tls_broker.tls_port,
                       cases=[(case, ssl)], timeout_ms=3000)
    print(out)
    assert out[0]["stage"] == "connected", out


def test_empty_cafile_does_not_fall_back_to_other_cas(interp, run_scenario, tls_broker, pki,
                                                      tmp_path, request):
    """An empty cafile (a deploy that copied nothing) must not mean "trust
    whatever the system trusts".  The scenario points CPython's default CA
    store (SSL_CERT_FILE) at the broker's CA: if the empty cafile falls back
    to it, the session connects although cafile holds no CA at all."""
    f = _file_maker(str(tmp_path))
    ssl = {"server_hostname": "localhost", "cafile": f("empty.pem", b"")}
    out = run_scenario(interp, "tls_attacks", "misuse", timeout=30, port=tls_broker.tls_port,
                       cases=[("empty_cafile", ssl)], timeout_ms=3000,
                       ssl_cert_file=pki.ec.cert)
    print(out)
    assert out[0]["stage"] != "connected", out


def test_verify_false_warns_once_per_process(interp, start_scenario, tls_broker):
    s = start_scenario(interp, "tls_attacks", "warn_once", port=tls_broker.tls_port,
                       via="native")
    assert s.result(30) == "done"
    warnings = [line for line in s.lines if "without certificate verification" in line]
    assert len(warnings) == 1, s.lines


# ---- a TLS mosquitto through the modem, with the modem's faults -----------------

MODEM_FAULTS = {
    "closed_mid_send": lambda sim: sim.arm("closed_mid_send", on="AT+CIPSEND", nth=8),
    "pdp_deact": lambda sim: sim.arm("pdp_deact", on="AT+CIPRXGET=2", nth=10),
    "garbage_on_uart": lambda sim: [sim.arm("garbage", on="AT+CIPRXGET=2", nth=n, n=40)
                                    for n in (4, 9, 15)],
    "silence": lambda sim: sim.arm("silence", on="AT+CIPSEND", nth=9, seconds=2.5),
    "closed": lambda sim: sim.arm("closed", on="AT+CIPSEND", nth=7),
}


@pytest.mark.parametrize("flavour,fault", [("sim_async", f) for f in sorted(MODEM_FAULTS)]
                         + [("sim_sync", "closed_mid_send"), ("sim_sync", "pdp_deact")])
def test_modem_fault_during_tls_session(interp, flavour, fault, start_scenario, tls_broker, pki,
                                        sim):  # noqa: F811
    s = start_scenario(interp, "tls_attacks", "modem_faults",
                       **_vparams(flavour, sim, port=tls_broker.tls_port, ssl=ca_ssl(pki),
                                  topic=topic(), count=12, timeout_ms=2500,
                                  cid="mf-" + uuid.uuid4().hex[:8]))
    s.expect("READY", timeout=20)
    MODEM_FAULTS[fault](sim)
    out = s.result(60)
    print({k: v for k, v in out.items() if k != "got"}, sorted(set(out["got"])), dict(sim.fired))
    assert out["bad"] == [], out                         # never a corrupted message
    assert sorted(set(out["got"])) == list(range(12)), out   # QoS 1: every one arrives
    assert sum(sim.fired.values()) >= 1, sim.fired
    if fault != "garbage_on_uart":
        assert out["reconnects"] >= 1, out
    # duplicates only after a reconnect
    if out["reconnects"] == 0:
        assert len(out["got"]) == 12, out


@pytest.mark.parametrize("reconnect", (False, True))
def test_concurrent_publishers_over_tls_modem(interp, reconnect, run_scenario, tls_broker, pki,
                                              sim):  # noqa: F811
    if reconnect:
        sim.arm("closed", on="AT+CIPSEND", nth=12)
    out = run_scenario(interp, "tls_attacks", "concurrent", timeout=60,
                       **_vparams("sim_async", sim, port=tls_broker.tls_port, ssl=ca_ssl(pki),
                                  topic=topic(), tasks=3, per=6, reconnect=reconnect,
                                  cid="cc-" + uuid.uuid4().hex[:8]))
    print({k: v for k, v in out.items() if k != "got"}, sorted(out["got"]))
    assert out["bad"] == [], out
    want = {(t, i, (i + t) % 2) for t in range(3) for i in range(6)}
    got = out["got"]
    if not reconnect:
        assert out["errors"] == [], out
        assert sorted(got) == sorted(want), out         # each exactly once
    else:
        q1 = {m for m in want if m[2] == 1}
        assert q1 <= set(got), out                      # QoS 1 at least once
        assert set(got) <= want, out


def test_cancel_storm_over_tls_modem(interp, run_scenario, tls_broker, pki, sim):  # noqa: F811
    out = run_scenario(interp, "tls_attacks", "cancel_storm", timeout=60,
                       **_vparams("sim_async", sim, port=tls_broker.tls_port, ssl=ca_ssl(pki),
                                  topic=topic(), count=40, cid="cs-" + uuid.uuid4().hex[:8]))
    print(out)
    assert out["cancelled"], out                   # the attack happened
    assert set(out["got"]) <= set(range(40)), out
    if out["disconnects"] == 0:
        missing = sorted(set(out["ok"]) - set(out["got"]))
        assert not missing, ("published, never arrived", missing, out)


def test_cancel_storm_plaintext_control(interp, run_scenario, tls_broker, sim):  # noqa: F811
    """The same storm without TLS holds: the loss above is the TLS link's."""
    out = run_scenario(interp, "tls_attacks", "cancel_storm", timeout=60,
                       **_vparams("sim_async", sim, port=tls_broker.port, ssl=False,
                                  topic=topic(), count=40, cid="cp-" + uuid.uuid4().hex[:8]))
    assert out["cancelled"], out
    assert out["disconnects"] == 0, out
    assert set(out["ok"]) <= set(out["got"]) <= set(range(40)), out


@pytest.mark.parametrize("via", VIAS)
def test_messages_bigger_than_a_record(interp, via, run_scenario, tls_broker, pki,
                                       sim):  # noqa: F811
    out = run_scenario(interp, "tls_attacks", "big_roundtrip", timeout=60,
                       **_vparams(via, sim, port=tls_broker.tls_port, ssl=ca_ssl(pki),
                                  topic=topic(), cid="big-" + uuid.uuid4().hex[:8]))
    print(out)
    assert out["missing"] == [] and out["extra"] == [] and out["dropped"] == 0, out
    assert out["disconnects"] == 0, out


@pytest.mark.parametrize("case", ("garbage_pem", "directory_as_cafile"))
def test_unusable_ca_with_reconnect_fails_connect(interp, case, run_scenario, tls_broker, pki,
                                                  tmp_path):
    """reconnect: True does not turn a CA that cannot be loaded into an
    endless silent retry: connect() reports it (and returns)."""
    ssl = [s for n, s, _ in _misuse_cases(pki, str(tmp_path)) if n == case][0]
    out = run_scenario(interp, "tls_attacks", "reconnect_misuse", timeout=30,
                       port=tls_broker.tls_port, ssl=ssl, timeout_ms=2000)
    print(out)
    assert "error" in out, out
