"""The switches of the fault-injecting wrappers (`faults`): which call fails, and when."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import BackendUnavailable

__all__ = ["RANDOM_PUT_CHUNKS", "RandomFaults", "Switchboard", "Trigger"]

_T = TypeVar("_T")

Trigger = bool | int
"""When a switched operation fails: ``True`` on every call until switched off, an ``int`` n on
the next n calls (counting down to 0, which is off), ``False`` never."""

RANDOM_PUT_CHUNKS = 4
"""A put that `RandomFaults` dooms fails when one of its first this many chunks arrives
(chosen at random), or after its last chunk if it has fewer."""


@dataclass
class RandomFaults:
    """Fail each call of one of ``operations`` (every operation, if None) with ``probability``,
    drawing from ``rng``: the same seed and the same calls fail the same way again."""

    probability: float
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    operations: Collection[str] | None = None

    def strikes(self, operation: str) -> bool:
        """Whether this call of ``operation`` fails."""
        if self.operations is not None and operation not in self.operations:
            return False
        return self.rng.random() < self.probability


class Switchboard:
    """The switches and the bookkeeping that both wrappers share."""

    def __init__(self, backend: str, random_faults: RandomFaults | None) -> None:
        self.down = False
        self.random_faults = random_faults
        self.lost_replies: set[str] = set()
        self.injected: Counter[str] = Counter()
        self._backend = backend

    def heal(self) -> None:
        """Turn every switch off: no outage, no ``fail_*`` switch, no random faults."""
        self.down = False
        self.random_faults = None
        self._switches_off()

    def _switches_off(self) -> None:
        raise NotImplementedError

    def _take(self, operation: str) -> bool:
        """Whether the ``fail_<operation>`` switch fails this call (counting it down)."""
        name = f"fail_{operation}"
        trigger = vars(self).get(name, False)
        if isinstance(trigger, bool):
            return trigger
        if isinstance(trigger, int) and trigger > 0:
            setattr(self, name, trigger - 1)
            return True
        return False

    def _random(self, operation: str) -> bool:
        return self.random_faults is not None and self.random_faults.strikes(operation)

    def _fails(self, operation: str) -> bool:
        """Whether this call of ``operation`` fails, by outage, switch or chance."""
        return self.down or self._take(operation) or self._random(operation)

    def _fault(self, operation: str, where: str = "") -> BackendUnavailable:
        self.injected[operation] += 1
        detail = f" {where}" if where else ""
        return BackendUnavailable(
            f"{self._backend} is unavailable: injected fault in {operation}{detail}."
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``call`` unless this call of ``operation`` fails; a failure in
        ``lost_replies`` runs it first and raises after."""
        if not self._fails(operation):
            return await call()
        if operation in self.lost_replies:
            await call()
        raise self._fault(operation)
