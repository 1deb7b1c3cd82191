# The PKI the TLS tests use lives with the host tools (make demo uses it too):
# host/tls_pki.py.  This name keeps `from tls_pki import PKI` working in tests.
import importlib.util as _util
import os as _os

_spec = _util.spec_from_file_location(
    "host_tls_pki", _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))),
                                  "host", "tls_pki.py"))
_mod = _util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
PKI, CA, demo_pki = _mod.PKI, _mod.CA, _mod.demo_pki
