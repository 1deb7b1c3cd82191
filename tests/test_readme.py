"""The README's client example runs as written (server/port pointed at the test broker)."""
import os
import re
import subprocess
import sys

from conftest import MICROPYTHON, ROOT


def readme_example():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"## The client\n\n```python\n(.*?)```", text, re.S).group(1)
    assert '"port": 1883' in block
    return block


def test_readme_client_example(interp, broker, tmp_path):
    code = readme_example().replace('"port": 1883', '"port": %d' % broker.port)
    script = tmp_path / "example.py"
    script.write_text(code)
    if interp == "cpython":
        cmd = [sys.executable, str(script)]
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "modules"))
    else:
        cmd = [MICROPYTHON, str(script)]
        env = dict(os.environ)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("b'devices/controller/cmd' b'hello world'") == 3, out.stdout
