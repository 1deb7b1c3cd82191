"""The link under the MQTT session: opening it (the native socket, or the
app's own `sock_cls`, sync or async; either in TLS, see mqtt_tls), writing
whole packets to it, and closing it.  MQTTTransport is the client's lowest base class: the layers
above (mqtt_reader, mqtt_session, async_mqtt_client) call these methods
on self, at no cost over methods of one class (MicroPython's method cache
hides the depth; a delegate object would cost ~20% per attribute access).

The transport contract is written down in async_mqtt_client's docstring
(and the README).  Things this file guarantees to the layers above:
- a write sends all of buf[0:n] or raises OSError (ETIMEDOUT after
  timeout_ms without progress, ENOTCONN when the link went meanwhile);
- a count a transport answers outside 0..n is an OSError (EIO): the byte
  stream is no longer to be trusted;
- in the async flavour one task at a time reads or writes (_io_busy, see
  _lock_io); a task cancelled in the middle of a read or a write drops the
  link (_interruptible), since part of a packet may have gone.
"""
import sys

from mpcompat import asyncio, const, ticks_ms, ticks_diff, sleep_ms, asleep_ms as _sleep_ms

_MICROPYTHON = sys.implementation.name == "micropython"

# errno values as on Linux, MicroPython and lwIP alike
ENOTCONN = const(107)
ECONNRESET = const(104)
ETIMEDOUT = const(110)
ECONNABORTED = const(103)
EIO = const(5)


class _Done:
    """An awaitable that is already finished and evaluates to None.

    One shared instance (DONE) returned by plain methods: awaiting it
    allocates nothing on MicroPython (measured), and CPython accepts it too.
    """

    def __await__(self):
        return _EXHAUSTED

    __iter__ = __await__


_EXHAUSTED = iter(())
DONE = _Done()


if not _MICROPYTHON:       # (a class costs ~300 B of RAM on the board: defined where used)
    class _StdSocket:
        """CPython's socket/SSLSocket with MicroPython's readinto/write shape."""

        def __init__(self, sock):
            self.sock = sock
            import ssl
            self._again = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

        def readinto(self, buf, n):
            try:
                return self.sock.recv_into(buf, n)
            except self._again:
                return None

        def write(self, buf, n):
            try:
                return self.sock.send(memoryview(buf)[:n])
            except self._again:
                return None

        def close(self):
            self.sock.close()


class MQTTTransport:
    """Opens, writes and closes the link; knows bytes, not packets."""

    def __init__(self, cfg):
        self._cfg = cfg              # checked by mqtt_config.check_config
        self._sock = None
        self._poller = None          # wakes a sync write when the socket takes more
        self._async = False          # the transport's methods are awaited
        self._sock_cls = None        # None: the native socket
        self._io_busy = False        # async flavour: one reader/writer at a time
        self._plain_writes = True    # async flavour: write() may answer a plain int (_write_now)
        self._expired = False        # _deadline: the last awaited transport call ran out of time
        # Link activity, for keepalive (mqtt_session): any byte in, any packet out.
        self._last_tx = self._last_rx = ticks_ms()

    async def _open_transport(self):
        cfg = self._cfg
        self._plain_writes = True
        host, port = cfg["server"], cfg["port"]
        cls = self._sock_cls
        self._poller = None
        if cls is None:
            import socket
            # The first address's own family (an IPv6 one needs an AF_INET6 socket)
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            addr = ai[-1]
            s = socket.socket(ai[0], ai[1])
            try:
                s.settimeout(cfg["timeout_ms"] / 1000)
                _no_delay(s)
                s.connect(addr)
                if cfg["ssl"]:
                    s = self._wrap_tls(s, host)
                s.setblocking(False)
            except BaseException:
                s.close()
                raise
            self._poller = _writable_poller(s)
            return s if _MICROPYTHON else _StdSocket(s)
        if self._async:
            addr = (await cls.getaddrinfo(host, port))[0][-1]
            s = cls()
            if cfg["ssl"]:
                from mqtt_tls import tls_socket
                s = tls_socket(s, cfg, True)
            try:
                await s.connect(addr)
                s.setblocking(False)
            except BaseException:
                await s.close()
                raise
            return s
        addr = cls.getaddrinfo(host, port)[0][-1]
        s = cls()
        if cfg["ssl"]:
            from mqtt_tls import tls_socket
            s = tls_socket(s, cfg, False)
        try:
            s.connect(addr)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def _wrap_tls(self, s, host):
        """The native socket in TLS; the handshake blocks (up to timeout_ms)."""
        import mqtt_tls
        opts = self._cfg["ssl"] if isinstance(self._cfg["ssl"], dict) else {}
        host = opts.get("server_hostname", host)
        mqtt_tls.check_clock(opts)
        ctx = mqtt_tls.make_context(opts)
        try:
            return ctx.wrap_socket(s, server_hostname=host)
        except (OSError, ValueError) as e:
            raise mqtt_tls.handshake_failure(e, opts, host)

    def _close_transport(self):
        self._up = False
        s, self._sock = self._sock, None
        if s is not None:
            try:
                r = s.close()
                if r is not None:       # async flavour: let the close run on its own
                    asyncio.create_task(quietly(r))
            except OSError:
                pass

    def _write_sync(self, buf, n):
        """All of buf[0:n], one write call when the socket takes it (it does
        unless its send buffer is full: then retry, up to timeout_ms)."""
        sock = self._sock
        w = sock.write(buf, n)
        if w != n:
            off = count(w, n)
            start = ticks_ms()
            view = memoryview(buf)
            while off < n:
                if ticks_diff(ticks_ms(), start) > self._cfg["timeout_ms"]:
                    raise OSError(ETIMEDOUT, "socket write timed out")
                w = count(sock.write(view[off:], n - off), n - off)
                if w:
                    off += w
                elif self._poller:
                    self._poller.poll(1)    # back as soon as the socket takes more
                else:
                    sleep_ms(1)
        self._last_tx = ticks_ms()

    def _write_now(self, buf, n):
        """Async flavour, without yielding (so without the I/O lock): True
        when the transport took all of buf[0:n] at once (a plain int n).
        False when it took nothing: None or 0, or an awaitable, which is
        dropped unstarted (the contract: it writes only when awaited) and
        the transport not asked this way again (_plain_writes): the caller
        goes the awaited way instead.  A plain int short of n would leave
        part of a packet that only an await could finish: EIO."""
        w = self._sock.write(buf, n)
        if w is None:
            return False
        if type(w) is int:
            if w == n:
                self._last_tx = ticks_ms()
                return True
            if w == 0:
                return False
            raise OSError(EIO, "an async transport's plain answer to write() must be all or "
                               "nothing: %r of %d" % (w, n))
        discard(awaitable(w))
        self._plain_writes = False
        return False

    async def _write_async(self, buf, n):
        sock = self._sock
        if sock is None:                # dropped while this task waited its turn
            raise OSError(ENOTCONN, "not connected")
        off = 0
        start = ticks_ms()
        try:
            while off < n:
                if self._sock is not sock:  # the link was renewed under this write
                    raise OSError(ENOTCONN, "the link closed during a write")
                w = sock.write(memoryview(buf)[off:] if off else buf, n - off)
                if w is not None and type(w) is not int:    # else taken (or not) at once
                    w = await self._interruptible(awaitable(w))
                w = count(w, n - off)
                if w:
                    off += w
                else:
                    if ticks_diff(ticks_ms(), start) > self._cfg["timeout_ms"]:
                        raise OSError(ETIMEDOUT, "socket write timed out")
                    await _sleep_ms(1)
        except OSError:
            raise
        except BaseException:
            if off:                     # cancelled with part of the packet gone
                self._abandon()
            raise
        self._last_tx = ticks_ms()

    # The async flavour awaits inside a write: while one task encodes into
    # the transmit buffer and writes it, no other may touch either.  The
    # sync flavour encodes and writes without yielding, so needs no lock.
    async def _lock_io(self):
        if self._async:
            while self._io_busy:
                await _sleep_ms(0)
            self._io_busy = True

    async def _write_io(self, buf, n):
        """Write with the I/O lock held (see _lock_io)."""
        if self._sock is None:
            raise OSError(ENOTCONN, "not connected")
        if self._async:
            await self._write_async(buf, n)
        else:
            self._write_sync(buf, n)

    async def _write(self, buf, n):
        await self._lock_io()
        try:
            await self._write_io(buf, n)
        finally:
            self._io_busy = False

    async def _interruptible(self, aw):
        """Await a transport read or write, for timeout_ms at most.  If it
        does not end by then (a read that waits for data, holding the I/O
        lock; a write that never completes), or this task is cancelled, or
        anything but OSError ends it, part of a packet may have gone: the
        byte stream can no longer be trusted, the link goes (_abandon).
        The awaitable is awaited in this task (a deadline cancels it, see
        _deadline), so a read that completes is never lost to a timer."""
        try:
            return await _deadline(self, aw)
        except BaseException as e:
            if self._expired:
                self._abandon()
                raise OSError(ETIMEDOUT, "the transport's awaitable did not end within "
                                         "timeout_ms (%d ms)" % self._cfg["timeout_ms"])
            if not isinstance(e, OSError):
                self._abandon()
            raise


async def _deadline(link, aw):
    """Await aw in the current task for at most timeout_ms: a timer task
    cancels this one when it runs out (MicroPython's asyncio has no
    timeout(); CPython's has, and its wait_for() can swallow a cancellation
    that meets the inner await's end, measured: a cancelled publish ran
    on).  link._expired says whether the deadline ended it.  A task per
    await: only transports that answer awaitables pay it."""
    ms = link._cfg["timeout_ms"]
    link._expired = False
    if _timeout is not None:               # CPython 3.11+
        cm = _timeout(ms / 1000)
        try:
            async with cm:
                return await aw
        finally:
            link._expired = cm.expired()   # (a transport's own ETIMEDOUT is not ours)
    timer = asyncio.create_task(_expire(link, asyncio.current_task(), ms))
    try:
        return await aw
    finally:
        if not link._expired:
            timer.cancel()


async def _expire(link, task, ms):
    await _sleep_ms(ms)
    link._expired = True
    task.cancel()


_timeout = getattr(asyncio, "timeout", None)


def awaitable(answer):
    """A transport's answer that is neither None nor an int: an awaitable,
    to be awaited; anything else (True, 2.0, a string) is EIO, the same as a
    count out of range."""
    if hasattr(answer, "__await__") or hasattr(answer, "send"):
        return answer
    raise OSError(EIO, "the transport answered %r (an int, None or an awaitable expected)"
                  % (answer,))


def _no_delay(sock):
    """TCP_NODELAY: every packet already goes out in one write, so Nagle's
    algorithm can only hold one back (~40 ms behind a delayed ACK after a
    burst of publishes, measured).  Where the stack lacks it, no harm."""
    try:
        import socket
        sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
    except (OSError, AttributeError, TypeError):
        pass


def _writable_poller(sock):
    """A poll object that wakes when sock can take more bytes (None where
    the platform has no select.poll)."""
    try:
        import select
        p = select.poll()
        p.register(sock, select.POLLOUT)
        return p
    except (ImportError, AttributeError, OSError, TypeError):
        return None


async def quietly(aw):
    try:
        await aw
    except Exception:       # closing a broken link: nothing left to report
        pass


def count(n, most):
    """What a transport's readinto/write answered, checked: None or 0..most.
    Anything else (negative, more than asked) would walk the reader or the
    writer out of the packet: the link is not to be trusted (EIO)."""
    if n is None:
        return 0
    if type(n) is not int or not 0 <= n <= most:
        raise OSError(EIO, "the transport answered %r for %d bytes" % (n, most))
    return n


def discard(aw):
    """An awaitable that will never be awaited: close it quietly."""
    close = getattr(aw, "close", None)
    if close:
        close()
