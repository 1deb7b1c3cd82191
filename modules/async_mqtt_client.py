"""Allocation-free async MQTT 3.1.1 client for MicroPython and CPython.

    client = AsyncMQTTClient(config, memoryview(bytearray(128)))
    await client.connect()                      # or connect(sock_cls=..., async_sock=...)
    await client.subscribe(b"dev/cmd", qos=1)
    while True:
        await client.publish(b"dev/tele", b"21.5")
        if await client.check_msg():            # meta: [topic_len, end]
            handle(client.topic, client.msg)
            client.mark_read()
        await asyncio.sleep_ms(0)

Receive buffer: the caller's buffer holds ONE message, topic at [0:meta[0]],
payload at [meta[0]:meta[1]].  A message fits when len(topic) + len(payload)
(+2 for QoS 1: its packet id is read in place, then the payload moved over
it) <= len(buffer).  A bigger message is read off the wire and dropped:
`client.dropped` counts it and `client.on_drop(size)` is called if set.

Messages that arrive while the app has not called mark_read() yet (a
retained message behind a SUBACK, the copy of our own QoS 1 publish before
its PUBACK) go to a preallocated backlog (config "backlog", bytes, default
the receive buffer's size) and are delivered in arrival order.  When the
backlog is full too, the client stops reading the socket (TCP holds the
data, nothing is lost) and an ack wait in publish()/subscribe() returns
False ("deferred"): the ack is processed by a later check_msg(), and a
QoS 1 message stays in flight (resent with DUP after a reconnect) until
then.  No deadlock, no lost or overwritten message.

Allocation (MicroPython): check_msg() that finds nothing and a QoS 0
publish whose write completes at once are plain methods returning a shared,
already finished awaitable: 0 bytes.  Delivering a message costs one small
coroutine object; `client.topic`/`client.msg` cost one memoryview each (use
the meta indices into your own buffer to avoid that).  QoS 1 publish and
subscribe must wait, so they return a coroutine.  Pass topics and payloads
as bytes: a str is encoded (allocated) on every call.

Transport contract (`sock_cls`), sync flavour (async_sock=False):
    sock_cls.getaddrinfo(host, port) -> list; [0][-1] is passed to connect
    s = sock_cls()              new unconnected socket
    s.connect(addr)             blocks until connected; OSError on failure
    s.setblocking(False)        called once connected
    s.readinto(buf, n) -> int   bytes read into buf[0:n]; None = nothing now
                                (must return promptly); 0 = closed by peer;
                                OSError on link loss
    s.write(buf, n) -> int      bytes of buf[0:n] accepted (maybe fewer);
                                None = none accepted now
    s.close()
Async flavour (async_sock=True): the same names; getaddrinfo, connect,
readinto, write and close are awaited, except that readinto may answer a
plain None (not an awaitable) when nothing is buffered, so an idle
check_msg() allocates nothing (an awaitable that evaluates to None works
too, at the cost of a coroutine per poll), or a plain int when the bytes
were at hand.  An awaitable readinto returns must read only when awaited:
the client may drop one it never started.  A task cancelled in the middle
of a read or a write drops the link (part of a packet may have gone).  Native sockets (sock_cls=None) are MicroPython's
`socket` (which has this shape) or CPython's, adapted below.

Config keys: client_id, server, port, user, password, keepalive (s),
last_will{topic,msg,qos,retain}, clean_session (True), ssl (False, True or
a dict: cafile, verify, server_hostname), reconnect (False: link loss
raises; True: a supervisor reconnects with backoff and jitter, re-subscribes
and resends in-flight QoS 1), reconnect_min_ms (500), reconnect_max_ms
(30000), timeout_ms (acks, CONNACK; 10000), backlog (bytes).  Every value
is checked (type and range) and copied in the constructor.

Hostile peers (why some loops look the way they do): one check_msg() call,
or one turn of an ack wait, makes at most _READS_PER_CALL reads and then
yields, and deadlines are checked while bytes flow, so a flood never holds
the event loop; every drained QoS 1 message is acked with its own id;
arguments are checked before any state changes; topic caches are keyed on
immutable bytes only.  After disconnect() the client stays down until
connect()/reconnect().
"""
import sys

import mqtt_codec as codec
from mpcompat import asyncio, ticks_ms, ticks_diff, sleep_ms, asleep_ms as _sleep_ms, jitter
from mqtt_codec import MQTTError, to_bytes

__all__ = ("AsyncMQTTClient", "MQTTError")

_MICROPYTHON = sys.implementation.name == "micropython"

# errno values as on Linux, MicroPython and lwIP alike
_ENOTCONN = 107
_ECONNRESET = 104
_ETIMEDOUT = 110
_ECONNABORTED = 103
_EIO = 5


class _Done:
    """An awaitable that is already finished and evaluates to None.

    One shared instance returned by plain methods: awaiting it allocates
    nothing on MicroPython (measured), and CPython accepts it too.
    """

    def __await__(self):
        return _EXHAUSTED

    __iter__ = __await__


_EXHAUSTED = iter(())
_DONE = _Done()


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


# Where the body of the packet being read goes.
_TO_SMALL = 0      # ack/response bodies (<= 3 bytes)
_BL_HDR = 5        # backlog entry: first byte, remaining length in 4 bytes
# Reads one check_msg() (or one turn of an ack wait) may make before it
# yields: a peer that never stops sending (a flood of messages too big to
# keep) must not hold the event loop.  A delivered message ends the call
# anyway; 16 reads drain 16 x the backlog's size.
_READS_PER_CALL = 16
# A session that ends sooner than this after its CONNACK did not really work:
# the next reconnect backs off further (_young_backoff).
_YOUNG_MS = 2000
_TO_RBUF = 1       # PUBLISH straight into the caller's buffer
_TO_BACKLOG = 2    # PUBLISH while the caller's buffer holds an unread one
_DRAIN = 3         # PUBLISH bigger than the buffer: read and drop
_NONE = 4          # no body (PINGRESP)


class AsyncMQTTClient:
    def __init__(self, config, recv_buf):
        if not isinstance(config, dict):
            raise TypeError("config must be a dict")
        if isinstance(recv_buf, bytearray):
            recv_buf = memoryview(recv_buf)
        if not isinstance(recv_buf, memoryview):
            raise TypeError("recv_buf must be a memoryview of a bytearray")
        if len(recv_buf) < 8:
            raise ValueError("recv_buf must hold at least 8 bytes")
        try:                            # bytes, or a memoryview of bytes: read-only
            recv_buf[0] = recv_buf[0]
        except TypeError:
            raise TypeError("recv_buf must be writable (a memoryview of a bytearray)")
        if len(bytes(recv_buf[:1])) != 1:   # (MicroPython's memoryview has no itemsize)
            raise TypeError("recv_buf must be a memoryview of bytes, not of wider items")
        backlog = _int(config.get("backlog", len(recv_buf)), "backlog", 0, codec.MAX_REMAINING)
        self._cfg = self._check_config(config)
        self._rbuf = recv_buf
        import array
        self._meta = memoryview(array.array("H" if len(recv_buf) < 65536 else "I", (0, 0)))
        self._tx = bytearray(max(64, len(recv_buf) + 8))
        self._ackbuf = bytearray(4)
        self._pingbuf = bytes((codec.PINGREQ, 0))
        self._hdr = bytearray(5)
        self._hviews = tuple(memoryview(self._hdr)[i:] for i in range(5))
        self._small = bytearray(4)
        self._small_v = memoryview(self._small)
        self._scratch = memoryview(bytearray(32))     # drain target while the backlog holds messages
        self._backlog = memoryview(bytearray(backlog))
        self._bl_head = 0            # backlog entries: [_bl_head, _bl_used)
        self._bl_used = 0
        self._sock = None
        self._poller = None
        self._async = False
        self._sock_cls = None
        self._subs = []              # (topic, qos) to restore after reconnect
        # QoS 1 publishes awaiting their PUBACK: one preallocated slot (the
        # usual case: publish() waits for its ack), more in a dict.
        self._slot = bytearray(len(self._tx))
        self._slot_pid = 0
        self._slot_seq = 0
        self._inflight = {}          # pid -> (send order, bytes of the QoS 1 PUBLISH)
        self._seq = 0                # QoS 1 publishes so far: resends keep their order
        self._enc_len = 0
        self._pub_topic = None       # header cache of the last QoS 0 publish (_encode_publish)
        self._pub_mlen = self._pub_retain = self._pub_at = 0
        self._pid = 0
        self._checked_topic = None   # last publish topic validated
        self._reconnecting = False
        self._up = False             # CONNACK in, subscriptions restored, QoS 1 resent
        self._app_closed = True      # until connect(), after disconnect(): stay down
        self._sup = None             # the reconnect supervisor's task
        self._backoff = 0            # ms the last reconnect had backed off to
        self._up_at = 0              # ticks_ms() when the session last opened
        self._io_busy = False        # async flavour: one reader/writer at a time
        self.session_present = False
        self.dropped = 0             # oversize messages read and dropped
        self.reconnects = 0
        self.disconnects = 0
        self.last_error = None
        self.on_drop = None          # on_drop(size) when a message is dropped
        self.on_disconnect = None    # on_disconnect(exc) when the link is lost
        self.msg_flags = 0           # first byte of the delivered PUBLISH (retain bit 0, QoS bits 1-2, DUP bit 3)
        self._unread = False
        self._connack = -1
        self._wait_kind = 0          # the control ack being awaited (CONNACK/SUBACK/UNSUBACK)
        self._wait_pid = 0
        self._wait_done = False
        self._ctl_busy = False       # one control exchange at a time
        self._late_sub = None        # (packet id, topic) of a subscribe whose SUBACK was deferred
        self._opening = 0            # sessions being opened (connect(), the supervisor): none
                                     # may start a supervisor meanwhile
        self._last_tx = self._last_rx = ticks_ms()
        self._ping_sent = False
        self._reset_reader()

    # ---- configuration -------------------------------------------------

    @staticmethod
    def _check_config(c):
        """Every value checked (and copied: a bytearray changed later must not
        change the session) here, so a bad one raises now, not at connect or
        on the wire."""
        cfg = {}
        cfg["client_id"] = _string(c.get("client_id", b""), "client_id")
        cfg["clean_session"] = _flag(c.get("clean_session", True), "clean_session")
        if not cfg["client_id"] and not cfg["clean_session"]:
            raise ValueError("an empty client_id needs clean_session=True (MQTT 3.1.3.1)")
        server = c.get("server")
        if not isinstance(server, str) or not server:
            raise ValueError("config['server'] must be a host name or address (str)")
        cfg["server"] = server
        tls = c.get("ssl", False)
        if not isinstance(tls, (bool, dict)):
            raise TypeError("config['ssl'] must be a bool or a dict")
        if isinstance(tls, dict):
            tls = dict(tls)
            for k in tls:
                if k not in ("cafile", "verify", "server_hostname"):
                    raise ValueError("config['ssl'] has no key %r (cafile, verify, server_hostname)"
                                     % (k,))
            for k in ("cafile", "server_hostname"):
                if k in tls and not isinstance(tls[k], str):
                    raise TypeError("config['ssl'][%r] must be a str" % k)
            if "verify" in tls:
                tls["verify"] = _flag(tls["verify"], "config['ssl']['verify']")
        cfg["ssl"] = tls
        cfg["port"] = _int(c.get("port", 8883 if tls else 1883), "port", 1, 65535)
        cfg["user"] = _string(c.get("user") or b"", "user")
        cfg["password"] = _binary(c.get("password") or b"", "password")
        if cfg["password"] and not cfg["user"]:
            raise ValueError("a password needs a user name (MQTT 3.1.2.9)")
        cfg["keepalive"] = _int(c.get("keepalive", 0), "keepalive", 0, 65535)
        will = c.get("last_will")
        if will is None:
            will = {}
        if not isinstance(will, dict):
            raise TypeError("config['last_will'] must be a dict (topic, msg, qos, retain)")
        wt = will.get("topic") or b""
        wt = to_bytes(wt, "last_will topic")
        if wt:
            codec.check_topic(wt, False)
        wq = _int(will.get("qos", 0), "last_will qos", 0, 2)
        cfg["will"] = (bytes(wt), _binary(will.get("msg") or b"", "last_will msg"), wq,
                       _flag(will.get("retain", False), "last_will retain"))
        cfg["reconnect"] = _flag(c.get("reconnect", False), "reconnect")
        lo = cfg["reconnect_min_ms"] = _int(c.get("reconnect_min_ms", 500), "reconnect_min_ms",
                                            1, _MAX_MS)
        cfg["reconnect_max_ms"] = _int(c.get("reconnect_max_ms", 30000), "reconnect_max_ms",
                                       lo, _MAX_MS)
        cfg["timeout_ms"] = _int(c.get("timeout_ms", 10000), "timeout_ms", 1, _MAX_MS)
        # (below 65,535: a SUBSCRIBE needs a packet id of its own)
        cfg["max_inflight"] = _int(c.get("max_inflight", 16), "max_inflight", 1, 65000)
        return cfg

    # ---- connection ----------------------------------------------------

    async def connect(self, sock_cls=None, async_sock=False, clean_session=None):
        """Open the transport and the MQTT session; raises MQTTError on refusal."""
        if self._cfg["ssl"] and sock_cls is not None:
            raise ValueError("ssl works with the native socket only (sock_cls=None)")
        if sock_cls is not None and not (callable(sock_cls) and hasattr(sock_cls, "getaddrinfo")):
            raise TypeError("sock_cls must be a socket class (getaddrinfo, and a call that "
                            "makes a socket), not %s" % type(sock_cls).__name__)
        async_sock = _flag(async_sock, "async_sock")
        if clean_session is not None:
            self._cfg["clean_session"] = _flag(clean_session, "clean_session")
        self._sock_cls = sock_cls
        self._async = async_sock and sock_cls is not None
        self._app_closed = False
        self._opening += 1              # from here on, no task may start a supervisor
        try:
            await self._stop_supervisor()
            await self._open_session(False)
        finally:
            self._opening -= 1
        if not self.session_present:
            self._subs = []     # a new session at the broker: none to restore
        self._backoff = 0
        self._up_at = ticks_ms()

    async def _open_transport(self):
        cfg = self._cfg
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
            try:
                await s.connect(addr)
                s.setblocking(False)
            except BaseException:
                await s.close()
                raise
            return s
        addr = cls.getaddrinfo(host, port)[0][-1]
        s = cls()
        try:
            s.connect(addr)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def _wrap_tls(self, s, host):
        import ssl
        opts = self._cfg["ssl"] if isinstance(self._cfg["ssl"], dict) else {}
        verify = opts.get("verify", True)
        if _MICROPYTHON:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        if opts.get("cafile"):
            ctx.load_verify_locations(cafile=opts["cafile"])
        return ctx.wrap_socket(s, server_hostname=opts.get("server_hostname", host))

    async def _open_session(self, resume):
        """Transport, CONNECT/CONNACK, then (resume) the subscriptions back,
        then unacked QoS 1 resent; only then is the session up: the app's
        publishes and subscribes wait for that (_until_connected), so none
        overtakes a resend or takes the CONNACK's place."""
        self._close_transport()
        self._opening += 1
        try:
            await self._open_and_restore(resume)
        finally:
            self._opening -= 1

    async def _open_and_restore(self, resume):
        cfg = self._cfg
        self._sock = await self._open_transport()
        self._reset_reader()
        wt, wm, wq, wr = cfg["will"]
        self._connack = -1          # none yet: any other packet is a protocol error
        self._last_rx = ticks_ms()
        self._ping_sent = False
        try:
            await self._lock_io()
            try:
                n = codec.encode_connect(self._tx_for(22 + len(cfg["client_id"]) + len(wt) + len(wm)
                                                      + len(cfg["user"]) + len(cfg["password"])),
                                         cfg["client_id"], cfg["user"], cfg["password"],
                                         cfg["keepalive"], cfg["clean_session"], wt, wm, wq, wr)
                await self._write_io(self._tx, n)
            finally:
                self._io_busy = False
            if not await self._wait(codec.CONNACK, 0):
                raise MQTTError("CONNACK did not arrive")
            rc = self._connack & 0xFF
            if rc:
                reason = codec.CONNACK_REASONS[rc] if rc < len(codec.CONNACK_REASONS) else "code %d" % rc
                raise MQTTError("connection refused: " + reason, rc)
            self.session_present = bool(self._connack >> 8)
            if self.session_present and cfg["clean_session"]:
                raise MQTTError("malformed CONNACK: a session present for a clean session "
                                "(MQTT-3.2.2-1)")
            late, self._late_sub = self._late_sub, None
            if resume:
                # All of them for a new session; for a kept one, the one
                # whose SUBACK never came (its SUBSCRIBE may have died with
                # the link: the broker would not have it).
                todo = self._subs if not self.session_present else \
                    [s for s in self._subs if late is not None and s[0] == late[1]]
                for topic, qos in todo:
                    try:
                        await self._subscribe(topic, qos)
                    except MQTTError as e:
                        if e.code is None:
                            raise
                        # Granted before, refused now (the broker's ACL
                        # changed): keep the session, tell the app.
                        self.last_error = e
            await self._resend_inflight()   # unacked QoS 1 is never lost, connect() or not
            self._up = True
        except BaseException:
            self._close_transport()
            raise

    def _close_transport(self):
        self._up = False
        s, self._sock = self._sock, None
        if s is not None:
            try:
                r = s.close()
                if r is not None:       # async flavour: let the close run on its own
                    asyncio.create_task(_quietly(r))
            except OSError:
                pass

    async def disconnect(self):
        """Send DISCONNECT (the broker then drops the last will) and close.

        The client then stays down (no reconnect, check_msg() and publish()
        raise MQTTError) until connect() or reconnect() is called.
        """
        self._app_closed = True
        self._up = False
        if self._sock is not None:
            try:
                self._ackbuf[0] = codec.DISCONNECT
                self._ackbuf[1] = 0
                await self._write(self._ackbuf, 2)
            except OSError:
                pass
            s, self._sock = self._sock, None
            r = s.close()
            if r is not None:
                await _quietly(r)

    def isconnected(self):
        """True while the session is up (CONNACK in, subscriptions and QoS 1 restored)."""
        return self._up

    async def reconnect(self, attempts=0):
        """Re-establish the session with exponential backoff and jitter.

        Re-subscribes (unless the broker kept the session) and resends
        unacknowledged QoS 1 publishes with DUP.  attempts=0: forever.
        """
        self._app_closed = False
        if self._reconnecting:          # another task is at it: wait for it
            while self._reconnecting:
                await _sleep_ms(20)
            if not self._up:
                raise MQTTError("reconnect failed")
            return
        self._reconnecting = True
        await self._reconnect_loop(attempts)

    async def _reconnect_loop(self, attempts):
        """The reconnect itself; self._reconnecting is already raised."""
        cfg = self._cfg
        delay = self._young_backoff()   # 0: the first try at once
        tries = 0
        try:
            while True:
                if delay:
                    await _sleep_ms(delay + jitter(delay // 2))
                if self._app_closed:
                    raise MQTTError("not connected: disconnect() was called")
                if self._up and tries:  # the app connected meanwhile
                    return
                try:
                    await self._open_session(True)
                except Exception as e:  # noqa: B902 -- a transport's bug too: back off, never storm
                    self.last_error = e
                    tries += 1
                    if attempts and tries >= attempts:
                        raise
                    delay = min(max(delay * 2, cfg["reconnect_min_ms"]), cfg["reconnect_max_ms"])
                    continue
                if self._app_closed:    # disconnect() was called meanwhile
                    self._close_transport()
                    raise MQTTError("not connected: disconnect() was called")
                self.reconnects += 1
                self._backoff = delay
                self._up_at = ticks_ms()
                return
        finally:
            self._reconnecting = False

    def _young_backoff(self):
        """The delay before the first reconnect try.  None after a session
        that lived; but a session that died younger than _YOUNG_MS, or than
        twice the backoff that led to it, means the server takes our CONNECT
        and drops us soon after: go on doubling instead of starting over,
        or a fleet hammers the broker in a loop."""
        cfg = self._cfg
        if ticks_diff(ticks_ms(), self._up_at) >= max(2 * self._backoff, _YOUNG_MS):
            return 0
        return min(max(self._backoff * 2, cfg["reconnect_min_ms"]), cfg["reconnect_max_ms"])

    def _link_lost(self, exc):
        """The transport failed: close it, then reconnect (if configured) or raise."""
        if self._app_closed and self._sock is None:
            raise exc               # disconnect() closed it: not a loss
        if self._sock is None and (self._reconnecting or not self._cfg["reconnect"]):
            if not self._cfg["reconnect"]:
                raise exc
            return                  # another task saw it first
        self._close_transport()
        self._reset_reader()
        self.disconnects += 1
        self.last_error = exc
        if self.on_disconnect:
            self._call_hook(self.on_disconnect, exc)
        if not self._cfg["reconnect"]:
            raise exc
        self._start_supervisor()

    def _start_supervisor(self):
        # The flag is raised here, not when the task first runs, so that two
        # tasks noticing the loss in the same tick start one supervisor.
        if not self._reconnecting and not self._app_closed and not self._opening:
            self._reconnecting = True
            self._sup = asyncio.create_task(self._supervise())

    async def _stop_supervisor(self):
        """connect() takes over from a supervisor still backing off: else it
        would wake and tear the app's fresh session down."""
        sup = self._sup
        if self._reconnecting and sup is not None and not sup.done():
            sup.cancel()
            # A task cancelled before its first step never runs its finally:
            # wait for the task, not for the flag, then lower the flag here.
            for _ in range(1000):
                if sup.done():
                    break
                await _sleep_ms(1)
            self._reconnecting = False

    async def _supervise(self):
        try:
            await self._reconnect_loop(0)
        except Exception as e:      # never dies silently: kept for the app
            if not self._app_closed:
                self.last_error = e

    async def _until_connected(self):
        while not self._up:
            if self._app_closed or not (self._cfg["reconnect"] or self._reconnecting):
                raise MQTTError("not connected")
            self._start_supervisor()
            await _sleep_ms(20)

    # ---- publishing and subscribing -------------------------------------

    def publish(self, topic, msg, retain=False, qos=0):
        """Send a PUBLISH.  Await it: QoS 1 waits for the PUBACK.

        A QoS 0 publish whose write completes at once returns a finished
        awaitable (no allocation).  QoS 1 returns True when the PUBACK came,
        False when the ack was deferred (see module docs); with reconnect off
        it raises MQTTError if the server does not acknowledge within
        timeout_ms (with reconnect on, the link is renewed and the message
        resent with DUP).
        """
        if topic is not self._checked_topic:
            topic = to_bytes(topic, "topic")
            codec.check_topic(topic, False)
            if type(topic) is bytes:    # immutable: safe to skip the check next time
                self._checked_topic = topic
        msg = to_bytes(msg, "msg")
        _qos(qos)
        if retain is not False and retain is not True:
            retain = _flag(retain, "retain")
        if qos and self.inflight >= self._cfg["max_inflight"]:
            # Each entry holds a copy of its packet (a small heap runs out),
            # and 65,535 would leave no packet id to take.
            raise MQTTError("%d QoS 1 publishes await their PUBACK (max_inflight): "
                            "read (check_msg) or wait before publishing more" % self.inflight)
        if len(topic) + len(msg) > codec.MAX_REMAINING - 4:
            raise ValueError("message too large for MQTT (268,435,455 bytes with its topic)")
        if self._async or not self._up:
            return self._publish_slow(topic, msg, retain, qos)
        # Sync transport: encode and write right here, so only a QoS 1 ack
        # wait costs a coroutine.
        pid = self._new_pid() if qos else 0
        buf = self._encode_publish(topic, msg, retain, qos, pid)
        try:
            self._write_sync(buf, self._enc_len)
        except OSError as e:
            self._link_lost(e)          # raises unless reconnecting
            if not qos:
                return self._publish_slow(topic, msg, retain, qos)
            # QoS 1 is kept in flight: the reconnect resends it
        if qos:
            return self._wait(codec.PUBACK, pid, True)
        return _DONE

    async def _publish_slow(self, topic, msg, retain, qos):
        """Publish over an async transport, or once the link is back."""
        while True:
            # (the awaits below are spelled out, not helpers: each helper
            # coroutine would be one more object per publish)
            if not self._up:
                await self._until_connected()
            while self._io_busy:        # async flavour: another task is writing
                await _sleep_ms(0)
            self._io_busy = self._async
            try:
                pid = self._new_pid() if qos else 0
                buf = self._encode_publish(topic, msg, retain, qos, pid)
                if self._async:
                    await self._write_async(buf, self._enc_len)
                else:
                    self._write_sync(buf, self._enc_len)
                break
            except OSError as e:
                self._link_lost(e)      # raises unless reconnecting
                if qos:
                    break               # kept in flight: the reconnect resends it
            finally:
                self._io_busy = False
        if qos:
            return await self._wait(codec.PUBACK, pid, True)

    def _encode_publish(self, topic, msg, retain, qos, pid):
        """Encode into the transmit buffer (QoS 1: into the in-flight slot,
        where it stays until its PUBACK); returns the buffer, length in
        self._enc_len."""
        ml = len(msg)
        if not qos and topic is self._pub_topic and ml == self._pub_mlen \
                and retain == self._pub_retain:
            # Same topic object (immutable bytes: see below), payload length
            # and flags as the last QoS 0 publish, and nothing else wrote the
            # transmit buffer since: the header and topic are in place, only
            # the payload changes.
            self._enc_len = codec.put_bytes(self._tx, self._pub_at, msg, ml)
            return self._tx
        size = codec.publish_size(len(topic), ml, qos)
        use_slot = qos and not self._slot_pid and size <= len(self._slot)
        buf = self._slot if use_slot else self._tx_for(size)
        n = codec.encode_publish(buf, topic, msg, qos, retain, False, pid)
        self._enc_len = n
        # In flight only once encoded: a failed encode leaves no trace.
        if qos:
            self._seq += 1
        if use_slot:
            self._slot_pid = pid
            self._slot_seq = self._seq
        elif qos:                       # more than one in flight
            self._inflight[pid] = (self._seq, bytes(memoryview(buf)[:n]))
        elif type(topic) is bytes:
            # The cache is keyed on identity, so only for bytes: a bytearray
            # topic may hold another topic at the next call.
            self._pub_topic = topic
            self._pub_mlen = ml
            self._pub_retain = retain
            self._pub_at = n - ml
        return buf

    @property
    def inflight(self):
        """QoS 1 publishes sent and not acknowledged yet."""
        return len(self._inflight) + (1 if self._slot_pid else 0)

    def _pending(self, pid):
        return pid == self._slot_pid or pid in self._inflight

    def _acknowledged(self, pid):
        if pid == self._slot_pid:
            self._slot_pid = 0
        else:
            self._inflight.pop(pid, None)

    async def _resend_inflight(self):
        """After a reconnect: every unacknowledged QoS 1 publish again, DUP
        set, in the order they were first sent (MQTT 3.1.1 section 4.6:
        the last command must not be overtaken by an older one)."""
        order = sorted((seq, pid) for pid, (seq, _) in self._inflight.items())
        if self._slot_pid:
            order.append((self._slot_seq, 0))
            order.sort()
        for seq, pid in order:             # (a PUBACK may land between two writes)
            if not pid:
                if self._slot_pid:
                    self._slot[0] |= 0x08
                    await self._write(self._slot, codec.packet_length(self._slot))
                continue
            entry = self._inflight.get(pid)
            if entry is None:
                continue
            pkt = entry[1]
            tx = self._tx_for(len(pkt))
            tx[:len(pkt)] = pkt
            tx[0] |= 0x08
            await self._write(tx, len(pkt))

    async def subscribe(self, topic, qos=0):
        """Subscribe to a topic filter; raises MQTTError if the broker refuses."""
        topic = bytes(to_bytes(topic, "topic"))     # a copy: kept to re-subscribe
        codec.check_topic(topic, True)
        _qos(qos)
        result = await self._retrying(self._subscribe, topic, qos)
        self._subs = [s for s in self._subs if s[0] != topic]
        self._subs.append((topic, qos))
        return result

    async def _subscribe(self, topic, qos):
        self._suback = -1
        done = await self._control(codec.SUBACK, len(topic) + 8, codec.encode_subscribe,
                                   topic, qos)
        if not done:                    # deferred: the SUBACK is checked when it comes
            self._late_sub = (self._wait_pid, topic)
        if done and self._suback == 0x80:
            raise MQTTError("subscription to %r refused by the broker" % bytes(topic), 0x80)
        if done and self._suback == 2:
            # Above what we asked for (a broker may only grant less): QoS 2
            # messages would follow, which this client cannot take.
            await self._unsubscribe(topic)
            raise MQTTError("broker granted QoS 2 to %r (asked %d): unsubscribed" % (bytes(topic), qos), 2)
        return done

    def _refused_late(self, topic, code):
        """A deferred SUBACK refused the subscription (0x80) or granted QoS 2:
        what subscribe() would have raised goes to last_error; the topic is
        not restored after a reconnect, and a QoS 2 grant is undone."""
        self._subs = [s for s in self._subs if s[0] != topic]
        self.last_error = MQTTError("subscription to %r %s" % (
            bytes(topic), "refused by the broker" if code == 0x80 else "granted QoS 2: unsubscribed"),
            code)
        if code == 2:
            asyncio.create_task(_quietly(self._unsubscribe(topic)))

    async def unsubscribe(self, topic):
        """Remove a subscription; True when the UNSUBACK came."""
        topic = bytes(to_bytes(topic, "topic"))
        codec.check_topic(topic, True)
        self._subs = [s for s in self._subs if s[0] != topic]
        return await self._retrying(self._unsubscribe, topic)

    async def _unsubscribe(self, topic):
        return await self._control(codec.UNSUBACK, len(topic) + 8, codec.encode_unsubscribe,
                                   topic)

    async def _control(self, kind, size, encode, *args):
        """Encode a SUBSCRIBE/UNSUBSCRIBE with a new packet id, send it,
        wait for its ack.  One control exchange at a time."""
        while self._ctl_busy:
            await _sleep_ms(1)
        self._ctl_busy = True
        try:
            await self._lock_io()
            try:
                pid = self._new_pid()
                n = encode(self._tx_for(size), pid, *args)
                await self._write_io(self._tx, n)
            finally:
                self._io_busy = False
            return await self._wait(kind, pid)
        finally:
            self._ctl_busy = False

    async def _retrying(self, op, *args):
        """Run op; on link loss reconnect (if configured) and run it again."""
        while True:
            await self._until_connected()
            try:
                return await op(*args)
            except (OSError, MQTTError) as e:
                if getattr(e, "code", None) is not None:    # a refusal, not a broken link
                    raise
                self._link_lost(e)      # raises unless reconnecting

    def _new_pid(self):
        pid = self._pid
        left = 65535
        while left:
            pid = pid % 65535 + 1          # 1..65535, never 0
            if not self._pending(pid):
                self._pid = pid
                return pid
            left -= 1
        raise MQTTError("no free packet id: every one is in flight")

    def _tx_for(self, size):
        """The transmit buffer, grown once if a packet needs more room.
        Every encoder gets it here, which ends the QoS 0 header cache."""
        self._pub_topic = None
        if size > len(self._tx):
            self._tx = bytearray(size)
        return self._tx

    # ---- receiving --------------------------------------------------------

    def check_msg(self):
        """Await it: the meta buffer ([topic_len, end]) if a message is ready, else None.

        Also sends PINGREQs and detects a dead link (no packet for 1.5 x
        keepalive).  Allocation-free when there is nothing to deliver.
        """
        if self._unread or self._bl_head != self._bl_used:
            # A message is at hand, but the keepalive goes on: an app that
            # takes its time over each one must not be dropped by the broker.
            if self._sock is not None and self._cfg["keepalive"]:
                try:
                    if self._ping_due(False):
                        if self._async:
                            return self._ping_then_deliver()
                        self._write_sync(self._pingbuf, 2)
                except (OSError, MQTTError) as e:
                    self._link_lost(e)
            if not self._unread:
                self._from_backlog()
            return self._meta_ready()
        if self._sock is None:
            if self._cfg["reconnect"] and not self._app_closed:
                self._start_supervisor()
                return _DONE
            raise MQTTError("not connected")
        if self._async:
            return self._poll_async()
        try:
            budget = _READS_PER_CALL
            while not self._unread and self._step_sync():
                budget -= 1
                if not budget:
                    break
            if self._ping_due():
                self._write_sync(self._pingbuf, 2)
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return _DONE
        if self._unread:
            return self._meta_ready()
        return _DONE

    async def _meta_ready(self):
        return self._meta

    async def _ping_then_deliver(self):
        try:
            await self._write(self._pingbuf, 2)
        except OSError as e:
            self._link_lost(e)
        if not self._unread:            # another task may have taken it meanwhile
            if self._bl_head == self._bl_used:
                return None
            self._from_backlog()
        return self._meta

    def _poll_async(self):
        """check_msg() on an async transport.  Its readinto answers a plain
        None when nothing waits, so an idle poll makes no coroutine; bytes it
        had at hand (a plain int) are taken now; a read to await goes on in
        _check_async."""
        try:
            if self._io_busy or not self._want():
                return self._check_async(None, self._ping_due())
            r = self._sock.readinto(self._view, self._need)
            if r is None:
                return self._check_async(None, True) if self._ping_due() else _DONE
            if type(r) is int:
                self._took(r)
                r = None
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return _DONE
        return self._check_async(r, False)

    async def _check_async(self, pending, ping):
        # The I/O lock is taken here, when the coroutine runs, not in
        # _poll_async: a check_msg() awaitable that is dropped or cancelled
        # before it starts must not leave the lock raised for ever.  The
        # transport's awaitable reads only when awaited (the contract), so
        # dropping it loses nothing.
        try:
            if pending is not None:
                if self._io_busy:       # another task began reading first
                    _discard(pending)
                else:
                    self._io_busy = True
                    try:
                        n = await self._interruptible(pending)
                    finally:
                        self._io_busy = False
                    self._took(n)
            if self._ack_pending:
                self._ack_pending = False
                await self._write(self._ackbuf, 4)
            budget = _READS_PER_CALL
            while not self._unread and await self._step_async():
                budget -= 1
                if not budget:
                    break
            # after the reads too: bytes that keep coming must not starve the
            # PINGREQ or the dead-link check
            ping = ping or self._ping_due()
            if ping and self._sock is not None:
                await self._write(self._pingbuf, 2)
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return None
        return self._meta if self._unread else None

    async def _interruptible(self, aw):
        """Await a transport read or write; if this task is cancelled (or
        anything but OSError ends it) part of a packet may have gone: the
        byte stream can no longer be trusted, the link goes (_abandon)."""
        try:
            return await aw
        except OSError:
            raise
        except BaseException:
            self._abandon()
            raise

    def _abandon(self):
        """Drop a link whose byte stream was cut off mid-packet (a task
        cancelled in the middle of a read or a write).  Like a lost link, but
        without raising: reconnect: True renews it (resending QoS 1) at the
        next call; without, the next call says "not connected"."""
        if self._sock is not None:
            self._close_transport()
            self._reset_reader()
            self.disconnects += 1
            self.last_error = OSError(_ECONNABORTED, "cancelled in the middle of a packet")

    @property
    def topic(self):
        """The delivered message's topic (a new memoryview of the buffer)."""
        return self._rbuf[:self._meta[0]]

    @property
    def msg(self):
        """The delivered message's payload (a new memoryview of the buffer)."""
        return self._rbuf[self._meta[0]:self._meta[1]]

    def mark_read(self):
        """The app is done with the message: the buffer may be reused."""
        self._unread = False

    def _ping_due(self, judge=True):
        """True when a PINGREQ should go now; MQTTError if the link is dead.

        Two reasons to ping, both after keepalive/2: we have sent nothing
        (the broker drops a client silent for 1.5 x keepalive, even one that
        is busy receiving a flood whose PINGRESP waits behind it), or we have
        heard nothing and no ping is out yet (probe the link).  A healthy
        link answers well before 1.5 x keepalive of silence, the point where
        it is declared dead (the broker's own limit): judged only where the
        socket is read first.
        """
        ka = self._cfg["keepalive"]
        if not ka:
            return False
        now = ticks_ms()
        since_rx = ticks_diff(now, self._last_rx)
        # judge=False while the app holds messages and the socket is not read:
        # the PINGRESP waits there, unread, and is no sign of a dead link.
        if judge and since_rx >= ka * 1500:
            raise MQTTError("keepalive: no packet from the server for %d ms" % since_rx)
        if ticks_diff(now, self._last_tx) < ka * 500 and (self._ping_sent or since_rx < ka * 500):
            return False
        self._ping_sent = True
        return True

    # The reader is a small state machine so that a packet may arrive in
    # pieces across polls: first the fixed header (2-5 bytes), then the body
    # straight into its destination buffer.
    def _reset_reader(self):
        self._hn = 0           # fixed header bytes read
        self._rem = -1         # remaining length, -1 until known
        self._got = 0          # body bytes read
        self._dest = _NONE
        self._drop_tl = 0      # drain: topic length, then packet id
        self._drop_pid = 0
        self._ack_pending = False
        self._stalled = False

    def _want(self):
        """Point self._view/self._need at the next read; False if stalled."""
        if self._rem < 0:
            hn = self._hn
            self._view = self._hviews[hn]
            self._need = 2 - hn if hn < 2 else 1
            return True
        dest = self._dest
        if dest == _NONE:
            if not self._choose_dest():
                return False
            dest = self._dest
        left = self._rem - self._got
        if dest == _DRAIN:
            # Into the whole backlog when it is empty (nothing else can write
            # it while this packet is read): big reads drain a flood in few
            # calls (on a modem, few AT round trips); else the small scratch.
            view = self._backlog if not self._bl_used and len(self._backlog) > 32 else self._scratch
            self._view = view
            self._need = left if left < len(view) else len(view)
            return True
        if dest == _TO_RBUF:
            # The topic length goes aside, so the topic lands at rbuf[0] and
            # a QoS 0 payload right behind it: nothing to move afterwards.
            got = self._got
            if got < 2:
                self._view = self._small_v if got == 0 else self._small_v[1:]
                self._need = 2 - got
            else:
                self._view = self._rbuf if got == 2 else self._rbuf[got - 2:]
                self._need = left
            return True
        if dest == _TO_SMALL:
            base = self._small_v
        else:
            base = self._backlog[self._bl_used + _BL_HDR:]
        self._view = base if self._got == 0 else base[self._got:]   # a slice only for a split packet
        self._need = left
        return True

    def _choose_dest(self):
        first = self._hdr[0]
        rem = self._rem
        if first & 0xF0 != codec.PUBLISH:
            self._dest = _TO_SMALL
        elif rem - 2 > len(self._rbuf):
            self._dest = _DRAIN
        elif not self._unread and not self._bl_used:
            self._dest = _TO_RBUF
        elif self._backlog_room(rem):
            self._dest = _TO_BACKLOG
        else:
            self._stalled = True      # leave it in the socket until the app reads
            return False
        self._stalled = False
        return True

    def _advance(self, n):
        """n bytes landed in self._view; returns True if a packet completed."""
        if self._rem < 0:
            self._hn += n
            if self._hn < 2:
                return False
            rem = codec.decode_remaining(self._hdr, self._hn)
            if rem < 0:
                return False
            codec.check_fixed_header(self._hdr[0], rem)
            if self._connack < 0 and self._hdr[0] != codec.CONNACK:
                raise MQTTError("packet 0x%02x before the CONNACK" % self._hdr[0])
            self._rem = rem
            self._got = 0
            self._dest = _NONE
            self._drop_tl = 0           # a drained packet's topic length and id:
            self._drop_pid = 0          # each packet's own
            if rem:
                return False
            # PINGRESP has no body: complete now
        else:
            if self._dest == _DRAIN:
                self._drain_track(n)
            self._got += n
            if self._got < self._rem:
                if self._got == 2 and self._dest == _TO_RBUF:
                    self._check_topic_len(self._hdr[0], (self._small[0] << 8) | self._small[1],
                                          self._rem)
                return False
        self._last_rx = ticks_ms()
        self._complete()
        self._hn = 0
        self._rem = -1
        self._dest = _NONE
        return True

    def _complete(self):
        first = self._hdr[0]
        kind = first & 0xF0
        s = self._small
        if kind == codec.PUBLISH:
            dest = self._dest
            if dest == _TO_RBUF:
                pid = self._deliver(first, self._rem, (s[0] << 8) | s[1])
            elif dest == _TO_BACKLOG:
                pid = self._parse_publish(self._backlog[self._bl_used + _BL_HDR:], first,
                                          self._rem)
                bl = self._backlog
                at = self._bl_used
                rem = self._rem
                bl[at] = first
                bl[at + 1] = rem >> 24
                bl[at + 2] = (rem >> 16) & 0xFF
                bl[at + 3] = (rem >> 8) & 0xFF
                bl[at + 4] = rem & 0xFF
                self._bl_used = at + _BL_HDR + rem
            else:
                pid = self._drop_pid
                if first & 0x06 and not pid:
                    raise MQTTError(_PID0)
                self.dropped += 1
            if first & 0x06:
                codec.encode_ack(self._ackbuf, codec.PUBACK, pid)
                self._ack_pending = True
            if dest == _DRAIN and self.on_drop:
                self._call_hook(self.on_drop, self._rem)
            return
        if kind == codec.PINGRESP:
            self._ping_sent = False
            return
        pid = (s[0] << 8) | s[1]
        if kind == codec.CONNACK:
            if s[1] > 5 or s[0] & 0xFE:
                raise MQTTError("malformed CONNACK")
            if self._connack != -1:
                raise MQTTError("a second CONNACK in one session")
            self._connack = (s[0] << 8) | s[1]
        elif kind == codec.PUBACK:
            self._acknowledged(pid)
        elif kind == codec.SUBACK:
            if s[2] not in (0, 1, 2, 0x80):
                raise MQTTError("malformed SUBACK return code %d" % s[2])
            if self._acked(codec.SUBACK, pid):
                self._suback = s[2]
            late = self._late_sub
            if late is not None and late[0] == pid:
                self._late_sub = None
                if s[2] == 0x80 or s[2] == 2:
                    self._refused_late(late[1], s[2])
        elif kind == codec.UNSUBACK:
            self._acked(codec.UNSUBACK, pid)

    def _call_hook(self, hook, arg):
        """An app's callback: its bug must not break the session (a hook that
        raised mid-packet left the reader half way and the message unacked);
        what it raised is kept in last_error."""
        try:
            hook(arg)
        except Exception as e:
            self.last_error = e

    def _acked(self, kind, pid):
        if self._wait_kind == kind and self._wait_pid == pid:
            self._wait_done = True
            return True
        return False

    @staticmethod
    def _check_topic_len(first, tl, rem):
        if tl == 0 or 2 + tl + (2 if first & 0x06 else 0) > rem:
            raise MQTTError("malformed PUBLISH: topic length %d in %d bytes" % (tl, rem))

    def _parse_publish(self, body, first, rem):
        """Validate a PUBLISH body (with its topic length); returns its packet id."""
        tl = (body[0] << 8) | body[1]
        self._check_topic_len(first, tl, rem)
        if not first & 0x06:
            return 0
        pid = (body[2 + tl] << 8) | body[3 + tl]
        if not pid:
            raise MQTTError(_PID0)
        return pid

    def _deliver(self, first, rem, tl):
        """rbuf holds topic, [packet id,] payload (the body less its topic
        length): set the meta, take a QoS 1 packet id out; returns the id."""
        b = self._rbuf
        end = rem - 2
        pid = 0
        if first & 0x06:
            pid = (b[tl] << 8) | b[tl + 1]
            if not pid:
                raise MQTTError(_PID0)
            i = tl                       # payload down over the id (a loop: no allocation)
            end -= 2
            while i < end:
                b[i] = b[i + 2]
                i += 1
        self._meta[0] = tl
        self._meta[1] = end
        self.msg_flags = first
        self._unread = True
        return pid

    # The backlog holds entries [first byte, 4-byte remaining length, body]
    # from _bl_head to _bl_used.  Delivering one only moves _bl_head: the
    # entries are moved down (compacted) only when no packet is being read
    # into the backlog, since on an async transport a read in flight writes
    # to the place it was given, compaction or not.
    def _backlog_room(self, rem):
        """Room for an entry of rem body bytes (compacting first)."""
        bl = self._backlog
        head, used = self._bl_head, self._bl_used
        if head:
            if head < used:
                bl[:used - head] = bl[head:used]
            self._bl_used = used = used - head
            self._bl_head = 0
        return used + _BL_HDR + rem <= len(bl)

    def _from_backlog(self):
        """Move the oldest backlog message into the caller's buffer."""
        bl = self._backlog
        at = self._bl_head
        first = bl[at]
        rem = (bl[at + 1] << 24) | (bl[at + 2] << 16) | (bl[at + 3] << 8) | bl[at + 4]
        body = at + _BL_HDR
        tl = (bl[body] << 8) | bl[body + 1]
        self._rbuf[:rem - 2] = bl[body + 2:body + rem]
        self._bl_head = at = body + rem
        if at == self._bl_used and self._dest != _TO_BACKLOG:
            self._bl_head = self._bl_used = 0
        self._deliver(first, rem, tl)

    def _drain_track(self, n):
        """Pick the topic length and packet id out of a message being dropped."""
        got = self._got
        sc = self._view
        k = 0
        while k < n:
            pos = got + k
            if pos < 2:
                self._drop_tl = (self._drop_tl << 8) | sc[k]
            elif pos == self._drop_tl + 2 or pos == self._drop_tl + 3:
                self._drop_pid = ((self._drop_pid << 8) | sc[k]) & 0xFFFF
            k += 1

    # ---- I/O ------------------------------------------------------------

    def _step_sync(self):
        """One non-blocking read; True if bytes arrived."""
        if self._rem < 0 and self._hn == 0:
            return self._read_fast()
        if not self._want():
            return False
        if not self._took(self._sock.readinto(self._view, self._need)):
            return False
        self._flush_ack()
        return True

    def _read_fast(self):
        """A packet from its first byte, the common case in one call.

        A QoS 0/1 PUBLISH with a one-byte length that fits the free buffer
        and has fully arrived is read (header, topic length, body: three
        reads) and delivered here; the general reader (_want/_advance, a
        method call per step) measured ~27 us per message on the unix port,
        this ~10.  Anything else, or a packet only partly there, continues
        in the general reader from the state set here.
        """
        # Reader state (_hn, _rem, _got, _dest) is only written when the
        # general reader must take over: the common path touches none of it.
        sock = self._sock
        hdr = self._hdr
        n = sock.readinto(hdr, 2)
        if n is None:
            return False
        if n != 2:
            if n == 0:
                raise OSError(_ECONNRESET, "connection closed by the server")
            _count(n, 1)
            self._hn = 1
            return True
        first = hdr[0]
        rem = hdr[1]
        rbuf = self._rbuf
        if (first & 0xF4) != codec.PUBLISH or rem & 0x80 or rem < 3 or self._unread \
                or self._bl_used or rem - 2 > len(rbuf) or self._connack < 0:
            self._hn = 2
            self._advance(0)            # the header is complete (or needs more bytes)
            self._flush_ack()
            return True
        small = self._small
        n = sock.readinto(small, 2)
        if n != 2:
            return self._continue_publish(rem, n)
        tl = (small[0] << 8) | small[1]
        body = rem - 2
        if tl == 0 or tl + (4 if first & 0x06 else 2) > rem:
            self._check_topic_len(first, tl, rem)   # raises, naming the fault
        n = sock.readinto(rbuf, body)
        if n != body:
            return self._continue_publish(rem, 2 + (n or 0))
        self._last_rx = ticks_ms()
        if not first & 0x06:            # QoS 0: topic and payload are in place
            meta = self._meta
            meta[0] = tl
            meta[1] = body
            self.msg_flags = first
            self._unread = True
            return True
        pid = self._deliver(first, rem, tl)
        codec.encode_ack(self._ackbuf, codec.PUBACK, pid)
        self._write_sync(self._ackbuf, 4)
        return True

    def _continue_publish(self, rem, got):
        """A PUBLISH only partly there: the general reader goes on with it."""
        _count(got, rem)
        self._last_rx = ticks_ms()
        self._hn = 2
        self._rem = rem
        self._dest = _TO_RBUF
        self._got = got or 0
        return True

    def _took(self, n):
        """What a readinto into self._view answered: False for nothing yet,
        an error at end of stream, else the bytes go to the reader."""
        if n is None:
            return False
        if n == 0:
            raise OSError(_ECONNRESET, "connection closed by the server")
        _count(n, self._need)
        # Any byte proves the link alive: a big message on a slow link (kept
        # or drained) may take longer than 1.5 x keepalive to arrive whole,
        # and declaring it dead would have the broker resend it for ever.
        # (An endless packet is bounded by its remaining length; the
        # broker's side of keepalive is served by our PINGREQs.)
        self._last_rx = ticks_ms()
        self._advance(n)
        return True

    def _flush_ack(self):
        if self._ack_pending:
            self._ack_pending = False
            self._write_sync(self._ackbuf, 4)

    async def _step_async(self):
        if self._io_busy or not self._want():
            return False
        self._io_busy = True
        try:
            if self._sock is None:
                raise OSError(_ENOTCONN, "not connected")
            n = self._sock.readinto(self._view, self._need)
            if n is None:
                return False
            if type(n) is not int:
                n = await self._interruptible(n)
            if not self._took(n):
                return False
            if self._ack_pending:
                self._ack_pending = False
                await self._write_async(self._ackbuf, 4)
            return True
        finally:
            self._io_busy = False

    def _write_sync(self, buf, n):
        """All of buf[0:n], one write call when the socket takes it (it does
        unless its send buffer is full: then retry, up to timeout_ms)."""
        sock = self._sock
        w = sock.write(buf, n)
        if w != n:
            off = _count(w, n)
            start = ticks_ms()
            view = memoryview(buf)
            while off < n:
                if ticks_diff(ticks_ms(), start) > self._cfg["timeout_ms"]:
                    raise OSError(_ETIMEDOUT, "socket write timed out")
                w = _count(sock.write(view[off:], n - off), n - off)
                if w:
                    off += w
                elif self._poller:
                    self._poller.poll(1)    # back as soon as the socket takes more
                else:
                    sleep_ms(1)
        self._last_tx = ticks_ms()

    async def _write_async(self, buf, n):
        sock = self._sock
        if sock is None:                # dropped while this task waited its turn
            raise OSError(_ENOTCONN, "not connected")
        off = 0
        start = ticks_ms()
        while off < n:
            if self._sock is not sock:  # the link was renewed under this write
                raise OSError(_ENOTCONN, "the link closed during a write")
            w = _count(await self._interruptible(
                sock.write(memoryview(buf)[off:] if off else buf, n - off)), n - off)
            if w:
                off += w
            else:
                if ticks_diff(ticks_ms(), start) > self._cfg["timeout_ms"]:
                    raise OSError(_ETIMEDOUT, "socket write timed out")
                await _sleep_ms(1)
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
            raise OSError(_ENOTCONN, "not connected")
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

    async def _wait(self, kind, pid, survive=False):
        """Read until the ack (kind, pid) arrives.

        True when it came; False when reading is stalled behind messages the
        app has not read (the ack is handled by a later check_msg()).
        Raises MQTTError after timeout_ms without it, OSError on link loss;
        with survive (a QoS 1 publish) and reconnect on, a lost link is
        renewed instead (the reconnect resends the publish) and the wait
        goes on.
        """
        if kind != codec.PUBACK and kind != codec.CONNACK:
            self._wait_kind = kind
            self._wait_pid = pid
            self._wait_done = False
        start = ticks_ms()
        budget = _READS_PER_CALL
        while not self._waited(kind, pid):
            try:
                if self._sock is None:
                    raise OSError(_ENOTCONN, "not connected")
                if self._async:
                    progressed = await self._step_async()
                else:
                    progressed = self._step_sync()
                if self._waited(kind, pid):
                    break
                if self._stalled:
                    return False
                # The deadline holds while bytes flow too: a flood of other
                # packets must not keep an ack wait alive.
                waited = ticks_diff(ticks_ms(), start)
                if waited > self._cfg["timeout_ms"]:
                    raise MQTTError("no reply (0x%02x, id %d) within %d ms" % (kind, pid, waited))
                if progressed:
                    budget -= 1
                    if budget:
                        continue
                    budget = _READS_PER_CALL    # let the other tasks run
                    waited = 0
            except (OSError, MQTTError) as e:
                if not survive:
                    raise
                self._link_lost(e)      # raises unless reconnecting
                await self._until_connected()
                start = ticks_ms()
                continue
            await _sleep_ms(0 if waited < 2 else 1)
        return True

    def _waited(self, kind, pid):
        # A PUBACK is told by its in-flight entry going away, so several
        # QoS 1 publishes (from several tasks) can wait at once.
        if kind == codec.PUBACK:
            return not self._pending(pid)
        if kind == codec.CONNACK:       # its own record: a control wait cannot take it
            return self._connack != -1
        return self._wait_done


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


async def _quietly(aw):
    try:
        await aw
    except Exception:       # closing a broken link: nothing left to report
        pass



_MAX_MS = 0x1FFFFFFF    # ticks_diff() spans +-2**29 ms on 32-bit ports (period 2**30)


def _int(value, what, lo, hi):
    """An int option in [lo, hi]; a bool or a float is a mistake, not a number."""
    if type(value) is not int:
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__))
    if not lo <= value <= hi:
        raise ValueError("%s must be %d..%d, not %d" % (what, lo, hi, value))
    return value


def _count(n, most):
    """What a transport's readinto/write answered, checked: None or 0..most.
    Anything else (negative, more than asked) would walk the reader or the
    writer out of the packet: the link is not to be trusted (EIO)."""
    if n is None:
        return 0
    if type(n) is not int or not 0 <= n <= most:
        raise OSError(_EIO, "the transport answered %r for %d bytes" % (n, most))
    return n


def _discard(aw):
    """An awaitable that will never be awaited: close it quietly."""
    close = getattr(aw, "close", None)
    if close:
        close()


_PID0 = "malformed PUBLISH: QoS 1 with packet id 0"


def _qos(qos):
    """0 or 1, an int: 1.0 or True would pass `qos == 1` and break later."""
    if type(qos) is not int:
        raise TypeError("qos must be an int (0 or 1), not %s" % type(qos).__name__)
    if qos != 0 and qos != 1:
        raise ValueError("qos must be 0 or 1")


def _flag(value, what):
    """True/False (or 0/1): anything else is more likely a mistake than a choice."""
    if value is True or value is False:
        return value
    if type(value) is int and (value == 0 or value == 1):
        return bool(value)
    raise TypeError("%s must be True or False, not %r" % (what, value))


def _binary(value, what):
    """Binary data of a CONNECT field: bytes (a copy), at most 65,535."""
    b = bytes(to_bytes(value, what))
    if len(b) > 65535:
        raise ValueError("%s is longer than 65535 bytes" % what)
    return b


def _string(value, what):
    """A CONNECT UTF-8 string field: _binary, and well-formed UTF-8."""
    b = _binary(value, what)
    codec.check_utf8(b, what)
    return b
