"""Small assertions shared by test files (fixtures live in conftest.py)."""


def fails_clearly(r, *needles):
    """A refusal of a command (subprocess.CompletedProcess with text output):
    non-zero exit, each needle in its message, and no Python traceback."""
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    for n in needles:
        assert n in out, out
    return out
