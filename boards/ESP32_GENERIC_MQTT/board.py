"""Wiring of the ESP32_GENERIC_MQTT board, frozen into its image.

A generic ESP32 module (WROOM, 4 MiB flash) with a SIM800L modem on UART2.
The app and the modem driver read the wiring from here, so the same app
runs on every board:

    SIM800L(board.modem_uart(), apn=..., **board.modem_pins())

To rewire one device without rebuilding, copy this file to the board's
filesystem as /board.py (a file in / shadows the frozen module).
"""
NAME = "ESP32_GENERIC_MQTT"
WIFI = True  # the app may use Wi-Fi instead of the modem

MODEM_UART = 2  # machine.UART id (UART0 is the REPL)
MODEM_TX = 17  # GPIO17 -> modem RXD
MODEM_RX = 16  # GPIO16 <- modem TXD
MODEM_BAUD = 115200  # fixed on the modem with AT+IPR=115200 and AT&W
MODEM_RXBUF = 2048  # UART receive buffer, bytes
MODEM_PWRKEY = 4  # GPIO4 -> modem PWRKEY (pulse low ~1 s to toggle power); None if not wired
MODEM_RESET = 5  # GPIO5 -> modem RST (active low); None if not wired

LED = 2  # on-board LED of most DevKit boards


def modem_uart():
    """The UART the modem is wired to: non-blocking (timeout=0), as the driver wants."""
    from machine import UART, Pin

    return UART(MODEM_UART, baudrate=MODEM_BAUD, tx=Pin(MODEM_TX), rx=Pin(MODEM_RX),
                timeout=0, rxbuf=MODEM_RXBUF)


def modem_pins():
    """The modem's control pins, as keyword arguments of sim800l.SIM800L:
    pwrkey and reset_pin (machine.Pin outputs idling high, or None if not wired)."""
    from machine import Pin

    def out(n):
        return None if n is None else Pin(n, Pin.OUT, value=1)

    return {"pwrkey": out(MODEM_PWRKEY), "reset_pin": out(MODEM_RESET)}
