"""Link loss and reconnecting: the one place that decides what a lost link
means, and the supervisor task that renews it.

_link_lost(exc) is that decision point: every layer that sees the
transport fail (OSError) or the server break the protocol (MQTTError)
calls it.  With reconnect off it raises exc to the app; with reconnect on
it starts the supervisor (one task, whatever number of tasks saw the loss)
and returns, and the app's calls wait for the session (_until_connected).
A refusal (MQTTRefused) is never a lost link: a new link would be refused
again (_retrying).

The supervisor backs off exponentially with jitter, from reconnect_min_ms
to reconnect_max_ms; a session that dies young keeps doubling it
(_young_backoff) so a broker that takes our CONNECT and drops us is not
hammered by a fleet.
"""
from mpcompat import asyncio, const, ticks_ms, ticks_diff, asleep_ms as _sleep_ms, jitter
from mqtt_codec import MQTTError, MQTTRefused
from mqtt_session import MQTTSession
from mqtt_transport import ECONNABORTED

# A session that ends sooner than this after its CONNACK did not really work:
# the next reconnect backs off further (_young_backoff).
_YOUNG_MS = const(2000)


class MQTTSupervisor(MQTTSession):
    """Lost links: raise or reconnect; the reconnect loop and its task."""

    def __init__(self, cfg, recv_buf):
        MQTTSession.__init__(self, cfg, recv_buf)
        self._reconnecting = False   # a reconnect (the supervisor's or the app's) is running
        self._app_closed = True      # until connect(), after disconnect(): stay down
        self._sup = None             # the reconnect supervisor's task
        self._backoff = 0            # ms the last reconnect had backed off to
        self._up_at = 0              # ticks_ms() when the session last opened
        self._opening = 0            # sessions being opened (connect(), the supervisor): none
                                     # may start a supervisor meanwhile
        self._refused = None         # the CONNACK refusal that stopped reconnecting (see _open_session)
        self.reconnects = 0
        self.disconnects = 0
        self.on_disconnect = None    # on_disconnect(exc) when the link is lost

    def _link_lost(self, exc):
        """The link failed (exc: OSError, or MQTTError for a server that broke
        the protocol): close it, then reconnect or raise.  The one place
        that decides: with reconnect on, start the supervisor and return;
        with it off (or after disconnect()), raise exc to the app."""
        if self._cfg["ssl"] and self._sock_cls is None:
            exc = _worded(exc, self._cfg)   # the native socket's TLS error: in words
        if self._app_closed and self._sock is None:
            raise exc               # disconnect() closed it: not a loss
        if self._sock is None and (self._reconnecting or not self._cfg["reconnect"]):
            if not self._cfg["reconnect"]:
                raise exc
            return                  # another task saw it first
        self._drop_link(exc)
        if self.on_disconnect:
            self._call_hook(self.on_disconnect, exc)
        if not self._cfg["reconnect"]:
            raise exc
        self._start_supervisor()

    def _abandon(self):
        """Drop a link whose byte stream was cut off mid-packet (a task
        cancelled in the middle of a read or a write: _interruptible).  Like
        a lost link, but the task is being cancelled: nothing to raise to,
        no supervisor started from it.  reconnect: True renews the link
        (resending QoS 1) at the next call; without, the next call says
        "not connected"."""
        if self._sock is not None:
            self._drop_link(OSError(ECONNABORTED, "cancelled in the middle of a packet"))

    def _drop_link(self, exc):
        self._close_transport()
        self._reset_reader()
        self.disconnects += 1
        self.last_error = exc

    async def _retrying(self, op, *args):
        """Run op; on link loss reconnect (if configured) and run it again."""
        while True:
            await self._until_connected()
            try:
                return await op(*args)
            except MQTTRefused:
                raise                   # not a broken link: a new one would be refused too
            except (OSError, MQTTError) as e:
                self._link_lost(e)      # raises unless reconnecting

    async def _until_connected(self):
        while not self._up:
            self._check_refused()
            if self._app_closed or not (self._cfg["reconnect"] or self._reconnecting):
                raise MQTTError("not connected")
            self._start_supervisor()
            await _sleep_ms(20)

    def _check_refused(self):
        """MQTTRefused while the last CONNECT was refused (see _open_session)."""
        e = self._refused
        if e is not None and not self._reconnecting:
            raise MQTTRefused("not connected: " + str(e), e.code)

    def _start_supervisor(self):
        # The flag is raised here, not when the task first runs, so that two
        # tasks noticing the loss in the same tick start one supervisor.
        if not self._reconnecting and not self._app_closed and not self._opening \
                and self._refused is None:
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
                    if self._refused is not None or (attempts and tries >= attempts):
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

    async def _open_session(self, resume):
        """Transport, CONNECT/CONNACK, then (resume) the subscriptions back,
        then unacked QoS 1 resent; only then is the session up: the app's
        publishes and subscribes wait for that (_until_connected), so none
        overtakes a resend or takes the CONNACK's place."""
        self._close_transport()
        self._refused = None
        self._opening += 1
        try:
            await self._open_and_restore(resume)
        except MQTTRefused as e:
            # The server said no to our CONNECT.  Asking again at
            # reconnect_min_ms would not change its mind and only hammers
            # it: no supervisor runs until the app calls connect() or
            # reconnect() (app_runner does, with its own backoff).  Except
            # "server unavailable" (3): a server coming up says that.
            if e.code != 3:
                self._refused = e
            raise
        finally:
            self._opening -= 1


def _worded(exc, cfg):
    """A TLS error of the native socket (mbedTLS's bare number, CPython's
    SSLError) as mqtt_tls words it; any other error as it is."""
    import mqtt_tls
    if not mqtt_tls.is_tls_error(exc) or str(exc).startswith("TLS:"):
        return exc
    opts = cfg["ssl"] if isinstance(cfg["ssl"], dict) else {}
    return mqtt_tls.explain(exc, opts, opts.get("server_hostname", cfg["server"]), False)
