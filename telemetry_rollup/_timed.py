"""``timed(name)``: count a block or function with its outcome, error code and duration bucket.

Only counters come out of it (wire format v1 is unchanged): ``name``, ``name:ok`` or
``name:error``, ``name:error:<code>`` and ``name:dur:<bucket>``. The error code of an exception is
its class name only: never its message, traceback or module path.
"""

from __future__ import annotations

import functools
import time
from types import TracebackType
from typing import Any, Callable, TypeVar

from ._counters import Counters

F = TypeVar("F", bound=Callable[..., Any])
_perf = time.perf_counter
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


class Timer:
    """Context manager and decorator returned by :func:`telemetry_rollup.timed`."""

    __slots__ = ("_code", "_counters", "_name", "_start")

    def __init__(self, counters: Counters, name: str) -> None:
        self._counters = counters
        self._name = name
        self._code: str | None = None
        self._start = 0.0

    def error(self, code: str) -> None:
        """Mark the block as failed with ``code`` even though it did not raise (or override the
        class name of the exception it raises)."""
        self._code = code

    def __enter__(self) -> Timer:
        self._code = None
        self._start = _perf()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        seconds = _perf() - self._start
        if exc_type is None and self._code is None:
            self._counters.record(self._name, "ok", None, seconds)
        else:
            code = self._code or (exc_type.__name__ if exc_type is not None else None)
            self._counters.record(self._name, "error", code, seconds)
        # returning None lets the exception propagate unchanged

    async def __aenter__(self) -> Timer:
        """``async with tr.timed("x"):`` times the block like ``with`` (awaits inside it count)."""
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        counters, name = self._counters, self._name
        code = getattr(func, "__code__", None)
        if code is not None and code.co_flags & _CO_COROUTINE:

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with Timer(counters, name):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Timer(counters, name):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
