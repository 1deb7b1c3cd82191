"""UART stand-ins for hosts (CPython, the unix port), so the SIM800L driver runs off a board."""
from socket import socket
from typing import Union

_Buffer = Union[bytes, bytearray, memoryview]
_WBuffer = Union[bytearray, memoryview]

class _CPythonStream:
    """A CPython socket or tty fd with MicroPython's stream semantics."""

    def __init__(self, sock: socket | None = None, fd: int | None = None) -> None: ...
    def readinto(self, buf: _WBuffer, n: int | None = None) -> int | None: ...
    def write(self, buf: _Buffer, a: int | None = None, b: int | None = None) -> int: ...
    def close(self) -> None: ...

def tcp_uart(host: str, port: int) -> _CPythonStream:
    """A TCP connection to a modem simulator (or a serial-to-TCP bridge), UART-like."""

def serial_uart(path: str, baud: int = 115200) -> _CPythonStream:
    """A serial port or pty on CPython, raw 8N1."""
