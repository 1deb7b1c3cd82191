"""API misuse sweep (issue 11): every public call with wrong types, wrong
ranges, empty, oversize, None, str vs bytes, float qos, bool where int,
mutable-then-mutated arguments and calls in the wrong state, under CPython and
build/micropython, against a real mosquitto.

The calls are made by tests/scenarios/api_misuse.py (one outcome per row);
this file is the table of what each row must do:

- a constructor row names the exception it must raise at once (a set: any of
  them), or "accepted: ok" (constructed, then connect + QoS 1 publish work);
- a call row (on a connected client subscribed to a probe topic) expects
  "raise:<Type>": raised before anything was written (the transport counts
  bytes), no in-flight entry left, and a QoS 1 round trip on the same client
  works afterwards; or "ok:<repr>": the documented result, and the round trip
  works afterwards;
- a state row returns its own list (see each row's docstring in the
  scenario) compared with the value here.
"""
import pytest

TE = {"TypeError"}
VE = {"ValueError"}
BAD = {"TypeError", "ValueError"}     # either is a clear, immediate refusal
OK = "accepted: ok"

CTOR = {
    "ctor config not a dict": TE,
    "ctor recv_buf bytes": TE,
    "ctor recv_buf None": TE,
    "ctor recv_buf read-only memoryview": BAD,          # issue 11 #12
    "ctor recv_buf memoryview of array H": BAD,         # itemsize 2
    "ctor recv_buf 7 bytes": VE,
    "ctor recv_buf bytearray": OK,
    "ctor client_id int": TE,
    "ctor client_id None": TE,
    "ctor client_id str": OK,
    "ctor client_id 65536 bytes": VE,                   # #12
    "ctor client_id not UTF-8": VE,                     # MQTT 1.5.3
    "ctor client_id NUL": VE,                           # MQTT 1.5.3: no U+0000
    "ctor empty client_id persistent": VE,
    "ctor server missing": BAD,
    "ctor server empty": BAD,
    "ctor server bytes": BAD,
    "ctor port 0": VE,
    "ctor port 65536": VE,
    "ctor port str": BAD,
    "ctor port float": BAD,
    "ctor port True": BAD,                              # bool where int
    "ctor keepalive -1": VE,
    "ctor keepalive 65536": VE,
    "ctor keepalive float": BAD,
    "ctor keepalive True": BAD,                         # #12
    "ctor keepalive str": BAD,
    "ctor user int": TE,
    "ctor user 65536 bytes": VE,                        # #12
    "ctor user not UTF-8": VE,
    "ctor password without user": VE,
    "ctor password 65536 bytes": VE,                    # #12
    "ctor last_will str": BAD,                          # #12 (AttributeError on main)
    "ctor last_will list": BAD,
    "ctor last_will topic wildcard": VE,
    "ctor last_will topic 65536 bytes": VE,
    "ctor last_will topic not UTF-8": VE,
    "ctor last_will msg 65536 bytes": VE,               # #12
    "ctor last_will msg int": TE,
    "ctor last_will qos 3": VE,
    "ctor last_will qos float": BAD,                    # TypeError at connect on main
    "ctor last_will qos True": BAD,
    "ctor last_will qos str": BAD,
    "ctor ssl str": BAD,
    "ctor timeout_ms -1": VE,                           # #12
    "ctor timeout_ms 0": VE,                            # every wait would time out at once
    "ctor timeout_ms None": BAD,
    "ctor timeout_ms str": BAD,
    "ctor reconnect_min_ms 0": VE,                      # backoff 0 * 2 = 0: a reconnect storm
    "ctor reconnect_min_ms -5": VE,
    "ctor reconnect_max_ms below min": VE,
    "ctor backlog -1": VE,                              # MemoryError on MicroPython (main)
    "ctor backlog str": BAD,
    "ctor backlog float": BAD,
    "ctor backlog None": BAD,
    "ctor good config": OK,
}

R_TE = {"raise:TypeError"}
R_VE = {"raise:ValueError"}
R_BAD = {"raise:TypeError", "raise:ValueError"}

CALL = {
    "publish topic None": R_TE,
    "publish topic int": R_TE,
    "publish topic empty": R_VE,
    "publish topic list": R_TE,
    "publish topic +": R_VE,
    "publish topic #": R_VE,
    "publish topic NUL": R_VE,
    "publish topic str NUL": R_VE,
    "publish topic 65536 bytes": R_VE,
    "publish topic not UTF-8": R_VE,                    # #5
    "publish topic overlong NUL": R_VE,                 # #5: C0 80 is not UTF-8
    "publish topic UTF-16 surrogate": R_VE,             # #5: ED A0 80 (MQTT 1.5.3)
    "publish topic truncated UTF-8": R_VE,              # #5
    "publish topic QoS1 not UTF-8": R_VE,               # #5
    "publish topic str": {"ok:None"},
    "publish topic str non-ASCII": {"ok:None"},
    "publish topic memoryview": {"ok:None"},
    "publish msg None": R_TE,
    "publish msg int": R_TE,
    "publish msg float": R_TE,
    "publish msg list": R_TE,
    "publish msg QoS1 int": R_TE,
    "publish msg empty": {"ok:None"},
    "publish msg str": {"ok:None"},
    "publish msg bytearray": {"ok:None"},
    "publish msg QoS1 empty": {"ok:True"},
    "publish qos 2": R_VE,
    "publish qos -1": R_VE,
    "publish qos None": R_BAD,
    "publish qos str": R_BAD,
    "publish qos 1.0": R_BAD,                           # #4: and no in-flight slot taken
    "publish qos 0.0": R_BAD,
    "publish qos True": R_BAD,                          # bool where int
    "publish qos 1.5": R_BAD,
    "publish retain str": R_BAD,                        # "no" is truthy: would retain
    "subscribe None": R_TE,
    "subscribe int": R_TE,
    "subscribe empty": R_VE,
    "subscribe 65536 bytes": R_VE,
    "subscribe a/b#": R_VE,
    "subscribe a+/b": R_VE,
    "subscribe a/#/b": R_VE,
    "subscribe NUL": R_VE,
    "subscribe not UTF-8": R_VE,                        # #5
    "subscribe qos 2": R_VE,
    "subscribe qos -1": R_VE,
    "subscribe qos None": R_BAD,
    "subscribe qos 1.0": R_BAD,
    "subscribe qos True": R_BAD,
    "subscribe str": {"ok:True"},
    "subscribe wildcard #": {"ok:True"},
    "unsubscribe None": R_TE,
    "unsubscribe int": R_TE,
    "unsubscribe empty": R_VE,
    "unsubscribe 65536 bytes": R_VE,
    "unsubscribe bad filter": R_VE,
    "unsubscribe not UTF-8": R_VE,                      # #5
    "unsubscribe never subscribed": {"ok:True"},
    "check_msg with nothing": {"ok:None"},
    "mark_read with nothing": {"ok:None"},
    "isconnected": {"ok:True"},
    "reconnect while connected": {"ok:None"},
    "reconnect attempts -1": {"ok:None", "raise:ValueError"},
    # CPython only (the MicroPython heap is 8 MB): remaining length past 268,435,455
    "publish msg 256 MiB": R_VE,
    "publish topic 65535 + msg 256 MiB": R_VE,
}

CPYTHON_ONLY = {"publish msg 256 MiB", "publish topic 65535 + msg 256 MiB"}


def state_expected(interp):
    t = interp.encode()
    return {
        "state publish before connect": ["raise:MQTTError", "raise:MQTTError", 0,
                                         "raise:MQTTError", "raise:MQTTError", "raise:MQTTError"],
        "state calls after disconnect": ["raise:MQTTError", "raise:MQTTError", 0,
                                         "raise:MQTTError", "raise:MQTTError", "ok:None", False],
        "state mark_read twice": [b"one", b"two"],
        "state reconnect keeps subscriptions": ["ok:None", b"a", "ok:None", b"b"],
        # #3: the topic is what the buffer holds at the call
        "state topic bytearray mutated": [(b"am/tbm/" + t + b"/" + x, p) for x, p in (
            (b"a", b"1"), (b"b", b"2"), (b"b", b"3"), (b"c", b"4"), (b"d", b"5"), (b"e", b"6"))],
        "state topic mutated to wildcard": ["raise:ValueError", "raise:ValueError", b"alive", True],
        # finding A1: the re-subscribe after a reconnect is to the topic given at subscribe()
        "state subscribe bytearray mutated": [b"am/sbm/a/" + t],
        "state unsubscribe other type": [],
        "state properties fresh": [0, 0, 0, 0, None, False, 0, False, b"", b""],
    }


def check_state(name, got, interp):
    """Rows whose outcome has a part that may legitimately vary."""
    if name == "state disconnect sticks with reconnect on":
        # issue 11 #11: after disconnect() nothing brings the link back
        first, pub, connected, reconnects = got
        assert first in ("ok:None", "raise:MQTTError"), got
        assert pub in ("raise:MQTTError", "raise:OSError"), got
        assert (connected, reconnects) == (False, 0), got
    elif name == "state connect while connected":
        # finding A3, decided (README: connect()): connect() opens a new
        # session; a clean one has no subscriptions at the broker, and the
        # client forgets them too (none is restored behind the app's back)
        assert got[1:] == [True, None], got
    elif name == "state payload mutated in flight":
        # the ack was deferred; the resend carries the bytes given at the call
        acked, inflight, payloads = got
        assert acked is False and inflight >= 1, got
        assert payloads == [b"hold", b"fill", b"orig"], got
    elif name == "state on_drop raises":
        # finding A2: a raising hook must not break the session: the dropped
        # message is still acknowledged, the next one is delivered
        assert got[-3:] == [True, b"next", 0], got
    else:
        assert got == state_expected(interp)[name], got


@pytest.fixture(scope="module")
def sweep_results(broker):
    """One sweep per interpreter (each ~8 s), shared by the row tests."""
    import conftest
    cache = {}

    def get(interp, tmp):
        if interp not in cache:
            s = conftest.Scenario(interp, "api_misuse", "sweep",
                                  {"port": broker.port, "tag": interp}, str(tmp))
            try:
                cache[interp] = dict((name, out) for name, out in s.result(timeout=180))
            finally:
                s.kill()
        return cache[interp]
    return get


def _rows(interp, results, table):
    """(name, outcome) for each row of table, failing loudly on a missing row."""
    for name in table:
        if interp == "micropython" and name in CPYTHON_ONLY:
            continue
        assert name in results, "the scenario did not run row %r" % name
        yield name, results[name]


def _failures(interp, results):
    bad = []
    for name, got in _rows(interp, results, CTOR):
        want = CTOR[name]
        if (got not in want) if isinstance(want, set) else (got != want):
            bad.append("%s: want %s, got %r" % (name, sorted(want) if isinstance(want, set)
                                                  else want, got))
    for name, got in _rows(interp, results, CALL):
        if not isinstance(got, list) or len(got) < 4:
            bad.append("%s: %r" % (name, got))
            continue
        result, sent, inflight, probe = got[0], got[1], got[2], got[-1]
        why = []
        if result not in CALL[name]:
            why.append("want %s, got %s" % (sorted(CALL[name]), result))
        if result.startswith("raise:") and sent:
            why.append("%d bytes written before it raised" % sent)
        if inflight:
            why.append("in-flight count changed by %d" % inflight)
        if len(got) > 4:
            why += got[3:-1]          # e.g. a transmit buffer kept at 256 MiB
        if probe != "ok":
            why.append("the session did not survive: " + probe)
        if why:
            bad.append("%s: %s" % (name, "; ".join(why)))
    return bad


def test_constructor_and_call_rows(interp, sweep_results, tmp_path):
    results = sweep_results(interp, tmp_path)
    bad = _failures(interp, results)
    assert not bad, "%d rows wrong under %s:\n  %s" % (len(bad), interp, "\n  ".join(bad))


STATE_NAMES = ["state publish before connect", "state calls after disconnect",
               "state disconnect sticks with reconnect on", "state mark_read twice",
               "state reconnect keeps subscriptions", "state connect while connected",
               "state topic bytearray mutated", "state topic mutated to wildcard",
               "state subscribe bytearray mutated", "state unsubscribe other type",
               "state payload mutated in flight", "state on_drop raises",
               "state properties fresh"]


@pytest.mark.parametrize("name", STATE_NAMES)
def test_state_rows(interp, sweep_results, tmp_path, name):
    results = sweep_results(interp, tmp_path)
    assert name in results, "the scenario did not run row %r" % name
    got = results[name]
    assert not (isinstance(got, str) and got.startswith("row crashed")), got
    check_state(name, got, interp)
