"""The rig itself: frozen modules, both interpreters, a real broker."""
import os
import subprocess

import pytest

from conftest import MICROPYTHON, ROOT


def test_product_modules_are_frozen_into_build_micropython(tmp_path):
    # sys.path holds only '.frozen', and the cwd is empty: an import can only
    # succeed from the image itself.
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "modules")) if f.endswith(".py"))
    assert names, "modules/ is empty"
    code = ("import sys; sys.path[:] = ['.frozen']\n"
            "for n in %r:\n"
            "    m = __import__(n); print(n, m.__file__)\n" % names)
    out = subprocess.run([MICROPYTHON, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    for n, line in zip(names, out):
        assert line == "%s %s.py" % (n, n), line


def test_a_scenario_runs_against_mosquitto(interp, run_scenario, broker):
    name, connack = run_scenario(interp, "rig", "whoami", host="127.0.0.1", port=broker.port)
    assert name == interp
    assert connack == b"\x20\x02\x00\x00"


def test_a_failing_scenario_reports_the_interpreters_traceback(interp, start_scenario):
    s = start_scenario(interp, "rig", "fails", x=1)
    with pytest.raises(pytest.fail.Exception) as e:
        s.result()
    assert "deliberate failure inside the interpreter" in str(e.value)
    assert "Traceback" in str(e.value)


def test_long_params_reach_the_scenario(interp, run_scenario):
    # the unix port aborts on an argv string >= 256 bytes: params go by environment
    p = {"x": "y" * 2000, "n": [1, 2, 3]}
    assert run_scenario(interp, "rig", "echo_params", **p) == p
