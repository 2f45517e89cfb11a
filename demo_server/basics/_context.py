"""``with`` support for objects that start and stop something (servers, services, faults)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["StartStop"]

T = TypeVar("T")


class StartStop(Generic[T]):
    """``with obj as x``: ``x = obj.start()``; ``obj.stop()`` on the way out, even on error."""

    def start(self) -> T:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> T:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
