"""The burst rendezvous: users of one process meet and are released together."""

from __future__ import annotations

import math
import time

import gevent
import gevent.event

__all__ = ["Rendezvous"]

_SPIN_NS = 1_500_000  # busy-wait the last 1.5 ms before a burst deadline


class _Generation:
    __slots__ = ("event", "round")

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.round = -1


class Rendezvous:
    """Users of one process meet here; the last to arrive releases them all at once.

    With ``interval_ns`` set, a round is released only at ``t0 + round *
    interval`` (monotonic ns), so that rounds of several processes coincide.
    """

    def __init__(self) -> None:
        self.parties = 0
        self.arrived = 0
        self.cancelled = False
        self.started = gevent.event.Event()
        self.interval_ns = 0
        self.t0_ns = 0
        self.last_round = -1
        self.gen = _Generation()
        #: round -> [requests, first sent ns, last sent ns]
        self.sent: dict[int, list[int]] = {}

    def configure(self, interval_ns: int, t0_ns: int) -> None:
        self.interval_ns, self.t0_ns = interval_ns, t0_ns

    def join(self) -> None:
        self.parties += 1

    def leave(self) -> None:
        self.parties -= 1
        if self.parties > 0 and self.arrived >= self.parties:
            self._release()

    def wait(self) -> int | None:
        """Block until the round is released; its number, or None once cancelled."""
        self.started.wait()
        if self.cancelled:
            return None
        gen = self.gen
        self.arrived += 1
        if self.arrived >= self.parties:
            self._release()
        else:
            gen.event.wait()
        return None if self.cancelled else gen.round

    def cancel(self) -> None:
        self.cancelled = True
        self.started.set()
        self.gen.event.set()

    def note_sent(self, burst: int, sent_ns: int) -> None:
        entry = self.sent.get(burst)
        if entry is None:
            self.sent[burst] = [1, sent_ns, sent_ns]
        else:
            entry[0] += 1
            entry[2] = sent_ns

    def _release(self) -> None:
        gen, self.gen, self.arrived = self.gen, _Generation(), 0
        if self.interval_ns:
            now = time.monotonic_ns()
            slot = math.ceil((now + 200_000 - self.t0_ns) / self.interval_ns)
            gen.round = max(self.last_round + 1, slot)
            release_at = self.t0_ns + gen.round * self.interval_ns
            if release_at - now > _SPIN_NS:
                gevent.sleep((release_at - now - _SPIN_NS) / 1e9)
            while time.monotonic_ns() < release_at:
                pass
        else:
            gen.round = self.last_round + 1
        self.last_round = gen.round
        gen.event.set()
