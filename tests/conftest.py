"""Test rig: a real mosquitto per session, scenarios under both interpreters.

`run_scenario(interp, module, function, **params)` runs
`tests/scenarios/<module>.py:<function>(params)` under CPython (with
`modules/` on PYTHONPATH) or under `build/micropython` (modules frozen in the
image) and returns what the function returned.  A failure inside the
interpreter fails the test with that interpreter's traceback.
"""
import ast
import json
import os
import select
import subprocess
import sys
import time

import pytest

from broker import Broker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "tests", "scenarios")
MICROPYTHON = os.path.join(ROOT, "build", "micropython")
INTERPRETERS = ("cpython", "micropython")


def interpreter_command(interp):
    if interp == "cpython":
        return [sys.executable]
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first "
                    "(`make test` does it for you)")
    # A big heap so allocation measurements never see a collection.
    return [MICROPYTHON, "-X", "heapsize=8M"]


class Scenario:
    """A running scenario process; read its lines, then `result()`."""

    def __init__(self, interp, module, function, params, cwd):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "modules"),
                   PYTHONUNBUFFERED="1", SCENARIO_PARAMS=json.dumps(params))
        cmd = interpreter_command(interp) + [os.path.join(SCENARIOS, "runner.py"),
                                             module, function]
        self.interp, self.name = interp, "%s:%s" % (module, function)
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []

    def _readline(self, deadline):
        fd = self.proc.stdout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                line = fd.readline()
                if not line:
                    return ""
                line = line.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                return line

    def expect(self, prefix, timeout=10):
        """Wait for an output line starting with prefix; returns the rest."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            if line is None or line == "":
                self._fail("did not print %r within %ss" % (prefix, timeout))
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def send_line(self, text):
        """A line on the scenario's stdin (it waits with sys.stdin.readline())."""
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def result(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            if line is None:
                self.proc.kill()
                self._fail("timed out after %ss" % timeout)
            if line == "":
                break
        rc = self.proc.wait()
        if rc != 0:
            self._fail("exited with %d" % rc)
        for line in reversed(self.lines):
            if line.startswith("RESULT "):
                return ast.literal_eval(line[7:])
        self._fail("printed no RESULT line")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _fail(self, why):
        self.kill()
        pytest.fail("%s scenario %s %s; its output:\n%s" % (
            self.interp, self.name, why, "\n".join(self.lines)), pytrace=False)


@pytest.fixture(params=INTERPRETERS)
def interp(request):
    return request.param


@pytest.fixture
def start_scenario(tmp_path):
    started = []

    def start(interp, module, function, **params):
        s = Scenario(interp, module, function, params, str(tmp_path))
        started.append(s)
        return s
    yield start
    for s in started:
        s.kill()


@pytest.fixture
def run_scenario(start_scenario):
    def run(interp, module, function, timeout=60, **params):
        return start_scenario(interp, module, function, **params).result(timeout)
    return run


@pytest.fixture
def hostile():
    """hostile(scripts, **kw) -> a started HostileBroker (tests/hostile_broker.py:
    a scripted server for attacks a real broker cannot make), stopped after
    the test."""
    from hostile_broker import HostileBroker
    made = []

    def make(scripts, **kw):
        hb = HostileBroker(scripts, **kw).start()
        made.append(hb)
        return hb
    yield make
    for hb in made:
        hb.stop()


RUNNING_BROKERS = []


def _broker_fixture(request, folder, **kw):
    b = Broker(str(folder), **kw).start()
    RUNNING_BROKERS.append(b)
    yield b
    b.stop()
    RUNNING_BROKERS.remove(b)


@pytest.fixture(scope="session")
def broker(request, tmp_path_factory):
    """One mosquitto for the whole session (tests use unique topics)."""
    yield from _broker_fixture(request, tmp_path_factory.mktemp("mosquitto"))


@pytest.fixture
def own_broker(request, tmp_path):
    """A mosquitto of this test's own, persistence on, restartable."""
    yield from _broker_fixture(request, tmp_path / "mosquitto", persistence=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the tail of each running broker's log."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in RUNNING_BROKERS:
            rep.sections.append(("mosquitto log " + b.log_path, b.log()[-8000:]))
