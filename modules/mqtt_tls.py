"""TLS over any transport: the board does the crypto, the link only carries bytes.

Owns: the TLS context made from the client's "ssl" option (CA, client
certificate, verification, host name), the TLS link that wraps a socket
class (the SIM800L driver's, or any sock_cls whose readinto/write answer
plainly once connected) and presents the same transport contract to the
client above it, and the translation of TLS failures into words.

    s = tls_socket(cls(), cfg, async_=False)     # what mqtt_transport does
    s.connect(addr)                               # the inner connect; the
    s.setblocking(False)                          # handshake runs in the
    s.write(connect_packet, n)                    # first writes and reads

The handshake is not a blocking call: it advances inside write() and
readinto(), which answer None ("nothing now, call again") until it is done.
The client's own retry loops (the sync write loop, the async flavour's
awaited write and its reads) drive it, so in the async flavour no step
holds the event loop longer than one of mbedTLS's computation steps; the
modem round trips are waited for by the client, not here.

Two engines, one contract:
- MicroPython: the `tls` C module (mbedTLS) over a stream object (_Pipe)
  whose readinto/write call the inner transport directly: no copy, no
  staging buffer; a record the inner transport does not take stays in
  mbedTLS's own output buffer.
- CPython: ssl.SSLObject over two MemoryBIOs, pumped to and from the
  inner transport, so the same tests run on both.

mbedTLS's rule for a write answered "want write": call it again with the
same arguments (the record may already be made and only wait to be sent).
TLSLink.write keeps that rule for the client: None means "call again with
the same buffer and length", which every write loop of the client does;
if a different write comes first (a PUBACK that waited, then a publish),
the waiting one is finished first and its own retry is answered from the
record (_done) instead of being sent twice.
"""
import sys

from mpcompat import const

_MICROPYTHON = sys.implementation.name == "micropython"

EIO = const(5)
ECONNRESET = const(104)
ECONNABORTED = const(103)
ETIMEDOUT = const(110)
ENOTCONN = const(107)

# One mbedTLS write makes one record of at most MBEDTLS_SSL_OUT_CONTENT_LEN
# (4096 in MicroPython's config); bigger writes go in pieces of this size.
_CHUNK = const(2048)
# mbedTLS's "connection closed" (MBEDTLS_ERR_SSL_CONN_EOF) as an OSError number
_MBEDTLS_CONN_EOF = const(-0x7280)
# A certificate check needs a clock: before this year the board's clock was
# never set (the RP2040's RTC starts at 2021-01-01).
_CLOCK_SET_YEAR = const(2024)

_warned = False
_EPOCH_2000 = const(946684800)     # 1970 to 2000, for ports whose time() counts from 2000


def _epoch_offset():
    import time
    return _EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0


def _clock():
    """UTC seconds since 1970 (the clock certificate dates are checked against)."""
    import time
    return time.time() + _epoch_offset()


def _clock_text():
    import time
    y, mo, d, h, mi = time.gmtime(int(_clock()) - _epoch_offset())[:5]
    return "%04d-%02d-%02d %02d:%02d UTC" % (y, mo, d, h, mi)


def clock_is_set():
    """True once the clock reads a plausible date (see _CLOCK_SET_YEAR)."""
    return _clock() >= (_CLOCK_SET_YEAR - 1970) * 31556952


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _is_pem(data):
    return bytes(data[:11]) == b"-----BEGIN "


def _der_blocks(data):
    """PEM text as the DER of each block in it (MicroPython's mbedTLS is
    built without a PEM parser, to save flash); DER as it is."""
    if not _is_pem(data):
        return [bytes(data)]
    from binascii import a2b_base64
    out = []
    body = None
    for line in bytes(data).split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN "):
            body = []
        elif line.startswith(b"-----END "):
            if body is not None:
                out.append(a2b_base64(b"".join(body)))
            body = None
        elif body is not None and line and b":" not in line:   # (skips PEM headers)
            body.append(line)
    if not out:
        raise ValueError("no PEM block in the certificate or key data")
    return out


def make_context(opts):
    """A client TLS context from the "ssl" option (True or a dict checked by
    mqtt_config): CA from cafile (PEM or DER) or cadata, a client certificate
    and key (certfile/keyfile) for mutual TLS, verification on unless
    verify is False."""
    global _warned
    opts = opts if isinstance(opts, dict) else {}
    verify = opts.get("verify", True)
    ca = opts.get("cadata")
    if ca is None and opts.get("cafile"):
        ca = _read(opts["cafile"])
    if isinstance(ca, str):
        ca = ca.encode()
    if not verify and not _warned:
        _warned = True
        print("warning: TLS without certificate verification (ssl verify=False): "
              "anyone on the path can read and change this link")
    if _MICROPYTHON:
        try:
            import tls
        except ImportError:
            raise OSError(EIO, "this firmware has no tls module (MicroPython's mbedTLS binding): "
                          "TLS needs an image built with MICROPY_PY_SSL")
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED if verify else tls.CERT_NONE
        if ca:
            for der in _der_blocks(ca):             # every CA in a PEM bundle
                ctx.load_verify_locations(der)
        if opts.get("certfile"):
            # (the device's own certificate: the first block; a chain is not sent)
            ctx.load_cert_chain(_der_blocks(_read(opts["certfile"]))[0],
                                _der_blocks(_read(opts["keyfile"]))[0])
        return ctx
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # TLS 1.2 exactly, as the board's mbedTLS speaks it: the same handshake,
    # the same failures, on both interpreters.
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        if ca:
            ctx.load_verify_locations(cadata=ca.decode() if _is_pem(ca) else ca)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.get("certfile"):
        ctx.load_cert_chain(opts["certfile"], opts.get("keyfile"))
    return ctx


def check_clock(opts):
    """With verification on, an unset clock fails every certificate: say so
    before a handshake is spent on it."""
    if (opts if isinstance(opts, dict) else {}).get("verify", True) and not clock_is_set():
        raise OSError(ECONNABORTED, "TLS: the clock is not set (it reads %s), so the broker's "
                      "certificate cannot be checked; set it first (the SIM800L driver "
                      "does at bring-up from network time; else machine.RTC, or ntptime "
                      "on a native network)" % _clock_text())


def _closed_in_handshake(opts):
    return ("the link closed during the handshake (the modem dropped it, the server does "
            "not speak TLS on this port, or it refused us%s)"
            % ("" if opts.get("certfile") else ": does it require a client certificate "
               "(certfile/keyfile)?"))


def explain(e, opts, host, handshaking):
    """A TLS failure (mbedTLS's OSError/ValueError, CPython's SSLError) as
    an OSError whose text names the cause."""
    text = str(e)
    low = text.lower()
    if "expired" in low:
        why = "the broker's certificate has expired (the clock reads %s)" % _clock_text()
    elif "future" in low or "not yet valid" in low:
        why = ("the broker's certificate is not valid yet: the clock reads %s; is it set?"
               % _clock_text())
    elif "common name" in low or "hostname" in low or "host name" in low or "ip address mismatch" in low:
        why = "the broker's certificate is not for %r (host name mismatch)" % (host,)
    elif ("not correctly signed" in low or "unknown ca" in low or "local issuer" in low
          or "self-signed" in low or "self signed" in low or "verify failed" in low):
        why = "the broker's certificate is not signed by a CA we trust (cafile/cadata)"
    elif handshaking and ("alert" in low or "handshake failure" in low):
        why = "the broker refused the handshake (%s)" % text
        if not opts.get("certfile"):
            why += "; does it require a client certificate (certfile/keyfile)?"
    elif handshaking and ("invalid ssl record" in low or "wrong version" in low
                          or "record layer" in low or "unknown protocol" in low
                          or "packet length too long" in low or "bad input" in low
                          or "unexpected message" in low or "http request" in low):
        why = "the server did not answer in TLS (a plaintext broker on this port?): %s" % text
    elif "eof" in low or (isinstance(e, OSError) and e.args and e.args[0] == _MBEDTLS_CONN_EOF):
        why = _closed_in_handshake(opts) if handshaking else "the link closed"
        return OSError(ECONNRESET, "TLS: " + why)
    else:
        why = ("handshake failed: " if handshaking else "") + text
    return OSError(ECONNABORTED, "TLS: " + why)


if _MICROPYTHON:
    import io

    class _Pipe(io.IOBase):
        """The stream mbedTLS reads and writes: the inner transport's own
        readinto/write, answered plainly (None: nothing now)."""

        def __init__(self, link):
            self._link = link

        def readinto(self, buf):
            return self._link._inner_io(self._link._inner.readinto(buf, len(buf)))

        def write(self, buf):
            return self._link._inner_io(self._link._inner.write(buf, len(buf)))

        def ioctl(self, req, arg):
            return 0

    class _Engine:
        """mbedTLS through the `tls` module over a _Pipe."""

        def __init__(self, link, ctx, hostname):
            self._tls = ctx.wrap_socket(_Pipe(link), server_hostname=hostname,
                                        do_handshake_on_connect=False)

        def send(self, buf, n):
            if n <= _CHUNK:
                return self._tls.write(buf, n)
            return self._tls.write(buf, 0, _CHUNK)   # one record; the caller goes on

        def recv(self, buf, n):
            return self._tls.readinto(buf, n)

        def close(self):
            self._tls.close()
else:
    class _Engine:
        """CPython's ssl.SSLObject over MemoryBIOs, pumped to the inner
        transport; behaves as mbedTLS does (a send answered None is called
        again with the same arguments)."""

        def __init__(self, link, ctx, hostname):
            import ssl
            self._ssl = ssl
            self._link = link
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._obj = ctx.wrap_bio(self._in, self._out, server_hostname=hostname)
            self._unsent = b""
            self._owed = 0
            self._shaken = False
            self._rx = bytearray(4096)

        def _push(self):
            """Ciphertext to the inner transport: True when all of it went."""
            data = self._unsent + self._out.read()
            while data:
                w = self._link._inner_io(self._link._inner.write(data, len(data)))
                if not w:
                    break
                data = data[w:]
            self._unsent = data
            return not data

        def _pull(self):
            """One read from the inner transport: False when it had nothing."""
            r = self._link._inner_io(self._link._inner.readinto(self._rx, len(self._rx)))
            if r is None:
                return False
            if r == 0:
                self._in.write_eof()
            else:
                self._in.write(bytes(self._rx[:r]))
            return True

        def _run(self, fn, *args):
            """fn (an SSLObject call) until it completes: its result, or
            None when it waits for bytes the link has not brought yet."""
            while True:
                try:
                    r = fn(*args)
                except self._ssl.SSLWantReadError:
                    self._push()
                    if not self._pull():
                        return None
                    continue
                except self._ssl.SSLZeroReturnError:
                    return 0
                except self._ssl.SSLEOFError:
                    raise OSError(_MBEDTLS_CONN_EOF, "EOF: the link closed")
                self._push()
                return r if r is not None else True

        def send(self, buf, n):
            if self._unsent and not self._push():
                return None
            if self._owed:                  # the retry of a write made but not all sent
                n, self._owed = self._owed, 0
                return n
            if not self._shaken:
                if self._run(self._obj.do_handshake) is None:
                    return None
                self._shaken = True
                if self._unsent:            # the last flight is still on its way
                    return None
            n = min(n, _CHUNK)
            self._obj.write(bytes(memoryview(buf)[:n]))
            if not self._push():
                self._owed = n              # as mbedTLS: "call again, same arguments"
                return None
            return n

        def recv(self, buf, n):
            if self._unsent:
                self._push()
            r = self._run(self._obj.read, n, buf)
            if r is True:
                return None
            return r

        def close(self):
            pass


def _inner_error(e):
    """An error of the link under TLS (the modem's, the socket's): passed on
    as it is.  Everything else is TLS's, to be explained."""
    if not isinstance(e, OSError) or not e.args or type(e.args[0]) is not int:
        return False
    if not _MICROPYTHON:
        import ssl
        if isinstance(e, ssl.SSLError):
            return False
    return 0 < e.args[0] < 256


class TLSLink:
    """TLS over a sync transport, itself a sync transport (see the client's
    transport contract).  A write answered None is retried by the client
    with the same bytes (its write loop does), as mbedTLS requires."""

    def __init__(self, inner, cfg):
        self._inner = inner
        self._opts = cfg["ssl"] if isinstance(cfg["ssl"], dict) else {}
        self._host = self._opts.get("server_hostname", cfg["server"])
        self._engine = None
        self._up = False                 # the handshake ended (a record went or came)

    def _start(self):
        self._inner.setblocking(False)
        check_clock(self._opts)
        self._engine = _Engine(self, make_context(self._opts), self._host)

    def connect(self, addr):
        self._inner.connect(addr)
        self._start()

    def setblocking(self, flag):
        pass                             # the inner transport is non-blocking from the start

    def _inner_io(self, r):
        """What the inner transport answered, for the engine: an int or None.
        An awaitable cannot be waited for inside mbedTLS: such a transport
        is refused in words."""
        if r is None or type(r) is int:
            return r
        close = getattr(r, "close", None)
        if close:
            close()
        raise OSError(EIO, "TLS over sock_cls needs readinto/write that answer an int or None "
                      "once connected (non-blocking); %s answered %s"
                      % (type(self._inner).__name__, type(r).__name__))

    # (no bound methods passed around: each would be an allocation per call)
    def readinto(self, buf, n):
        engine = self._engine
        if engine is None:
            raise OSError(ENOTCONN, "not connected")
        try:
            r = engine.recv(buf, n)
        except (OSError, ValueError) as e:
            return self._failed(e)
        if r:
            self._up = True
        return r

    def _send(self, buf, n):
        engine = self._engine
        if engine is None:
            raise OSError(ENOTCONN, "not connected")
        try:
            r = engine.send(buf, n)
        except (OSError, ValueError) as e:
            return self._failed(e)
        if r:
            self._up = True
        return r

    write = _send

    def _failed(self, e):
        """0 for the peer's close after the handshake (end of stream); else
        raise: the link's own error as it was, TLS's in words."""
        if isinstance(e, OSError) and e.args and e.args[0] == _MBEDTLS_CONN_EOF and self._up:
            return 0
        if _inner_error(e):
            if self._up:
                raise e
            if e.args[0] == ECONNRESET or e.args[0] == ENOTCONN:    # (the driver's word for
                raise OSError(e.args[0], "TLS: " + _closed_in_handshake(self._opts))  # a link it closed)
            raise OSError(e.args[0], "TLS: the link failed during the handshake: %s" % (e,))
        raise explain(e, self._opts, self._host, not self._up)

    def _drop(self):
        e, self._engine = self._engine, None
        if e is not None:
            try:
                e.close()
            except OSError:
                pass

    def close(self):
        self._drop()
        return self._inner.close()


class AsyncTLSLink(TLSLink):
    """TLS over an async transport: connect and close are awaited; readinto
    and write answer an int or None at once (all or nothing), except a write
    bigger than one record, which answers an awaitable that writes only
    when awaited.

    Several writers take turns here (a PUBACK that waited, a publish from
    another task), so the "same arguments" rule is kept per writer: while
    one write waits for its retry (_pend), another is answered None until
    the waiting one's record went; that one's retry is then answered from
    _done instead of sending it twice."""

    def __init__(self, inner, cfg):
        TLSLink.__init__(self, inner, cfg)
        self._pend_buf = self._done_buf = None
        self._pend_n = self._done_n = 0

    async def connect(self, addr):
        await self._inner.connect(addr)
        self._start()

    def write(self, buf, n):
        if n > _CHUNK:
            return self._write_big(buf, n)
        return self._write_record(buf, n)

    def _write_record(self, buf, n):
        if self._pend_n and (buf is not self._pend_buf or n != self._pend_n):
            if self._send(self._pend_buf, self._pend_n) is None:
                return None
            self._done_buf, self._done_n = self._pend_buf, self._pend_n
            self._pend_n = 0
        if self._done_n and buf is self._done_buf and n == self._done_n:
            self._done_buf, self._done_n = None, 0
            return n
        r = self._send(buf, n)
        if r is None:
            self._pend_buf, self._pend_n = buf, n
        else:
            self._pend_buf, self._pend_n = None, 0
        return r

    async def _write_big(self, buf, n):
        from mpcompat import asleep_ms
        view = memoryview(buf)[:n]
        off = 0
        part = view[:_CHUNK]             # one object per record: its retries are "the same"
        while off < n:
            w = self._write_record(part, len(part))
            if w is None:
                await asleep_ms(1)
            else:
                off += w
                part = view[off:off + _CHUNK]
        return n

    async def close(self):
        self._drop()
        await self._inner.close()


def tls_socket(inner, cfg, async_=False):
    """inner, a socket of a sock_cls, wrapped in TLS per cfg["ssl"]."""
    return (AsyncTLSLink if async_ else TLSLink)(inner, cfg)
