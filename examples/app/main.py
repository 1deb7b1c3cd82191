"""Example app: connect over the modem or Wi-Fi, subscribe to commands,
publish telemetry.  The MQTT client, the SIM800L driver and the board's
wiring (board.py) are frozen into the firmware; this file and config.py
are all a device needs on its filesystem (`make deploy`)."""
import asyncio
import gc
import sys
import time

import board
import config
from async_mqtt_client import AsyncMQTTClient


async def transport():
    """(sock_cls, async_sock) for client.connect()."""
    if config.TRANSPORT == "wifi":
        try:
            import network
        except ImportError:  # unix port: the host's network
            return None, False
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if not wlan.isconnected():
            wlan.connect(config.WIFI_SSID, config.WIFI_PASSWORD)
            for _ in range(300):
                if wlan.isconnected():
                    break
                await asyncio.sleep_ms(100)
            else:
                raise OSError("Wi-Fi: no connection to %r" % config.WIFI_SSID)
        return None, False
    from sim800l import SIM800L

    modem = SIM800L(board.modem_uart(), apn=config.APN, user=config.APN_USER,
                    password=config.APN_PASSWORD, pin=config.SIM_PIN, **board.modem_pins())
    await modem.start()
    return modem.socket_class(async_=True), True


async def main():
    client = AsyncMQTTClient(config.MQTT, memoryview(bytearray(128)))
    sock_cls, async_sock = await transport()
    await client.connect(sock_cls=sock_cls, async_sock=async_sock)
    print("connected to", config.MQTT["server"], "from", board.NAME)
    await client.subscribe(config.TOPIC + b"/commands", qos=1)
    telemetry = config.TOPIC + b"/telemetry"
    last = time.ticks_add(time.ticks_ms(), -config.TELEMETRY_EVERY_MS)
    while True:
        if await client.check_msg():
            print("command:", bytes(client.msg))
            client.mark_read()
        if time.ticks_diff(time.ticks_ms(), last) >= config.TELEMETRY_EVERY_MS:
            last = time.ticks_ms()
            gc.collect()
            msg = '{"board":"%s","uptime_ms":%d,"mem_free":%d}' % (board.NAME, time.ticks_ms(), gc.mem_free())
            await client.publish(telemetry, msg.encode())
        await asyncio.sleep_ms(20)


while True:
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        break
    except Exception as e:  # a dead link or modem: start over after a pause
        sys.print_exception(e)
        time.sleep(10)
