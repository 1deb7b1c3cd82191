"""Wiring of the RPI_PICO_MQTT board, frozen into its image.

Raspberry Pi Pico with a SIM800L modem on UART0.  The app and the modem
driver read the wiring from here, so the same app runs on every board:
`import board` and use `board.modem_uart()`.  To rewire one device without
rebuilding, copy this file to the board's filesystem as /board.py (a file
in / shadows a frozen module of the same name).
"""
NAME = "RPI_PICO_MQTT"
WIFI = False  # no radio on the Pico: MQTT goes over the modem

MODEM_UART = 0  # machine.UART id
MODEM_TX = 0  # GP0 -> modem RXD
MODEM_RX = 1  # GP1 <- modem TXD
MODEM_BAUD = 115200  # fixed on the modem with AT+IPR=115200 and AT&W
MODEM_RXBUF = 1024  # UART receive buffer, bytes
MODEM_PWRKEY = 2  # GP2 -> modem PWRKEY (pulse low ~1 s to toggle power); None if not wired
MODEM_RESET = 3  # GP3 -> modem RST (active low); None if not wired

LED = 25  # on-board LED


def modem_uart():
    """The UART the modem is wired to, configured for it."""
    from machine import UART, Pin

    return UART(MODEM_UART, baudrate=MODEM_BAUD, tx=Pin(MODEM_TX), rx=Pin(MODEM_RX),
                rxbuf=MODEM_RXBUF)


def modem_reset(ms=150):
    """Pull the modem's RST low for `ms` (>= 105 ms per SIM800 manual); no-op if not wired."""
    if MODEM_RESET is None:
        return
    from machine import Pin
    import time

    rst = Pin(MODEM_RESET, Pin.OUT, value=0)
    time.sleep_ms(ms)
    rst.value(1)
