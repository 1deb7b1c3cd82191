# The liveness check the hostile scenarios share (both interpreters).
from mpcompat import asyncio, ticks_ms, ticks_diff


class Heartbeat:
    """A task that wakes every period_ms.  stop() ends it and returns the
    longest gap between two wake-ups, the time since the last one included
    (a loop blocked right now counts too); `gap` is that figure, `beats`
    the wake-ups.  A loop that never lets it run has a gap all the same."""

    def __init__(self, period_ms=20):
        self.period = period_ms
        self.gap = 0
        self.beats = 0
        self.running = True
        self.last = ticks_ms()
        self.task = asyncio.create_task(self._run())

    @property
    def max_gap(self):
        return self.gap

    async def _run(self):
        self.last = ticks_ms()
        while self.running:
            await asyncio.sleep(self.period / 1000)
            self._beat()
            self.beats += 1

    def _beat(self):
        now = ticks_ms()
        gap = ticks_diff(now, self.last)
        self.last = now
        if gap > self.gap:
            self.gap = gap

    def stop(self):
        self._beat()
        self.running = False
        self.task.cancel()
        return self.gap
