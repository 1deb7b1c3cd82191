"""Run one bench script in a subprocess and take its `RESULT <json>` line
(shared by bench/run.py and bench/tls.py)."""
import json
import subprocess
import time

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_result(cmd, timeout=240):
    """The script's RESULT dict (wall_s added), or {"error": ...} saying why not."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % timeout}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["wall_s"] = round(time.monotonic() - t0, 2)
            return res
    tail = (r.stdout + r.stderr).strip().splitlines()[-12:]
    return {"error": "exit %d: %s" % (r.returncode, " | ".join(tail))}
