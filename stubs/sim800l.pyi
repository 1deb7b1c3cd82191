"""SIM800L 2G modem as a socket (AT commands over a UART); see docs/sim800l.md."""
from typing import Any, Awaitable, Final, Literal, Protocol, Union, overload

_Buffer = Union[bytes, bytearray, memoryview]
_WBuffer = Union[bytearray, memoryview]
_Addr = tuple[str, int]
_AddrInfo = list[tuple[int, int, int, str, _Addr]]

class _UART(Protocol):
    """What the driver calls on its UART: machine.UART(..., timeout=0) has it."""

    def readinto(self, buf: bytearray, nbytes: int, /) -> int | None: ...
    def write(self, buf: bytearray, off: int, nbytes: int, /) -> int | None: ...

class _Pin(Protocol):
    """An output pin: machine.Pin(n, Pin.OUT, value=1)."""

    def value(self, x: int, /) -> Any: ...

TIMEOUTS: Final[dict[str, int]]
"""Default deadlines (ms) by kind: at, sync, sim, reg, cipshut, ciicr, cipstart, send, rx."""

class SIM800L:
    """The modem.  Counters for benchmarks: at_commands, uart_tx, uart_rx, urcs."""

    t: dict[str, int]
    ip: str | None
    rssi: int
    at_commands: int
    uart_tx: int
    uart_rx: int
    urcs: int
    warnings: int
    rings: int
    reboots: int
    junk: int
    network_time: int | None
    """The network's time as UTC seconds since 1970 (from AT+CCLK? at bring-up or a
    *PSUTTZ URC), taken at ticks_ms() network_time_ms; None until the network gave one."""
    network_time_ms: int
    clock_source: str | None
    """Where network_time came from: "+CCLK", "*PSUTTZ", or None."""
    clock_set: bool
    """True once machine.RTC was set from it (never where there is no machine.RTC)."""
    clock_note: str | None
    """Why the last reading gave no time (e.g. 'AT+CCLK?: ERROR'); None after a good one."""
    clock_errors: int
    """ERROR answers to AT+CLTS?, AT+CLTS=1 or AT+CCLK? (a clone without network time)."""
    def __init__(self, uart: _UART, apn: str = "", user: str = "", password: str = "",
                 pin: str | int | None = None, rxbuf: int = 512, max_send: int = 1460,
                 timeouts: dict[str, int] | None = None, poll_ms: int = 1, rx_poll_ms: int = 1000,
                 pwrkey: _Pin | None = None, reset_pin: _Pin | None = None) -> None: ...
    async def start(self, hard_reset: bool = False) -> None:
        """Bring the modem up (AT sync, SIM, network, GPRS); OSError with a reason."""
    def start_blocking(self, hard_reset: bool = False) -> None: ...
    async def read_clock(self) -> int | None:
        """AT+CCLK? now: UTC seconds since 1970 (and the board's clock set), or None."""
    def read_clock_blocking(self) -> int | None: ...
    @overload
    def socket_class(self, async_: Literal[True]) -> type[AsyncModemSocket]: ...
    @overload
    def socket_class(self, async_: Literal[False] = False) -> type[ModemSocket]: ...
    @overload
    def socket_class(self, async_: bool) -> type[ModemSocket] | type[AsyncModemSocket]: ...
    def stats(self) -> dict[str, int]: ...

class _Base:
    def __init__(self, modem: SIM800L) -> None: ...
    def setblocking(self, flag: bool) -> None:
        """Reads never block; an async write answers at once (int or None) once non-blocking."""
    def settimeout(self, t: float | None) -> None: ...

class ModemSocket(_Base):
    """Sync flavour: connect/write block for the AT round trip."""

    @staticmethod
    def getaddrinfo(host: str, port: int, *args: Any) -> _AddrInfo: ...
    def connect(self, addr: _Addr) -> None: ...
    def readinto(self, buf: _WBuffer, nbytes: int | None = None) -> int | None: ...
    def write(self, buf: _Buffer, nbytes: int | None = None) -> int:
        """All of buf[0:nbytes], sent and confirmed (an AT+CIPSEND per max_send bytes)."""
    def close(self) -> None: ...

class AsyncModemSocket(_Base):
    """Async flavour: readinto and a non-blocking write are plain methods that allocate nothing."""

    @staticmethod
    async def getaddrinfo(host: str, port: int, *args: Any) -> _AddrInfo: ...
    async def connect(self, addr: _Addr) -> None: ...
    def readinto(self, buf: _WBuffer, nbytes: int | None = None) -> int | None:
        """Bytes copied now, 0 at end of stream, None: nothing now (never an awaitable)."""
    def write(self, buf: _Buffer, nbytes: int | None = None) -> int | None | Awaitable[int]:
        """Non-blocking (setblocking(False)): all of buf[0:nbytes] taken now (an int), or
        None (a command is in flight: call again).  Blocking (the default): an
        awaitable that sends it all, confirmed, and evaluates to the count."""
    async def close(self) -> None: ...
