"""Wiring of the RPI_PICO_MQTT board, frozen into its image.

Raspberry Pi Pico with a SIM800L modem on UART0.  The app and the modem
driver read the wiring from here, so the same app runs on every board:

    SIM800L(board.modem_uart(), apn=..., **board.modem_pins())

To rewire one device without rebuilding, copy this file to the board's
filesystem as /board.py (a file in / shadows the frozen module).
"""
NAME = "RPI_PICO_MQTT"
WIFI = False  # no radio on the Pico: MQTT goes over the modem

MODEM_UART = 0  # machine.UART id
MODEM_TX = 0  # GP0 -> modem RXD
MODEM_RX = 1  # GP1 <- modem TXD
MODEM_BAUD = 115200  # fixed on the modem with AT+IPR=115200 and AT&W
MODEM_RXBUF = 2048  # UART receive buffer, bytes
MODEM_PWRKEY = 2  # GP2 -> modem PWRKEY (pulse low ~1 s to toggle power); None if not wired
MODEM_RESET = 3  # GP3 -> modem RST (active low); None if not wired

LED = 25  # on-board LED


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
