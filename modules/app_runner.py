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
"""
import sys
import json

from mpcompat import asyncio, ticks_ms, ticks_diff

import ota
from async_mqtt_client import AsyncMQTTClient, MQTTError

CONF = "ota.json"
_sleep_ms = getattr(asyncio, "sleep_ms", None) or (lambda ms: asyncio.sleep(ms / 1000))


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
        ota.save_state(d, st)
    elif cur and not has(cur) and has(prev):
        st = {"cur": prev, "prev": 0, "floor": st.get("floor", cur), "trial": 0,
              "why": "app-%d.py is missing" % cur}
        ota.save_state(d, st)
    ota.clean(d, st)
    return st


def load_app(d, version):
    """Import app-<version>.py (a name no `import` statement can spell)."""
    sys.path.insert(0, d)
    try:
        return __import__("app-%d" % version)
    finally:
        sys.path.pop(0)


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
        except Exception as e:          # noqa: B902 -- any failure of the app counts
            self.failure = "%s: %s" % (type(e).__name__, e)


def _extra(st):
    return {k: st[k] for k in ("p", "rb", "why") if st.get(k)}


async def _connect(client, transport):
    delay = 500
    while True:
        try:
            sock_cls, async_sock = (await transport()) if transport else (None, False)
            await client.connect(sock_cls=sock_cls, async_sock=async_sock)
            return
        except (OSError, MQTTError) as e:
            print("app_runner: connect failed:", e)
            await _sleep_ms(delay)
            delay = min(delay * 2, 30000)


async def boot(conf=None, transport=None):
    """One boot: returns when the board should reset (after an install or a failure).

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
    await _connect(client, transport)
    agent = ota.Agent(client, conf, st, buf)
    await agent.start()
    agent.status("rolledback" if st.get("rb") else "trial" if st.get("trial") else "up",
                 floor=st.get("floor", 0), **_extra(st))
    await agent.report()
    dev = Device(conf, agent, client)
    task = asyncio.create_task(dev._run_app())
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
                except Exception as e:  # noqa: B902
                    dev.failure = "%s: %s" % (type(e).__name__, e)
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
                break
            await _sleep_ms(idle_ms)
        if agent.out:
            await agent.report()
    task.cancel()
    await client.disconnect()
    return "reboot"


def reset():
    try:
        import machine
        machine.reset()
    except (ImportError, AttributeError):
        sys.exit(0)                     # unix port: whoever started us starts us again


def run(conf=None, transport=None):
    asyncio.run(boot(conf, transport))
    reset()
