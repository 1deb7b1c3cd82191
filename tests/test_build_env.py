"""A bad environment gets a clear message (what is wrong, what to do), never a traceback."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from helpers import fails_clearly


def run(cmd, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path,phrase", [
    ("/nonexistent/micropython", "does not exist"),
    ("/tmp", "is not a MicroPython source tree"),
])
def test_wrong_micropy_dir(path, phrase):
    r = run(["make", "micropython"], MICROPY_DIR=path)
    fails_clearly(r, "MICROPY_DIR=" + path, phrase, "point it at")


def test_missing_compiler(tmp_path):
    # a PATH holding everything the script needs except gcc
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "realpath", "make", "python3", "sha256sum", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    r = run(["bash", "tools/build-micropython.sh"], PATH=str(bin_dir))
    fails_clearly(r, "'gcc' not found", ".ci/run --deps-only")


def test_no_network_to_the_debian_archive(tmp_path):
    # apt honours http_proxy: a closed local port stands for a machine without network
    r = run(["tools/debian-source.sh", "source", "micropython", "1.25.0+ds-1",
             str(tmp_path / "src")], http_proxy="http://127.0.0.1:9")
    fails_clearly(r, "cannot reach the Debian archive", "apt-get update")
    assert not (tmp_path / "src").exists()
