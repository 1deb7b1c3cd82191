"""The packet reader: bytes from the transport into whole MQTT packets, and
PUBLISH bodies into the caller's buffer (or the backlog, or nowhere).

MQTTReader owns the receive side of the client: the caller's buffer and
the meta array, the backlog of messages that came while the app held one,
the drain of messages too big to keep, and the reader's state machine.
Control packets (CONNACK, PUBACK, SUBACK, UNSUBACK, PINGRESP) are read into
a 4-byte buffer and handed to the session (_control_packet, mqtt_session).

This is the hot path.  Its rules, measured on MicroPython:
- nothing is allocated per packet: reads go by readinto() into
  preallocated views (self._hviews, self._small_v), bytes are copied by
  index, and a slice is made only for a packet split across reads;
- the common packet (a QoS 0/1 PUBLISH with a one-byte length that fits and
  has fully arrived) is read in three readinto() calls by _read_fast,
  ~10 us per message on the unix port against ~27 us through the general
  reader (_want/_advance);
- the constants below are const(): MicroPython folds them into the code,
  where _PUBLISH would be a module attribute lookup on every packet.
"""
import mqtt_codec as codec
from mpcompat import const, ticks_ms
from mqtt_codec import MQTTError
from mqtt_transport import MQTTTransport, ECONNRESET, ENOTCONN, awaitable, count, discard

# Packet types and flag bits of the first byte (the same values as in
# mqtt_codec, repeated here as const() so they are folded, see above).
_TYPE_BITS = const(0xF0)
_QOS_BITS = const(0x06)         # non-zero: QoS 1 (or 2/3, refused earlier): a packet id follows the topic
_PUBLISH = const(0x30)
_PINGRESP = const(0xD0)
_CONNACK = const(0x20)
_PUBACK = const(0x40)
# The type bits and the QoS 2 bit (0x04).  `first & _PUBLISH_QOS2 == _PUBLISH`
# holds for a QoS 0 or QoS 1 PUBLISH only: the fast reader takes those, and
# a QoS 2 (or malformed QoS 3) PUBLISH goes to the general reader, whose
# codec.check_fixed_header refuses it with its reason.  This client never
# subscribes with QoS 2, so a QoS 2 PUBLISH is a broker's error, and it must
# not be delivered as if it were QoS 0/1 (its PUBREC would never be sent).
_PUBLISH_QOS2 = const(0xF4)

# Where the body of the packet being read goes.
_DEST_UNCHOSEN = const(-1)  # the fixed header is read, the destination not chosen yet
_TO_SMALL = const(0)        # ack/response bodies (<= 3 bytes) into self._small
_TO_RBUF = const(1)         # PUBLISH straight into the caller's buffer
_TO_BACKLOG = const(2)      # PUBLISH while the caller's buffer holds an unread one
_DRAIN = const(3)           # PUBLISH bigger than the buffer: read and drop
_BL_HDR = const(5)          # backlog entry: first byte, remaining length in 4 bytes

_PID0 = "malformed PUBLISH: QoS 1 with packet id 0"


def _check_topic_len(first, tl, rem):
    if tl == 0 or 2 + tl + (2 if first & _QOS_BITS else 0) > rem:
        raise MQTTError("malformed PUBLISH: topic length %d in %d bytes" % (tl, rem))


class MQTTReader(MQTTTransport):
    """Reads packets; delivers PUBLISHes; hands control packets up."""

    def __init__(self, cfg, recv_buf):
        MQTTTransport.__init__(self, cfg)
        self._rbuf = recv_buf
        import array
        self._meta = memoryview(array.array("H" if len(recv_buf) < 65536 else "I", (0, 0)))
        self._ackbuf = bytearray(4)      # the PUBACK of a received QoS 1 message
        self._hdr = bytearray(5)         # fixed header
        self._hviews = tuple(memoryview(self._hdr)[i:] for i in range(5))
        self._small = bytearray(4)       # a control packet's body
        self._small_v = memoryview(self._small)
        self._scratch = memoryview(bytearray(32))     # drain target while the backlog holds messages
        self._backlog = memoryview(bytearray(cfg["backlog"]))
        self._bl_head = 0            # backlog entries: [_bl_head, _bl_used)
        self._bl_used = 0
        self._unread = False         # the caller's buffer holds a message not marked read
        self._connack = -1           # the CONNACK's two bytes; -1: none yet in this session
        self.dropped = 0             # oversize messages read and dropped
        self.on_drop = None          # on_drop(size) when a message is dropped
        self.last_error = None
        self.msg_flags = 0           # first byte of the delivered PUBLISH (retain bit 0, QoS bits 1-2, DUP bit 3)
        self._reset_reader()

    # The reader is a small state machine so that a packet may arrive in
    # pieces across polls: first the fixed header (2-5 bytes), then the body
    # straight into its destination buffer.
    def _reset_reader(self):
        self._hn = 0           # fixed header bytes read
        self._rem = -1         # remaining length, -1 until known
        self._got = 0          # body bytes read
        self._dest = _DEST_UNCHOSEN
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
        if dest == _DEST_UNCHOSEN:
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
        if first & _TYPE_BITS != _PUBLISH:
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
            if self._connack < 0 and self._hdr[0] != _CONNACK:
                raise MQTTError("packet 0x%02x before the CONNACK" % self._hdr[0])
            self._rem = rem
            self._got = 0
            self._dest = _DEST_UNCHOSEN
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
                    _check_topic_len(self._hdr[0], (self._small[0] << 8) | self._small[1],
                                          self._rem)
                return False
        self._last_rx = ticks_ms()
        self._complete()
        self._hn = 0
        self._rem = -1
        self._dest = _DEST_UNCHOSEN
        return True

    def _complete(self):
        """A whole packet is in: a PUBLISH is delivered, kept, or dropped
        (and a QoS 1 one's PUBACK readied); the rest go to the session."""
        first = self._hdr[0]
        kind = first & _TYPE_BITS
        s = self._small
        if kind == _PUBLISH:
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
                if first & _QOS_BITS and not pid:
                    raise MQTTError(_PID0)
                self.dropped += 1
            if first & _QOS_BITS:
                codec.encode_ack(self._ackbuf, _PUBACK, pid)
                self._ack_pending = True
            if dest == _DRAIN and self.on_drop:
                self._call_hook(self.on_drop, self._rem)
            return
        self._control_packet(kind, self._small)

    def _call_hook(self, hook, arg):
        """An app's callback: its bug must not break the session (a hook that
        raised mid-packet left the reader half way and the message unacked);
        what it raised is kept in last_error."""
        try:
            hook(arg)
        except Exception as e:
            self.last_error = e

    def _parse_publish(self, body, first, rem):
        """Validate a PUBLISH body (with its topic length); returns its packet id."""
        tl = (body[0] << 8) | body[1]
        _check_topic_len(first, tl, rem)
        if not first & _QOS_BITS:
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
        if first & _QOS_BITS:
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
                raise OSError(ECONNRESET, "connection closed by the server")
            count(n, 1)
            self._hn = 1
            return True
        first = hdr[0]
        rem = hdr[1]
        rbuf = self._rbuf
        if (first & _PUBLISH_QOS2) != _PUBLISH or rem & 0x80 or rem < 3 or self._unread \
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
        if tl == 0 or tl + (4 if first & _QOS_BITS else 2) > rem:
            _check_topic_len(first, tl, rem)   # raises, naming the fault
        n = sock.readinto(rbuf, body)
        if n != body:
            return self._continue_publish(rem, 2 + (n or 0))
        self._last_rx = ticks_ms()
        if not first & _QOS_BITS:            # QoS 0: topic and payload are in place
            meta = self._meta
            meta[0] = tl
            meta[1] = body
            self.msg_flags = first
            self._unread = True
            return True
        pid = self._deliver(first, rem, tl)
        codec.encode_ack(self._ackbuf, _PUBACK, pid)
        self._write_sync(self._ackbuf, 4)
        return True

    def _continue_publish(self, rem, got):
        """A PUBLISH only partly there: the general reader goes on with it."""
        count(got, rem)
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
            raise OSError(ECONNRESET, "connection closed by the server")
        count(n, self._need)
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

    def _step_now(self):
        """One read on an async transport, as far as it goes without an
        await: True if bytes came (and their PUBACK, if one was called for,
        went out), False if none.  Else what _step_async must finish: the
        awaitable the transport answered, or None for a PUBACK the
        transport did not take at once.  (A transport that answers plain
        values thus costs no coroutine per step.)"""
        if self._io_busy or not self._want():
            return False
        if self._sock is None:
            raise OSError(ENOTCONN, "not connected")
        if self._ack_pending and not self._ack_now():
            return None
        r = self._sock.readinto(self._view, self._need)
        if r is None:
            return False
        if type(r) is not int:
            return awaitable(r)
        if not self._took(r):
            return False
        if self._ack_pending and not self._ack_now():
            return None
        return True

    def _ack_now(self):
        """The pending PUBACK, if the transport takes it at once."""
        if self._plain_writes and self._write_now(self._ackbuf, 4):
            self._ack_pending = False
            return True
        return False

    async def _step_async(self, pending=None):
        """One step that awaits: `pending`, a read the transport answered
        with an awaitable (from _step_now), or a new read; then the PUBACK
        it may call for.  True if bytes came."""
        if self._io_busy:
            if pending is not None:
                discard(pending)        # unstarted: it reads only when awaited
            return False
        self._io_busy = True
        try:
            if pending is None and not self._ack_pending:
                if not self._want():
                    return False
                if self._sock is None:
                    raise OSError(ENOTCONN, "not connected")
                pending = self._sock.readinto(self._view, self._need)
                if pending is None:
                    return False
            if pending is not None:
                if type(pending) is not int:
                    pending = await self._interruptible(awaitable(pending))
                if not self._took(pending):
                    return False
            if self._ack_pending:
                # (cleared once written: a task cancelled before any byte
                # went leaves it pending, for the next step to send)
                await self._write_async(self._ackbuf, 4)
                self._ack_pending = False
            return True
        finally:
            self._io_busy = False
