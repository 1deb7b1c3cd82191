"""make stubs-check: the IDE stubs in stubs/, checked both ways with mypy.

    .venv/bin/python stubs/_check/check.py [APP]     (APP: examples/app)

1. Every module the images freeze (the mip package's modules) has a stub,
   and board.pyi describes boards/*/board.py.
2. mypy type-checks APP's .py files against the stubs (not against
   modules/), with check_untyped_defs so the bodies of the app's
   unannotated functions are checked too; the stubs themselves must be
   fully annotated.  MicroPython's own modules come from stubs/_check/:
   machine and network (what the example uses), and MicroPython's additions
   to sys, time, gc and asyncio, appended to a copy of typeshed's stdlib
   (mypy refuses a user stub named sys).
3. stubtest compares the stubs with the modules themselves, imported under
   CPython: a name, argument or default the modules changed fails here.
"""
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = os.path.dirname(HERE)
ROOT = os.path.dirname(STUBS)
WORK = os.path.join(ROOT, ".cache", "stubs-check")
BOARDS = os.path.join(ROOT, "boards")


def die(msg):
    print("stubs-check: " + msg, file=sys.stderr)
    sys.exit(1)


def frozen_module_names():
    """What the top-level manifest.py freezes (the mip package's modules), as
    mip/build.py lists it: evaluated by MicroPython's tools/manifestfile.py."""
    spec = importlib.util.spec_from_file_location("mip_build", os.path.join(ROOT, "mip", "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return sorted(f.target_path[:-3].replace("/", ".") for f in mod.frozen_modules())


def typeshed_with_micropython():
    """typeshed (mypy's own copy) with MicroPython's additions to some stdlib modules."""
    import mypy
    src = os.path.join(os.path.dirname(mypy.__file__), "typeshed")
    adds = sorted(glob.glob(os.path.join(HERE, "stdlib", "*.pyi")))
    from mypy.version import __version__
    key = hashlib.sha256((src + __version__).encode()
                         + b"".join(open(a, "rb").read() for a in adds)).hexdigest()
    dst = os.path.join(WORK, "typeshed")
    stamp = os.path.join(dst, "stamp")
    if os.path.exists(stamp) and open(stamp).read() == key:
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(os.path.join(dst, "stdlib"))
    os.symlink(os.path.join(src, "stubs"), os.path.join(dst, "stubs"))
    patched = {}
    for a in adds:
        name = os.path.basename(a)[:-4]
        pkg = os.path.join(src, "stdlib", name, "__init__.pyi")
        base = pkg if os.path.exists(pkg) else os.path.join(src, "stdlib", name + ".pyi")
        if not os.path.exists(base):
            die("typeshed has no stdlib module %s to extend (stubs/_check/stdlib/%s.pyi)" % (name, name))
        patched[os.path.relpath(base, os.path.join(src, "stdlib"))] = \
            open(base).read() + "\n# ---- MicroPython's additions (stubs/_check/stdlib) ----\n" + open(a).read()
    for d, dirs, files in os.walk(os.path.join(src, "stdlib")):
        rel = os.path.relpath(d, os.path.join(src, "stdlib"))
        out = os.path.join(dst, "stdlib", rel)
        os.makedirs(out, exist_ok=True)
        # Descend only into folders holding a patched file; link the rest whole.
        for sub in list(dirs):
            if not any(p.startswith(os.path.normpath(os.path.join(rel, sub)) + os.sep) for p in patched):
                os.symlink(os.path.join(d, sub), os.path.join(out, sub))
                dirs.remove(sub)
        for f in files:
            p = os.path.normpath(os.path.join(rel, f))
            if p in patched:
                with open(os.path.join(out, f), "w") as fh:
                    fh.write(patched[p])
            else:
                os.symlink(os.path.join(d, f), os.path.join(out, f))
    with open(stamp, "w") as f:
        f.write(key)
    return dst


def mypy_config(modules):
    """The settings: lenient for the app (it has no annotations), strict for the stubs."""
    path = os.path.join(WORK, "mypy.ini")
    stub_modules = modules + ["board"] + [os.path.basename(p)[:-4] for p in
                                          glob.glob(os.path.join(HERE, "micropython", "*.pyi"))]
    text = "\n".join([
        "[mypy]",
        "mypy_path = %s:%s" % (STUBS, os.path.join(HERE, "micropython")),
        "cache_dir = %s" % os.path.join(WORK, "cache"),
        "no_site_packages = True",
        "check_untyped_defs = True",
        "strict_equality = True",
        "warn_redundant_casts = True",
        "warn_unused_ignores = True",
        "no_implicit_reexport = True",
        "",
        "[mypy-%s]" % ",".join(sorted(stub_modules)),
        "disallow_untyped_defs = True",
        "disallow_incomplete_defs = True",
        "disallow_any_generics = True",
        "",
    ])
    with open(path, "w") as f:
        f.write(text)
    return path


def run(cmd, env=None, what=""):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode:
        die("%s:\n%s" % (what, out))
    return out


def main(argv):
    app = argv[0] if argv else "examples/app"
    app_dir = os.path.join(ROOT, app) if not os.path.isabs(app) else app
    files = sorted(glob.glob(os.path.join(app_dir, "*.py")))
    if not files:
        die("APP=%s holds no .py files (it is the app's folder: config.py, main.py)" % app)
    os.makedirs(WORK, exist_ok=True)

    # 1. A stub per frozen module, nothing more (board.pyi aside).
    modules = frozen_module_names()
    have = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(STUBS, "*.pyi")))
    missing = sorted(set(modules) - set(have))
    extra = sorted(set(have) - set(modules) - {"board"})
    if missing or extra or "board" not in have:
        die("stubs/ must hold one .pyi per frozen module plus board.pyi: missing %s, extra %s"
            % (" ".join(missing + ([] if "board" in have else ["board"])) or "none", " ".join(extra) or "none"))

    # 2. The app against the stubs; the stubs fully annotated.
    cfg = mypy_config(modules)
    typeshed = typeshed_with_micropython()
    stub_files = [os.path.join(STUBS, m + ".pyi") for m in modules + ["board"]]
    stub_files += sorted(glob.glob(os.path.join(HERE, "micropython", "*.pyi")))
    out = run([sys.executable, "-m", "mypy", "--config-file", cfg, "--custom-typeshed-dir", typeshed]
              + files + stub_files, what="%s does not type-check against stubs/" % app)
    print("stubs-check: mypy: %s and %d stubs: %s" % (app, len(stub_files), out.splitlines()[-1]))

    # 3. The stubs against the modules (and each board's board.py).
    boards = sorted(d for d in os.listdir(BOARDS) if os.path.exists(os.path.join(BOARDS, d, "board.py")))
    for i, b in enumerate(boards):
        targets = (modules if i == 0 else []) + ["board"]
        pythonpath = os.pathsep.join([os.path.join(ROOT, "modules"), os.path.join(BOARDS, b)])
        run([sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", cfg]
            + targets, env={"PYTHONPATH": pythonpath},
            what="stubs/ differ from %s (stubtest)" % ("modules/ or boards/%s/board.py" % b if i == 0
                                                       else "boards/%s/board.py" % b))
    print("stubs-check: stubtest: stubs match modules/ (%s) and board.py of %s"
          % (" ".join(modules), " ".join(boards)))


if __name__ == "__main__":
    main(sys.argv[1:])
