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
were at hand; write may likewise answer a plain int (bytes taken at once)
or None (none now: tried again shortly).  An awaitable readinto returns must read only when awaited:
the client may drop one it never started.  A task cancelled in the middle
of a read or a write drops the link (part of a packet may have gone).  Native sockets (sock_cls=None) are MicroPython's
`socket` (which has this shape) or CPython's, adapted below.

Config keys: client_id, server, port, user, password, keepalive (s),
last_will{topic,msg,qos,retain}, clean_session (True), ssl (False, True or
a dict: cafile, cadata, certfile, keyfile, verify, server_hostname; over
any transport, see mqtt_tls), reconnect (False: link loss
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

Errors: MQTTRefused (a subclass of MQTTError, `code` set) when the server
says no (CONNACK return code, SUBACK 0x80 or a QoS 2 grant): never retried.
OSError when the link breaks; MQTTError when the server breaks the protocol
or does not answer in time.  With reconnect on, the last two renew the
link (mqtt_supervisor._link_lost decides) and are kept in last_error.

Where things live: see the class docstring below (one base class per
concern) and docs/architecture.md.
"""
import sys

import mqtt_codec as codec
from mpcompat import const, ticks_ms, asleep_ms as _sleep_ms
from mqtt_codec import MQTTError, MQTTRefused, to_bytes
from mqtt_config import check_buffer, check_config, check_qos, flag
from mqtt_reader import MQTTReader
from mqtt_session import MQTTSession
from mqtt_supervisor import MQTTSupervisor
from mqtt_transport import DONE, awaitable, discard, quietly

__all__ = ("AsyncMQTTClient", "MQTTError", "MQTTRefused")

_MICROPYTHON = sys.implementation.name == "micropython"

# Reads one check_msg() (or one turn of an ack wait) may make before it
# yields: a peer that never stops sending (a flood of messages too big to
# keep) must not hold the event loop.  A delivered message ends the call
# anyway; 16 reads drain 16 x the backlog's size.
_READS_PER_CALL = const(16)


class AsyncMQTTClient(MQTTSupervisor):
    """The client the app uses.  Its layers, each a base class (no cost on
    the hot path: MicroPython's method cache hides the depth):

        AsyncMQTTClient   this file: the calls the app makes
        MQTTSupervisor    mqtt_supervisor.py: lost link -> raise or reconnect
        MQTTSession       mqtt_session.py: CONNECT, acks, QoS 1 in flight, keepalive
        MQTTReader        mqtt_reader.py: bytes -> packets -> the caller's buffer
        MQTTTransport     mqtt_transport.py: open, write, close the link
    and mqtt_config.py (checks every option), mqtt_codec.py (packets <-> bytes).
    """

    # The receive hot path's methods, bound here as well as in their own
    # class: MicroPython looks a method up in the instance's dict, then in
    # each class of the chain, and a miss costs a probe of that class's
    # dict; one found four classes up costs ~200 ns more per call than one
    # found here (measured on the unix port, 1.25), and an idle poll makes
    # five such calls.  (tests/test_allocation.py checks that this class
    # dict does not end up a full table: 23 entries was one.)
    _step_sync = MQTTReader._step_sync
    _read_fast = MQTTReader._read_fast
    _took = MQTTReader._took
    _want = MQTTReader._want
    _advance = MQTTReader._advance
    _step_now = MQTTReader._step_now
    _keepalive = MQTTSession._keepalive

    def __init__(self, config, recv_buf):
        recv_buf = check_buffer(recv_buf)
        MQTTSupervisor.__init__(self, check_config(config, len(recv_buf)), recv_buf)
        self._checked_topic = None   # last publish topic validated

    # ---- the session ------------------------------------------------------

    async def connect(self, sock_cls=None, async_sock=False, clean_session=None):
        """Open the transport and the MQTT session; raises MQTTRefused (an
        MQTTError) when the server refuses, OSError when the link fails."""
        if sock_cls is not None and not (callable(sock_cls) and hasattr(sock_cls, "getaddrinfo")):
            raise TypeError("sock_cls must be a socket class (getaddrinfo, and a call that "
                            "makes a socket), not %s" % type(sock_cls).__name__)
        async_sock = flag(async_sock, "async_sock")
        if clean_session is not None:
            self._cfg["clean_session"] = flag(clean_session, "clean_session")
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
                await quietly(r)

    def isconnected(self):
        """True while the session is up (CONNACK in, subscriptions and QoS 1 restored)."""
        return self._up

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
        check_qos(qos)
        if retain is not False and retain is not True:
            retain = flag(retain, "retain")
        if qos and self._inflight_count() >= self._cfg["max_inflight"]:
            # Each entry holds a copy of its packet (a small heap runs out),
            # and 65,535 would leave no packet id to take.
            raise MQTTError("%d QoS 1 publishes await their PUBACK (max_inflight): "
                            "read (check_msg) or wait before publishing more" % self._inflight_count())
        if len(topic) + len(msg) > codec.MAX_REMAINING - 4:
            raise ValueError("message too large for MQTT (268,435,455 bytes with its topic)")
        if not self._up:
            return self._publish_slow(topic, msg, retain, qos)
        if self._async:
            # Async transport: a QoS 0 publish the transport takes at once
            # (a plain int answer) costs no coroutine either; else the
            # awaited way, from the encoding on (nothing was sent).
            if not qos and not self._io_busy and self._plain_writes:
                try:
                    if self._write_now(self._encode_publish(topic, msg, retain, 0, 0),
                                       self._enc_len):
                        return DONE
                except OSError as e:
                    self._link_lost(e)  # raises unless reconnecting
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
        return DONE

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

    async def subscribe(self, topic, qos=0):
        """Subscribe to a topic filter; raises MQTTRefused if the broker refuses."""
        topic = bytes(to_bytes(topic, "topic"))     # a copy: kept to re-subscribe
        codec.check_topic(topic, True)
        check_qos(qos)
        result = await self._retrying(self._subscribe, topic, qos)
        self._subs = [s for s in self._subs if s[0] != topic]
        self._subs.append((topic, qos))
        return result

    async def unsubscribe(self, topic):
        """Remove a subscription; True when the UNSUBACK came."""
        topic = bytes(to_bytes(topic, "topic"))
        codec.check_topic(topic, True)
        self._subs = [s for s in self._subs if s[0] != topic]
        return await self._retrying(self._unsubscribe, topic)

    # ---- receiving --------------------------------------------------------

    def check_msg(self):
        """Await it: the meta buffer ([topic_len, end]) if a message is ready, else None.

        Also sends PINGREQs and detects a dead link (no packet for 1.5 x
        keepalive).  Allocation-free when there is nothing to deliver.
        """
        if self._unread or self._bl_head != self._bl_used:
            # A message is at hand, but the keepalive goes on: an app that
            # takes its time over each one must not be dropped by the broker.
            if self._sock is not None and self._ka_half:
                try:
                    if self._ping_due():
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
                self._check_refused()
                self._start_supervisor()
                return DONE
            raise MQTTError("not connected")
        if self._async:
            return self._poll_async()
        try:
            budget = _READS_PER_CALL
            while not self._unread and self._step_sync():
                budget -= 1
                if not budget:
                    break
            if self._keepalive():
                self._write_sync(self._pingbuf, 2)
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return DONE
        if self._unread:
            return self._meta_ready()
        return DONE

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
        """check_msg() on an async transport, as far as it goes without an
        await: readinto answers a plain None when nothing waits and a plain
        int for bytes it had at hand, so an idle poll, and a message that
        was at hand, cost no coroutine.  The first awaitable (a read to
        wait for, a PUBACK or PINGREQ the transport did not take at once)
        goes on in _check_async."""
        try:
            if self._io_busy:
                return self._check_async(None, self._keepalive())
            if self._ack_pending and not self._ack_now():
                return self._check_async(None, False)
            budget = _READS_PER_CALL
            while not self._unread and self._want():
                r = self._sock.readinto(self._view, self._need)
                if r is None:
                    break
                if type(r) is not int:
                    return self._check_async(awaitable(r), False)
                self._took(r)
                if self._ack_pending and not self._ack_now():
                    return self._check_async(None, False)
                budget -= 1
                if not budget:
                    break
            if self._keepalive():
                if not (self._plain_writes and self._write_now(self._pingbuf, 2)):
                    return self._check_async(None, True)
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return DONE
        if self._unread:
            return self._meta_ready()
        return DONE

    async def _check_async(self, pending, ping):
        # The I/O lock is taken here, when the coroutine runs, not in
        # _poll_async: a check_msg() awaitable that is dropped or cancelled
        # before it starts must not leave the lock raised for ever.  The
        # transport's awaitable reads only when awaited (the contract), so
        # dropping it loses nothing.
        try:
            if pending is not None:
                if self._io_busy:       # another task began reading first
                    discard(pending)
                else:
                    self._io_busy = True
                    try:
                        n = await self._interruptible(pending)
                    finally:
                        self._io_busy = False
                    self._took(n)
            if self._ack_pending:
                await self._lock_io()
                try:
                    if self._ack_pending:   # (not sent meanwhile by the lock's holder)
                        await self._write_io(self._ackbuf, 4)
                        self._ack_pending = False   # once written: see _step_async
                finally:
                    self._io_busy = False
            budget = _READS_PER_CALL
            while not self._unread:
                step = self._step_now()
                if step is not True and step is not False:
                    step = await self._step_async(step)
                if not step:
                    break
                budget -= 1
                if not budget:
                    break
            # after the reads too: bytes that keep coming must not starve the
            # PINGREQ or the dead-link check
            ping = self._keepalive() or ping
            if ping and self._sock is not None:
                await self._write(self._pingbuf, 2)
        except (OSError, MQTTError) as e:
            self._link_lost(e)
            return None
        return self._meta if self._unread else None

    # client.topic, client.msg (the delivered message: a new memoryview of
    # the buffer each) and client.inflight (QoS 1 publishes sent and not
    # acknowledged yet) are computed on access.  On MicroPython __getattr__
    # serves them, not properties: one property anywhere in the class chain
    # makes every `self.x = ...` search all five class dicts for a setter
    # first (measured on the unix port: 385 ns per store instead of 73, and
    # the hot path stores several attributes per message).  __getattr__ is
    # asked only for names found nowhere else.  CPython gets properties.
    if _MICROPYTHON:
        def __getattr__(self, name):
            if name == "topic":
                return self._rbuf[:self._meta[0]]
            if name == "msg":
                return self._rbuf[self._meta[0]:self._meta[1]]
            if name == "inflight":
                return self._inflight_count()
            raise AttributeError(name)
    else:
        topic = property(lambda self: self._rbuf[:self._meta[0]],
                         doc="The delivered message's topic (a new memoryview of the buffer).")
        msg = property(lambda self: self._rbuf[self._meta[0]:self._meta[1]],
                       doc="The delivered message's payload (a new memoryview of the buffer).")
        inflight = property(lambda self: self._inflight_count(),
                            doc="QoS 1 publishes sent and not acknowledged yet.")

    def mark_read(self):
        """The app is done with the message: the buffer may be reused."""
        self._unread = False
