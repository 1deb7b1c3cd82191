"""The board's modem wiring, frozen into each image from boards/<BOARD>/board.py
(the same names on every board, so one app runs on all of them)."""
from typing import TypedDict

from machine import UART, Pin

NAME: str
WIFI: bool
MODEM_UART: int
MODEM_TX: int
MODEM_RX: int
MODEM_BAUD: int
MODEM_RXBUF: int
MODEM_PWRKEY: int | None
MODEM_RESET: int | None
LED: int

class _ModemPins(TypedDict):
    pwrkey: Pin | None
    reset_pin: Pin | None

def modem_uart() -> UART:
    """The UART the modem is wired to, non-blocking (timeout=0)."""

def modem_pins() -> _ModemPins:
    """Keyword arguments of sim800l.SIM800L: pwrkey and reset_pin."""
