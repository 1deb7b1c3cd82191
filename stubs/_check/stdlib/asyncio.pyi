# MicroPython's additions to CPython's asyncio (appended to typeshed's for the check).
from typing import Awaitable as _Awaitable, TypeVar as _TypeVar

_MpT = _TypeVar("_MpT")

async def sleep_ms(t: int) -> None: ...
async def wait_for_ms(aw: _Awaitable[_MpT], timeout: int) -> _MpT: ...
