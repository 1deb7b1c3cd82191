"""Boot the OTA'd app; roll back a new one that crashes or never confirms health.

    import app_runner
    app_runner.run()        # the whole main.py of a board: reads ota.json

ota.json (written by `host/ota_push.py provision`): {"id", "group", "key"
(hex; never leaves the device), "mqtt": AsyncMQTTClient config, "buf"
(receive buffer, 128), "health_ms" (60000), "trial_boots" (2), "max_size",
"retry_ms", "give_up", "prefix", "dir"}.

The app is app-<version>.py and defines
    async def main(dev):
        dev.client        the connected AsyncMQTTClient (it reconnects by
                          itself); publish and subscribe freely, but never
                          call check_msg(): the runner reads, and hands the
                          app's messages to dev.on_message(topic, msg)
                          (memoryviews, valid during the call)
        dev.healthy()     "this version works"; a new version must call it
                          within health_ms or it is rolled back
        dev.id, dev.version

Each boot: a new version on trial that raised, did not confirm in time, or
was cut off by a reset trial_boots times is replaced by the previous one
(status "rolledback", "rb" = the version thrown out, "why").  The runner
connects and starts the OTA agent before it imports the app, so even a
broken app can be updated.  After an install it resets the board.

run() is the last line of defence and never returns: whatever fails below
it (a modem bring-up that raises anything, a broker that refuses the OTA
subscription, an app that raises SystemExit or any BaseException, a
MemoryError) ends that boot; it boots again in a fresh event loop after a
backoff (backoff_ms doubling to backoff_max_ms, plus up to half again of
jitter), and after reset_after failed boots in a row it resets the board.
An app whose main() returns is not a failure: the runner keeps serving
its on_message and the OTA agent.

Ctrl-C (KeyboardInterrupt) is the one way out, on purpose: it stops the
runner and is raised on, so a developer at the USB
console gets the REPL (mpremote and IDEs interrupt with Ctrl-C to reach the
files).  A field device has nobody at its console; one whose USB port is
wired to a host that might send 0x03 calls micropython.kbd_intr(-1) in
main.py before app_runner.run().

reset(): machine.reset(); where there is none (the unix port, CPython) the
stand-in is sys.exit(0) after printing "app_runner: reset": the process
ends with status 0 and whoever started it starts it again, as power-on
would.
"""
import gc
import sys
import json

from mpcompat import asyncio, ticks_ms, ticks_diff, sleep_ms, asleep_ms as _sleep_ms, jitter

import ota
from async_mqtt_client import AsyncMQTTClient

CONF = "ota.json"


def load_conf(d=""):
    with open(ota.path(d, CONF)) as f:
        conf = json.loads(f.read())
    conf.setdefault("dir", d)
    return conf


def boot_state(conf):
    """Pick the app this boot runs (rolling back a failed trial); returns the state."""
    d = conf.get("dir", "")
    st = ota.load_state(d) or {"cur": 0, "prev": 0, "floor": 0, "trial": 0}
    cur, prev = st.get("cur", 0), st.get("prev", 0)

    def has(v):
        return v and ota.exists(ota.app_file(d, v))

    if st.get("trial"):
        tries = st.get("tries", 0)
        if tries >= conf.get("trial_boots", 2) or not has(cur):
            if has(prev):
                why = st.get("why") or ("app-%d.py is missing" % cur if not has(cur)
                                        else "no health confirmation in %d boots" % tries)
                st = {"cur": prev, "prev": 0, "floor": st.get("floor", cur), "trial": 0,
                      "rb": cur, "why": why, "p": st.get("p", 0)}
            else:
                st["trial"] = 0
                st["why"] = "kept on trial failure: no previous app"
        else:
            st["tries"] = tries + 1
        _save(d, st)
    elif cur and not has(cur) and has(prev):
        st = {"cur": prev, "prev": 0, "floor": st.get("floor", cur), "trial": 0,
              "why": "app-%d.py is missing" % cur}
        _save(d, st)
    ota.clean(d, st)
    return st


def _save(d, st):
    """The boot's state; a full flash must not keep the device from
    connecting (it could never be reached to be fixed): the boot goes on
    with the state in RAM, and says so."""
    try:
        ota.save_state(d, st)
    except OSError as e:
        st["why"] = "state not saved: %s" % e
        print("app_runner:", st["why"])


def load_app(d, version):
    """Import app-<version>.py (a name no `import` statement can spell),
    afresh: a boot after a crash must not get the crashed module back."""
    name = "app-%d" % version
    sys.modules.pop(name, None)
    sys.path.insert(0, d)
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def _why(e):
    """'Type: message', short and ASCII (it goes into the state file and a status)."""
    try:
        return ota.text("%s: %s" % (type(e).__name__, e))
    except BaseException:           # noqa: B902 -- an exception whose str() raises
        return type(e).__name__


def _ours(e, stopping=False):
    """Exceptions that are not the app's failure: Ctrl-C (the developer's,
    see run()) and, once the runner ends the boot (stopping), the
    cancellation it sent.  A CancelledError the app raises on its own is a
    crash like any other."""
    return isinstance(e, KeyboardInterrupt) or (stopping and isinstance(e, asyncio.CancelledError))


class Device:
    """What the app gets: the client, its identity, and healthy()."""

    def __init__(self, conf, agent, client):
        self.id = conf["id"]
        self.client = client
        self.on_message = None
        self._agent = agent
        self._conf = conf
        self.version = agent.st.get("cur", 0)
        self.failure = None
        self.stopping = False       # the runner is ending this boot (its cancel is not a crash)
        self._said = False

    def healthy(self):
        st = self._agent.st
        if st.get("trial") and st.get("cur") == self.version:
            st["trial"] = 0
            st["tries"] = 0
            ota.save_state(self._conf.get("dir", ""), st)
        if not self._said:
            self._said = True
            self._agent.status("run", **_extra(st))

    async def _run_app(self):
        if not self.version:
            return                      # no app yet: the agent alone waits for one
        try:
            app = load_app(self._conf.get("dir", ""), self.version)
            await app.main(self)
        except BaseException as e:      # noqa: B902 -- SystemExit or any BaseException counts
            if _ours(e, self.stopping):
                raise
            self.failure = _why(e)
        # main() returned: the app may live on in on_message; the runner goes on


def _extra(st):
    return {k: st[k] for k in ("p", "rb", "why") if st.get(k)}


async def _connect(client, transport):
    """Bring the link up, retrying with backoff until it is: a transport's
    bring-up may raise anything (a modem sending junk), not only OSError."""
    delay = 500
    while True:
        try:
            sock_cls, async_sock = (await transport()) if transport else (None, False)
            await client.connect(sock_cls=sock_cls, async_sock=async_sock)
            return
        except MemoryError:
            raise                       # run() decides (a reset may be what it takes)
        except Exception as e:          # noqa: B902
            print("app_runner: connect failed:", _why(e))
            await _sleep_ms(delay + jitter(delay // 2))
            delay = min(delay * 2, 30000)


async def boot(conf=None, transport=None):
    """One boot: returns "reboot" after an install (reset into the new app)
    or "crashed" after the app failed; raises when anything else failed.

    transport: None for the native socket, or an async function returning
    (sock_cls, async_sock) for client.connect(), e.g. the SIM800L's.
    """
    conf = conf or load_conf()
    st = boot_state(conf)
    buf = memoryview(bytearray(conf.get("buf", 128)))
    mq = dict(conf.get("mqtt") or {})
    mq.setdefault("client_id", conf["id"])
    mq["reconnect"] = True
    client = AsyncMQTTClient(mq, buf)
    task = None
    try:
        await _connect(client, transport)
        agent = ota.Agent(client, conf, st, buf)
        await agent.start()             # a refused subscription raises: no app runs unreachable
        agent.status("rolledback" if st.get("rb") else "trial" if st.get("trial") else "up",
                     floor=st.get("floor", 0), **_extra(st))
        await agent.report()
        dev = Device(conf, agent, client)
        task = asyncio.create_task(dev._run_app())
        return await _serve(conf, st, client, agent, dev)
    finally:
        if task is not None:
            dev.stopping = True
            task.cancel()
        try:
            await client.disconnect()
        except Exception:               # noqa: B902 -- the link may be half dead already
            pass


async def _serve(conf, st, client, agent, dev):
    """The MQTT loop of one boot, until an install or a failure of the app."""
    started = ticks_ms()
    health_ms = conf.get("health_ms", 60000)
    idle_ms = conf.get("idle_ms", 10)
    while not agent.reboot:
        meta = await client.check_msg()
        if meta:
            tl = meta[0]
            if agent.wants(tl):
                try:
                    agent.handle(tl, meta[1])
                except Exception as e:  # noqa: B902 -- the device keeps running
                    agent.failed(e)
            elif dev.on_message:
                try:
                    dev.on_message(client.topic, client.msg)
                except BaseException as e:  # noqa: B902 -- the app's failure, whatever it raised
                    if _ours(e):
                        raise
                    dev.failure = _why(e)
            client.mark_read()
        else:
            agent.tick()
            if st.get("trial") and st is agent.st and ticks_diff(ticks_ms(), started) > health_ms:
                dev.failure = dev.failure or "no health confirmation within %d ms" % health_ms
            if dev.failure:
                if agent.st.get("trial") and agent.st is st:
                    st["tries"] = conf.get("trial_boots", 2)
                    st["why"] = dev.failure
                    ota.save_state(conf.get("dir", ""), st)
                agent.status("crashed", why=dev.failure)
                await agent.report()
                return "crashed"
            await _sleep_ms(idle_ms)
        if agent.out:
            await agent.report()
    return "reboot"


def reset():
    """machine.reset(); the stand-in where there is none: see the module docstring."""
    print("app_runner: reset")
    try:
        import machine
        machine.reset()
    except (ImportError, AttributeError):
        pass
    sys.exit(0)                         # unix port, CPython: whoever started us starts us again


def _setting(conf, key, default):
    """A positive int from ota.json, else the default: run() must not fail on a bad value."""
    try:
        v = (conf or load_conf()).get(key, default)
    except Exception:                   # noqa: B902 -- no ota.json, junk in it
        return default
    return v if type(v) is int and v > 0 else default


def _boot_once(conf, transport):
    """One boot in a fresh event loop: "reboot", "crashed", or why it raised."""
    if sys.implementation.name == "micropython":
        asyncio.new_event_loop()        # drop every task a failed boot left behind
    try:
        return asyncio.run(boot(conf, transport))
    except BaseException as e:          # noqa: B902 -- the last line of defence: SystemExit too
        if isinstance(e, KeyboardInterrupt):
            raise
        return _why(e)


def run(conf=None, transport=None):
    """The whole main.py of a board.  Never returns, except on Ctrl-C (see
    the module docstring); resets the board after an install or after
    reset_after failed boots in a row, and backs off between failures."""
    try:
        _run_forever(conf, transport)
    except KeyboardInterrupt:
        print("app_runner: Ctrl-C: stopped; the REPL is yours (machine.reset() starts the app again)")
        raise


def _run_forever(conf, transport):
    fails = 0
    while True:
        t0 = ticks_ms()
        why = _boot_once(conf, transport)
        if why == "reboot":
            reset()
        lo = _setting(conf, "backoff_ms", 1000)
        hi = _setting(conf, "backoff_max_ms", 60000)
        if ticks_diff(ticks_ms(), t0) > hi:
            fails = 0                   # it ran a good while: not a failure in a row
        fails += 1
        print("app_runner: boot %d in a row failed: %s" % (fails, why))
        if fails >= _setting(conf, "reset_after", 8):
            reset()
        delay = min(lo << min(fails - 1, 16), hi)
        gc.collect()
        sleep_ms(delay + jitter(delay // 2))
