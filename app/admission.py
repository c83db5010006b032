"""Admission: the bounded queue of requests and the pool of inference threads behind it.
More concurrent requests than the machine can hold are refused before any work is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """More requests than `queue_depth` are already admitted."""


class InferenceTimeout(Exception):
    """A request ran past its time limit."""


class Admission:
    """A bounded queue in front of a fixed pool of inference threads.

    At most `depth` requests are admitted (running or waiting); the next one is refused at
    once with 503 and Retry-After rather than piling up memory. Inference runs on worker
    threads, off the event loop, so /health answers while images are segmented.
    """

    def __init__(self, depth: int, workers: int, timeout_s: float) -> None:
        self.depth = depth
        self.timeout_s = timeout_s
        self.admitted = 0
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="inference")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self.depth:
            raise Overloaded
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) on an inference thread, within the request's time limit.

        A thread cannot be stopped: work that times out before it starts is dropped, work
        already running keeps its thread until it ends. So the pool, not the count of
        abandoned requests, bounds the CPU in use (anyio's abandon_on_cancel frees the slot
        at once and lets timed-out work pile up on extra threads).
        """
        future = self.executor.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise InferenceTimeout from exc
