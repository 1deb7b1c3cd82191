"""The simulator's command table (Sim800L.AT_COMMANDS): which handler a line
reaches, the forms each command accepts, and adding a command as one method
plus one row.  In-process, no transport: a line goes straight to _command()
and the queued UART bytes are read back."""
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "host"))
from sim800l_sim import Sim800L  # noqa: E402


@pytest.fixture
def new():
    sims = []
    yield lambda cls=Sim800L: sims.append(cls(seed=0)) or sims[-1]
    for s in sims:
        s.close()


def answer(sim, line):
    sim._command(line)
    out, sim.out = b"".join(d for _, d in sim.out), []
    return out


OK, ERROR = b"\r\nOK\r\n", b"\r\nERROR\r\n"


def test_rows_are_names_and_handlers():
    for name, handler in Sim800L.AT_COMMANDS.items():
        assert name == name.upper() and b"=" not in name and b"?" not in name, name
        assert callable(handler), name


@pytest.mark.parametrize("line,reply", [
    (b"AT", OK), (b"at", OK), (b"AT+BOGUS", ERROR), (b"HELLO", ERROR),
    (b"ATE0", OK), (b"ATE", ERROR), (b"ATE2", ERROR),                    # basic: name E, value 0
    (b"ATI", b"\r\nSIM800 R14.18\r\n" + OK), (b"ATI0", ERROR),
    (b"AT&W", OK), (b"AT+IFC=0,0", OK), (b"AT+IFC=2,2", ERROR), (b"AT+IPR=115200", OK),
    (b"AT+CIURC=0", OK), (b"AT+CIURC=1", ERROR), (b"AT+CMEE", ERROR),
    (b"AT+CSQ", b"\r\n+CSQ: 18,0\r\n" + OK), (b"AT+CSQ?", ERROR), (b"AT+CSQX", ERROR),
    (b"AT+CREG?", b"\r\n+CREG: 0,1\r\n" + OK), (b"AT+CGREG?", b"\r\n+CGREG: 0,1\r\n" + OK),
    (b"AT+CREG", ERROR), (b"AT+CGATT?", b"\r\n+CGATT: 1\r\n" + OK),
    (b"AT+CGATT=1", OK), (b"AT+CGATT", ERROR),
    (b"AT+CIPSEND?", b"\r\n+CIPSEND: 1460\r\n" + OK), (b"AT+CIPSEND=5", ERROR),  # no link
    (b"AT+CIPRXGET?", b"\r\n+CIPRXGET: 0\r\n" + OK), (b"AT+CIPRXGET=1", OK),
    (b"AT+CIPSTATUS", OK + b"\r\nSTATE: IP INITIAL\r\n"), (b"AT+CIPSTART", ERROR),
])
def test_forms(new, line, reply):
    assert answer(new(), line) == reply


def test_faults_still_act_on_the_reply(new):
    sim = new()
    sim.arm("error", on=b"AT+CSQ")
    assert answer(sim, b"AT+CSQ") == ERROR and sim.fired == {"error": 1}
    sim.arm("mangle", on=b"AT+CSQ", how="letters")
    assert answer(sim, b"AT+CSQ") == b"\r\n+CSQ: bi,a\r\n" + OK
    assert sim.counts == {"AT+CSQ": 2}


class WithHex(Sim800L):
    """Adding a command: one method, one row."""

    def _at_cipsendhex(self, rest, arg):
        return self._ok() if rest.startswith(b"=") else self._error()

    AT_COMMANDS = {**Sim800L.AT_COMMANDS, b"+CIPSENDHEX": _at_cipsendhex}


def test_longest_name_wins(new):
    sim = new(WithHex)
    assert answer(sim, b"AT+CIPSENDHEX=1") == OK            # not AT+CIPSEND's handler
    assert answer(sim, b"AT+CIPSENDHEX?") == ERROR
    assert answer(sim, b"AT+CIPSEND?") == b"\r\n+CIPSEND: 1460\r\n" + OK
