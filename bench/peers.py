"""Fetch the peer clients at bench time into .cache/bench-peers/<name>-<version>/.

Peers come from the package registry through pip, pinned, never committed:

  micropython-umqtt.simple 1.3.4  sdist  -> umqtt/simple.py
  micropython-mqtt 0.7b4          sdist  -> mqtt_async.py
  aiomqttc 1.0.7                  wheel  -> aiomqttc.py

The two sdists are MicroPython packages that pip cannot build (no setup.py
in the layout pip wants), so `pip download` fails after it has downloaded and
unpacked them; `--no-clean` keeps the unpacked tree and we take the .py
files from it.  Each peer folder gets a PEER.json with the version and the
sha256 of every file taken, which the results record.

    python bench/peers.py            # fetch what is missing; prints the folders
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "bench-peers")

# name, version, kind, {file in the package: file in the peer folder}
PEERS = (
    ("micropython-umqtt.simple", "1.3.4", "sdist", {"umqtt/simple.py": "umqtt/simple.py"}),
    ("micropython-mqtt", "0.7b4", "sdist", {"mqtt_async.py": "mqtt_async.py"}),
    ("aiomqttc", "1.0.7", "wheel", {"aiomqttc.py": "aiomqttc.py"}),
)
# The sha256 of each file as first fetched: a different file fails the fetch.
PINNED = {
    "umqtt/simple.py": "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5",
    "mqtt_async.py": "aa141c07364f7712df195cd407ae84ef0175f4af1ee61fa7ea3bc071b9fef2ce",
    "aiomqttc.py": "4d1d8c29a676f39b2725dfc5a44e848b69a35516871731b9624bf0747c8e71cc",
}


def folder(name, version):
    return os.path.join(CACHE, "%s-%s" % (name, version))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _pip(args, tmp):
    env = dict(os.environ, TMPDIR=tmp, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps"] + args,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fetch(name, version, kind, files):
    dest = folder(name, version)
    if os.path.exists(os.path.join(dest, "PEER.json")):
        return dest
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        spec = "%s==%s" % (name, version)
        if kind == "wheel":
            r = _pip(["--only-binary", ":all:", "-d", tmp, spec], tmp)
            wheels = glob.glob(os.path.join(tmp, "*.whl"))
            if not wheels:
                raise SystemExit("bench/peers.py: pip could not download %s:\n%s" % (spec, r.stdout))
            src = os.path.join(tmp, "unpacked")
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(src)
        else:
            # pip downloads and unpacks the sdist, then fails to build it: expected.
            r = _pip(["--no-binary", ":all:", "--no-clean", "-d", os.path.join(tmp, "dl"), spec], tmp)
            trees = [d for d in glob.glob(os.path.join(tmp, "pip-download-*", "*"))
                     if os.path.isdir(d)]
            if not trees:
                raise SystemExit("bench/peers.py: pip did not unpack %s:\n%s" % (spec, r.stdout))
            src = trees[0]
        staging = dest + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        record = {"name": name, "version": version, "kind": kind, "files": {}}
        for inside, out in files.items():
            path = os.path.join(src, inside)
            if not os.path.exists(path):
                raise SystemExit("bench/peers.py: %s has no %s" % (spec, inside))
            os.makedirs(os.path.dirname(os.path.join(staging, out)), exist_ok=True)
            shutil.copyfile(path, os.path.join(staging, out))
            record["files"][out] = sha256(path)
            if record["files"][out] != PINNED[out]:
                raise SystemExit("bench/peers.py: %s from %s has sha256 %s, pinned %s" % (
                    inside, spec, record["files"][out], PINNED[out]))
        with open(os.path.join(staging, "PEER.json"), "w") as f:
            json.dump(record, f, indent=1)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staging, dest)
    return dest


def fetch_all():
    out = {}
    for name, version, kind, files in PEERS:
        d = fetch(name, version, kind, files)
        with open(os.path.join(d, "PEER.json")) as f:
            out[name] = dict(json.load(f), path=d)
    return out


if __name__ == "__main__":
    for name, info in fetch_all().items():
        print(info["path"])
