"""The MQTT session: the protocol state above the packet reader.

MQTTSession owns what the broker and the client must agree on:
- opening a session on a fresh link: CONNECT, the CONNACK, then (on a
  reconnect) the subscriptions back and unacknowledged QoS 1 resent
  (_open_and_restore);
- packet ids, the QoS 1 publishes in flight (one preallocated slot, more
  in a dict) and their resend in first-sent order;
- subscribe/unsubscribe exchanges, one at a time, and their acks
  (_control, _control_packet), including SUBACKs that come late;
- waiting for an ack (_wait) without deadlocking behind unread messages;
- keepalive: when to send a PINGREQ (_ping_due) and when the link is dead
  (_check_alive), two separate decisions.

Reconnecting is not decided here (mqtt_supervisor), nor is anything the
app calls directly (async_mqtt_client).
"""
import mqtt_codec as codec
from mpcompat import asyncio, const, ticks_ms, ticks_diff, asleep_ms as _sleep_ms
from mqtt_codec import MQTTError, MQTTRefused
from mqtt_reader import MQTTReader
from mqtt_transport import ENOTCONN, quietly

_DUP_BIT = const(0x08)
# Packet types (as in mqtt_codec; const() so MicroPython folds them)
_CONNACK = const(0x20)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_UNSUBACK = const(0xB0)
_PINGRESP = const(0xD0)
_READS_PER_CALL = const(16)     # see _wait; the same budget as check_msg()'s


class MQTTSession(MQTTReader):
    """Protocol state: CONNECT, packet ids, QoS 1 in flight, acks, keepalive."""

    def __init__(self, cfg, recv_buf):
        MQTTReader.__init__(self, cfg, recv_buf)
        self._tx = bytearray(max(64, len(recv_buf) + 8))
        self._pingbuf = bytes((codec.PINGREQ, 0))
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
        self._up = False             # CONNACK in, subscriptions restored, QoS 1 resent
        self.session_present = False
        self._wait_kind = 0          # the control ack being awaited (CONNACK/SUBACK/UNSUBACK)
        self._wait_pid = 0
        self._wait_done = False
        self._suback = -1            # the awaited SUBACK's return code
        self._ctl_busy = False       # one control exchange at a time
        self._late_sub = None        # (packet id, topic) of a subscribe whose SUBACK was deferred
        self._ping_sent = False
        self._ka_half = cfg["keepalive"] * 500

    # ---- opening a session on a fresh link ------------------------------

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
            if not await self._wait(_CONNACK, 0):
                raise MQTTError("CONNACK did not arrive")
            rc = self._connack & 0xFF
            if rc:
                reason = codec.CONNACK_REASONS[rc] if rc < len(codec.CONNACK_REASONS) else "code %d" % rc
                raise MQTTRefused("connection refused: " + reason, rc)
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
                    except MQTTRefused as e:
                        # Granted before, refused now (the broker's ACL
                        # changed): keep the session, tell the app.
                        self.last_error = e
            await self._resend_inflight()   # unacked QoS 1 is never lost, connect() or not
            self._up = True
        except BaseException:
            self._close_transport()
            raise

    # ---- control packets from the server ------------------------------

    def _control_packet(self, kind, s):
        """A control packet from the server, its body in s (mqtt_reader)."""
        if kind == _PINGRESP:
            self._ping_sent = False
            return
        pid = (s[0] << 8) | s[1]
        if kind == _CONNACK:
            if s[1] > 5 or s[0] & 0xFE:
                raise MQTTError("malformed CONNACK")
            if self._connack != -1:
                raise MQTTError("a second CONNACK in one session")
            self._connack = (s[0] << 8) | s[1]
        elif kind == _PUBACK:
            self._acknowledged(pid)
        elif kind == _SUBACK:
            if s[2] not in (0, 1, 2, 0x80):
                raise MQTTError("malformed SUBACK return code %d" % s[2])
            if self._acked(_SUBACK, pid):
                self._suback = s[2]
            late = self._late_sub
            if late is not None and late[0] == pid:
                self._late_sub = None
                if s[2] == 0x80 or s[2] == 2:
                    self._refused_late(late[1], s[2])
        elif kind == _UNSUBACK:
            self._acked(_UNSUBACK, pid)

    def _acked(self, kind, pid):
        if self._wait_kind == kind and self._wait_pid == pid:
            self._wait_done = True
            return True
        return False

    # Keepalive: two decisions, both from the link's activity (_last_tx,
    # _last_rx: any byte in refreshes it, mqtt_reader), both asked on every
    # poll: hence _ka_half, keepalive/2 in ms (0: no keepalive), computed once.
    def _check_alive(self):
        """MQTTError when nothing came from the server for 1.5 x keepalive:
        the broker's own limit; a healthy link answers a PINGREQ well before.
        Only asked where the socket is read first (a PINGRESP waiting
        unread behind messages the app holds is no sign of a dead link)."""
        half = self._ka_half
        if half:
            since_rx = ticks_diff(ticks_ms(), self._last_rx)
            if since_rx >= 3 * half:
                raise MQTTError("keepalive: no packet from the server for %d ms" % since_rx)

    def _keepalive(self):
        """Both decisions, for a poll that has just read the socket: raises
        if the link is dead (_check_alive), True if a ping is due
        (_ping_due).  One call, and quick while neither can be: something
        was sent and heard within keepalive/2."""
        half = self._ka_half
        if not half:
            return False
        now = ticks_ms()
        if ticks_diff(now, self._last_rx) < half and ticks_diff(now, self._last_tx) < half:
            return False
        self._check_alive()
        return self._ping_due()

    def _ping_due(self):
        """True when a PINGREQ should go now (the caller sends it).

        Two reasons to ping, both after keepalive/2: we have sent nothing
        (the broker drops a client silent for 1.5 x keepalive, even one that
        is busy receiving a flood whose PINGRESP waits behind it), or we have
        heard nothing and no ping is out yet (probe the link).
        """
        half = self._ka_half
        if not half:
            return False
        now = ticks_ms()
        if ticks_diff(now, self._last_tx) < half and \
                (self._ping_sent or ticks_diff(now, self._last_rx) < half):
            return False
        self._ping_sent = True
        return True

    # ---- QoS 1 in flight -------------------------------------------------

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

    def _inflight_count(self):
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
                    self._slot[0] |= _DUP_BIT
                    await self._write(self._slot, codec.packet_length(self._slot))
                continue
            entry = self._inflight.get(pid)
            if entry is None:
                continue
            pkt = entry[1]
            tx = self._tx_for(len(pkt))
            tx[:len(pkt)] = pkt
            tx[0] |= _DUP_BIT
            await self._write(tx, len(pkt))

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

    # ---- subscribe, unsubscribe, and waiting for acks ------------------

    async def _subscribe(self, topic, qos):
        self._suback = -1
        done = await self._control(_SUBACK, len(topic) + 8, codec.encode_subscribe,
                                   topic, qos)
        if not done:                    # deferred: the SUBACK is checked when it comes
            self._late_sub = (self._wait_pid, topic)
        if done and self._suback == 0x80:
            raise MQTTRefused("subscription to %r refused by the broker" % bytes(topic), 0x80)
        if done and self._suback == 2:
            # Above what we asked for (a broker may only grant less): QoS 2
            # messages would follow, which this client cannot take.
            await self._unsubscribe(topic)
            raise MQTTRefused("broker granted QoS 2 to %r (asked %d): unsubscribed" % (bytes(topic), qos), 2)
        return done

    def _refused_late(self, topic, code):
        """A deferred SUBACK refused the subscription (0x80) or granted QoS 2:
        what subscribe() would have raised goes to last_error; the topic is
        not restored after a reconnect, and a QoS 2 grant is undone."""
        self._subs = [s for s in self._subs if s[0] != topic]
        self.last_error = MQTTRefused("subscription to %r %s" % (
            bytes(topic), "refused by the broker" if code == 0x80 else "granted QoS 2: unsubscribed"),
            code)
        if code == 2:
            asyncio.create_task(quietly(self._unsubscribe(topic)))

    async def _unsubscribe(self, topic):
        return await self._control(_UNSUBACK, len(topic) + 8, codec.encode_unsubscribe,
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

    async def _wait(self, kind, pid, survive=False):
        """Read until the ack (kind, pid) arrives.

        True when it came; False when reading is stalled behind messages the
        app has not read (the ack is handled by a later check_msg()).
        Raises MQTTError after timeout_ms without it, OSError on link loss;
        with survive (a QoS 1 publish) and reconnect on, a lost link is
        renewed instead (the reconnect resends the publish) and the wait
        goes on.
        """
        if kind != _PUBACK and kind != _CONNACK:
            self._wait_kind = kind
            self._wait_pid = pid
            self._wait_done = False
        start = ticks_ms()
        budget = _READS_PER_CALL
        while not self._waited(kind, pid):
            try:
                if self._sock is None:
                    raise OSError(ENOTCONN, "not connected")
                if self._async:
                    progressed = self._step_now()
                    if progressed is not True and progressed is not False:
                        progressed = await self._step_async(progressed)
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
        if kind == _PUBACK:
            return not self._pending(pid)
        if kind == _CONNACK:       # its own record: a control wait cannot take it
            return self._connack != -1
        return self._wait_done
