"""The SIM800L's AT dialogue (line parser, URCs, commands, deadlines): used by sim800l."""
from typing import Final

R_OK: Final[int]
R_ERROR: Final[int]
R_SHUT_OK: Final[int]
R_CLOSE_OK: Final[int]
R_CONNECT_OK: Final[int]
R_CONNECT_FAIL: Final[int]
R_ALREADY: Final[int]
R_SEND_OK: Final[int]
R_SEND_FAIL: Final[int]
R_ACCEPT: Final[int]
R_INFO: Final[int]
R_PROMPT: Final[int]
R_FINAL: Final[int]

MIN_YEAR: Final[int]
"""A modem clock before this year was never set by the network: not used."""

TIMEOUTS: Final[dict[str, int]]
"""Default deadlines (ms) by kind: at, sync, sim, reg, cipshut, ciicr, cipstart, send, rx."""
