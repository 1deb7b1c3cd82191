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

Two engines, one contract (a write is taken whole, its record made, or not
taken at all: None; a taken record the link did not take yet is staged
and pushed later, by the next call, or in the sync flavour before write()
returns, or in the async one by a task started only then):
- MicroPython: the `tls` C module (mbedTLS) over a stream object (_Pipe):
  reads come from the inner transport straight into mbedTLS's buffer;
  records go straight to the link when it takes them whole (no copy),
  else to a staging buffer of one record.
- CPython: ssl.SSLObject over two MemoryBIOs, pumped to and from the
  inner transport, so the same tests run on both.

Why staging, not mbedTLS's own "want write": after it, mbedTLS has made
the record but wants the same write repeated, which the client, whose
write may be cancelled or followed by another packet in the same buffer,
cannot promise (an attack found a publish lost that way).
"""
import sys

from mpcompat import asyncio, asleep_ms, const, sleep_ms, ticks_diff, ticks_ms
from mqtt_transport import ECONNABORTED, ECONNRESET, EIO, ENOTCONN, ETIMEDOUT

_MICROPYTHON = sys.implementation.name == "micropython"


# One mbedTLS write makes one record of at most MBEDTLS_SSL_OUT_CONTENT_LEN
# (4096 in MicroPython's config); bigger writes go in pieces of this size.
_CHUNK = const(2048)
# A record's bytes beyond its data: header 5, explicit IV or nonce up to 16,
# MAC up to 48 (SHA-384), CBC padding up to 16; GCM needs 29.
_RECORD_OVERHEAD = const(96)
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
    """PEM anywhere in it (a bundle may open with comments, or a BOM);
    else DER."""
    return b"-----BEGIN " in data


def _pem_blocks(data, label):
    """The base64 lines of each PEM block whose label holds `label`
    ("CERTIFICATE", "PRIVATE KEY"; other blocks such as "EC PARAMETERS",
    and text around them, comments, a BOM, are skipped)."""
    out = []
    body = None
    for line in bytes(data).split(b"\n"):
        line = line.strip()
        i = line.find(b"-----BEGIN ")
        if i >= 0:
            body = [] if label in line[i:] else None
        elif line.startswith(b"-----END "):
            if body is not None:
                out.append(body)
            body = None
        elif body is not None and line and b":" not in line:   # (skips PEM headers)
            body.append(line)
    if not out:
        raise ValueError("no PEM %s block in it" % label.decode())
    return out


def _der_blocks(data, label):
    """The DER of each PEM block of that label; DER data as it is.
    (MicroPython's mbedTLS is built without a PEM parser, to save flash.)"""
    if not _is_pem(data):
        return [bytes(data)]
    from binascii import a2b_base64
    return [a2b_base64(b"".join(body)) for body in _pem_blocks(data, label)]


def _pem_text(data, label):
    """Only the PEM blocks of that label, as ASCII text (CPython's cadata)."""
    lab = label.decode()
    return "".join("-----BEGIN %s-----\n%s\n-----END %s-----\n"
                   % (lab, b"\n".join(body).decode(), lab) for body in _pem_blocks(data, label))


def _loading(what, path, fn, *args):
    """fn(*args), a certificate or key loaded into the context: a failure
    names the option and the file (a ValueError: the config is wrong)."""
    try:
        return fn(*args)
    except (OSError, ValueError) as e:
        raise ValueError("config['ssl'][%r] (%s) cannot be used: %s"
                         % (what, path or "given inline", e))


def make_context(opts):
    """A client TLS context from the "ssl" option (True or a dict checked by
    mqtt_config): CA from cafile (PEM or DER) or cadata, a client certificate
    and key (certfile/keyfile) for mutual TLS, verification on unless
    verify is False.  A file that cannot be used: ValueError naming it."""
    global _warned
    opts = opts if isinstance(opts, dict) else {}
    verify = opts.get("verify", True)
    ca_key = "cadata" if opts.get("cadata") is not None else "cafile"
    ca_path = opts.get("cafile")
    ca = opts.get("cadata")
    if ca is None and ca_path:
        ca = _loading("cafile", ca_path, _read, ca_path)
    if isinstance(ca, str):
        ca = ca.encode()
    if ca is not None and not ca:
        raise ValueError("config['ssl'][%r] (%s) is empty" % (ca_key, ca_path))
    cert = key = None
    if opts.get("certfile"):
        cert = _loading("certfile", opts["certfile"], _read, opts["certfile"])
        key = _loading("keyfile", opts["keyfile"], _read, opts["keyfile"])
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
            for der in _loading(ca_key, ca_path, _der_blocks, ca, b"CERTIFICATE"):
                _loading(ca_key, ca_path, ctx.load_verify_locations, der)   # every CA of a bundle
        if cert:
            # (the device's own certificate: the first block; a chain is not sent)
            c = _loading("certfile", opts["certfile"], _der_blocks, cert, b"CERTIFICATE")[0]
            k = _loading("keyfile", opts["keyfile"], _der_blocks, key, b"PRIVATE KEY")[0]
            _loading("certfile/keyfile", opts["certfile"] + ", " + opts["keyfile"],
                     ctx.load_cert_chain, c, k)
        return ctx
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # TLS 1.2 exactly, as the board's mbedTLS speaks it: the same handshake,
    # the same failures, on both interpreters.
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        if ca:
            pem = _is_pem(ca) and _loading(ca_key, ca_path, _pem_text, ca, b"CERTIFICATE")
            _loading(ca_key, ca_path, ctx.load_verify_locations, None, None, pem or ca)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        _loading("certfile/keyfile", opts["certfile"] + ", " + opts["keyfile"],
                 ctx.load_cert_chain, opts["certfile"], opts["keyfile"])
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


# mbedTLS's error numbers, as the tls module raises them after the
# handshake (bare numbers: only handshake errors carry mbedTLS's text).
_MBEDTLS_WORDS = (
    (-0x7180, "a record failed its integrity check (bad record mac: corrupted or "
              "forged on the way)"),
    (-0x7200, "an invalid TLS record came (corrupted on the way, or not TLS)"),
    (-0x7300, "a TLS message could not be decoded (corrupted on the way)"),
    (-0x7700, "an unexpected TLS message came"),
    (-0x7780, "the broker sent a fatal alert"),
    (-0x6E00, "the handshake failed"),
    (-0x7F00, "mbedTLS ran out of memory"),
)


def is_tls_error(e):
    """An error of TLS's own (to be explained), not of the link under it."""
    if isinstance(e, ValueError):
        return True
    if not isinstance(e, OSError) or not e.args:
        return False
    if not _MICROPYTHON:
        import ssl
        if isinstance(e, ssl.SSLError):
            return True
    return type(e.args[0]) is int and e.args[0] < 0


def explain(e, opts, host, handshaking):
    """A TLS failure (mbedTLS's OSError/ValueError, CPython's SSLError) as
    an OSError whose text names the cause."""
    text = str(e)
    low = text.lower()
    code = e.args[0] if isinstance(e, OSError) and e.args else None
    for number, words in _MBEDTLS_WORDS:
        if code == number:
            text = low = words
    if "bad record mac" in low or "decryption failed" in low:
        text = low = "a record failed its integrity check (bad record mac: corrupted or forged on the way)"
    if "timed out" in low:
        return OSError(ETIMEDOUT, "TLS: the handshake did not finish within timeout_ms: "
                       "the broker or the link stalls" if handshaking else "TLS: " + text)
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
        """The stream mbedTLS reads and writes.  Reads come straight from
        the inner transport into mbedTLS's buffer (None: nothing now).
        Writes go to the engine's staging buffer, so that a record mbedTLS
        has made is never half its own and half the link's (see _Engine).

        In the async flavour's handshake every other read answers None at
        once: mbedTLS then returns "want read" between two of its steps
        instead of running every step whose bytes are at hand in one call
        (on the Pico: a certificate check, the server's signature, the key
        exchange, ~0.5 s each; 1.7 s in a row before, ~0.6 s at most now,
        measured), so the event loop runs between them."""

        def __init__(self, engine, link):
            self._engine = engine
            self._link = link
            self._pause = False

        def readinto(self, buf):
            link = self._link
            if link._stepwise and not link._up:
                self._pause = not self._pause
                if self._pause:
                    return None
            return link._inner_io(link._inner.readinto(buf, len(buf)))

        def write(self, buf):
            return self._engine._stage(buf)

        def ioctl(self, req, arg):
            return 0

    class _Engine:
        """mbedTLS through the `tls` module over a _Pipe.

        Ciphertext goes to a staging buffer (_out) that holds a whole record
        of the biggest write (_CHUNK plus a record's overhead), and from
        there to the link.  A write is therefore either taken (its record
        made and staged: send() answers n, and the record goes out, now or
        from flush()) or not taken at all (the staging buffer still holds
        an earlier record the link did not take: None).  mbedTLS's own
        "want write" state, in which a record is made but the next write
        must repeat the same bytes, never arises after the handshake."""

        def __init__(self, link, ctx, hostname):
            self._link = link
            self._out = bytearray(_CHUNK + _RECORD_OVERHEAD)
            self._n = 0                      # ciphertext staged, not yet taken by the link
            self._tls = ctx.wrap_socket(_Pipe(self, link), server_hostname=hostname,
                                        do_handshake_on_connect=False)

        def _stage(self, buf):
            """mbedTLS's ciphertext: straight to the link when nothing is
            staged and the link takes all of it (no copy, nothing
            allocated); what it does not take is staged."""
            n = len(buf)
            w = 0
            if not self._n:
                link = self._link
                w = link._inner_io(link._inner.write(buf, n))
                if w is None:
                    w = 0
                elif w == n:
                    return n
                elif not 0 <= w < n:
                    raise OSError(EIO, "the transport answered %r for %d bytes" % (w, n))
            room = len(self._out) - self._n
            if not room:
                return w or None             # (the handshake's flights may go in parts)
            k = min(n - w, room)
            self._out[self._n:self._n + k] = memoryview(buf)[w:w + k]
            self._n += k
            return w + k

        @property
        def unsent(self):
            return self._n

        def flush(self):
            """Staged ciphertext to the link, as much as it takes now: True
            when none is left."""
            n = self._n
            if n:
                link = self._link
                w = link._inner_io(link._inner.write(self._out, n))
                if w:
                    if w < n:
                        self._out[:n - w] = memoryview(self._out)[w:n]
                    self._n = n - w
            return not self._n

        def send(self, buf, n):
            if self._n and not self.flush():
                return None
            r = self._tls.write(buf, n if n <= _CHUNK else _CHUNK)   # one record at most
            self.flush()
            return r

        def recv(self, buf, n):
            if self._n:
                self.flush()                 # (the handshake's flights, an alert)
            return self._tls.readinto(buf, n)

        def close(self):
            self._tls.close()
else:
    class _Engine:
        """CPython's ssl.SSLObject over MemoryBIOs, pumped to the inner
        transport, with the same contract as the mbedTLS engine: send()
        takes a write whole (n) or not at all (None); taken ciphertext the
        link did not take yet is flushed later (flush())."""

        def __init__(self, link, ctx, hostname):
            import ssl
            self._ssl = ssl
            self._link = link
            self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._obj = ctx.wrap_bio(self._in, self._out, server_hostname=hostname)
            self._unsent = b""
            self._shaken = False
            self._rx = bytearray(4096)

        @property
        def unsent(self):
            return len(self._unsent) + self._out.pending

        def flush(self):
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
                    self.flush()
                    if not self._pull():
                        return None
                    continue
                except self._ssl.SSLZeroReturnError:
                    return 0
                except self._ssl.SSLEOFError:
                    raise OSError(_MBEDTLS_CONN_EOF, "EOF: the link closed")
                self.flush()
                return r if r is not None else True

        def send(self, buf, n):
            if self.unsent and not self.flush():
                return None
            if not self._shaken:
                if self._run(self._obj.do_handshake) is None:
                    return None
                self._shaken = True
                if self.unsent:            # the last flight is still on its way
                    return None
            n = min(n, _CHUNK)
            self._obj.write(bytes(memoryview(buf)[:n]))
            self.flush()
            return n

        def recv(self, buf, n):
            if self.unsent:
                self.flush()
            r = self._run(self._obj.read, n, buf)
            if r is True:
                return None
            return r

        def close(self):
            pass


def _inner_error(e):
    """An error of the link under TLS (the modem's, the socket's: a plain
    errno): passed on as it is.  Everything else is TLS's, to be explained."""
    return (not is_tls_error(e) and isinstance(e, OSError) and bool(e.args)
            and type(e.args[0]) is int and 0 < e.args[0] < 256)


def handshake_failure(e, opts, host):
    """What ended a handshake, in words: the link's own error keeps its
    errno (a link the driver closed: ECONNRESET/ENOTCONN; a stall:
    ETIMEDOUT), TLS's is explained."""
    if not _inner_error(e):
        return explain(e, opts, host, True)
    code = e.args[0]
    if code == ECONNRESET or code == ENOTCONN or code == 32:   # (ENOTCONN: the driver's word
        # for a link it closed; 32, EPIPE: a write to a socket the peer closed)
        return OSError(code, "TLS: " + _closed_in_handshake(opts))
    if code == ETIMEDOUT or code == 11:             # (11: EAGAIN, a socket timeout on MicroPython)
        return OSError(ETIMEDOUT, "TLS: the handshake did not finish within timeout_ms: "
                       "the broker or the link stalls")
    return OSError(code, "TLS: the link failed during the handshake: %s" % (e,))


class TLSLink:
    """TLS over a sync transport, itself a sync transport (see the client's
    transport contract).  A write is taken whole or not at all; a record
    the link does not take at once is pushed here until it goes
    (timeout_ms at most)."""

    def __init__(self, inner, cfg):
        self._inner = inner
        self._opts = cfg["ssl"] if isinstance(cfg["ssl"], dict) else {}
        self._host = self._opts.get("server_hostname", cfg["server"])
        self._timeout = cfg["timeout_ms"]
        self._engine = None
        self._up = False                 # the handshake ended (a record went or came)
        self._stepwise = False           # async: back to the event loop between handshake steps
        self._t0 = 0                     # when the handshake began
        self._late = None                # async: what ended the link in a flush of its own

    def _start(self):
        self._inner.setblocking(False)
        check_clock(self._opts)
        self._engine = _Engine(self, make_context(self._opts), self._host)
        self._t0 = ticks_ms()

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

    def _engine_or_raise(self):
        if self._late is not None:
            e, self._late = self._late, None
            raise e
        engine = self._engine
        if engine is None:
            raise OSError(ENOTCONN, "not connected")
        return engine

    # (no bound methods passed around: each would be an allocation per call)
    def readinto(self, buf, n):
        engine = self._engine_or_raise()
        try:
            r = engine.recv(buf, n)
        except (OSError, ValueError) as e:
            return self._failed(e)
        if r:
            self._up = True
        elif r is None and not self._up:
            self._check_handshake_time()
        return r

    def _send(self, buf, n):
        engine = self._engine_or_raise()
        try:
            r = engine.send(buf, n)
        except (OSError, ValueError) as e:
            return self._failed(e)
        if r:
            self._up = True
        elif not self._up:
            self._check_handshake_time()
        return r

    def write(self, buf, n):
        r = self._send(buf, n)
        if r and self._engine.unsent:
            self._drain_now()
        return r

    def _drain_now(self):
        """Sync flavour: the staged record goes before write() returns."""
        start = ticks_ms()
        engine = self._engine
        while True:
            try:
                if engine.flush():
                    return
            except (OSError, ValueError) as e:
                self._failed(e)
            if ticks_diff(ticks_ms(), start) > self._timeout:
                raise OSError(ETIMEDOUT, "TLS: the link took no record within timeout_ms "
                              "(%d ms)" % self._timeout)
            sleep_ms(1)

    def _check_handshake_time(self):
        """A handshake that stalls fails in words, from here, before the
        client's own write deadline (which starts later) says less."""
        if ticks_diff(ticks_ms(), self._t0) >= self._timeout:
            raise OSError(ETIMEDOUT, "TLS: the handshake did not finish within timeout_ms "
                          "(%d ms): the broker or the link stalls" % self._timeout)

    def _failed(self, e):
        """0 for the peer's close after the handshake (end of stream); else
        raise: the link's own error as it was, TLS's in words."""
        if isinstance(e, OSError) and e.args and e.args[0] == _MBEDTLS_CONN_EOF and self._up:
            return 0
        if self._up:
            if _inner_error(e):
                raise e
            raise explain(e, self._opts, self._host, False)
        raise handshake_failure(e, self._opts, self._host)

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
    and write answer an int or None at once (a write is taken whole or not
    at all), except a write bigger than one record, which answers an
    awaitable that writes only when awaited.  A record taken while the
    link was busy (the modem in the middle of a send) is pushed by a task
    of its own (_drain), started only then."""

    def __init__(self, inner, cfg):
        TLSLink.__init__(self, inner, cfg)
        self._stepwise = True
        self._draining = False
        self._drainer = None

    async def connect(self, addr):
        await self._inner.connect(addr)
        self._start()

    def write(self, buf, n):
        if n > _CHUNK:
            return self._write_big(buf, n)
        r = self._send(buf, n)
        if r and self._engine.unsent and not self._draining:
            self._draining = True
            # (the task is kept: CPython's event loop holds tasks weakly)
            self._drainer = asyncio.create_task(self._drain())
        return r

    async def _drain(self):
        try:
            while self._engine is not None and not self._engine.flush():
                await asleep_ms(2)
        except Exception as e:           # noqa: BLE001 (kept for the next call to raise)
            try:
                self._failed(e)
            except Exception as x:       # noqa: BLE001
                self._late = x
        finally:
            self._draining = False

    async def _write_big(self, buf, n):
        view = memoryview(buf)[:n]
        off = 0
        while off < n:
            w = self.write(view[off:off + _CHUNK], min(_CHUNK, n - off))
            if w is None:
                await asleep_ms(1)
            else:
                off += w
        return n

    async def close(self):
        self._drop()
        await self._inner.close()


def tls_socket(inner, cfg, async_=False):
    """inner, a socket of a sock_cls, wrapped in TLS per cfg["ssl"]."""
    return (AsyncTLSLink if async_ else TLSLink)(inner, cfg)
