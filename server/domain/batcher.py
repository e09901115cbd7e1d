"""Dynamic batching: concurrent requests are coalesced into one forward pass.

A request submits one input row; a worker task takes whatever has queued (up to `max_batch`, waiting
at most `max_delay_s` for more once the first arrives), runs the model once in a worker thread (off
the event loop) and hands each request its row of the result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np

BatchFn = Callable[[np.ndarray], np.ndarray]  # (N, ...) -> (N, ...)


class MicroBatcher:
    """Coalesces `submit` calls into batched calls of `fn`."""

    def __init__(
        self,
        fn: BatchFn,
        *,
        max_batch: int,
        max_delay_s: float,
        name: str = "batcher",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._fn = fn
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        # (row, its future), or None: the end marker `retire` queues behind the last request.
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._retired = False
        self._name = name
        self._on_batch = on_batch  # told each forward pass's batch size
        self.batches = 0  # forward passes run
        self.items = 0  # rows scored

    async def submit(self, row: np.ndarray) -> np.ndarray:
        """Scores one input row (e.g. a (T, C) window) and returns its output row."""
        if self._retired:  # a request that picked this batcher just before a model swap
            return (await asyncio.to_thread(self._fn, row[None]))[0]
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((row, future))
        return await future

    async def close(self) -> None:
        """Stops the worker now (server shutdown): requests still queued are cancelled."""
        self._retired = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                item[1].cancel()

    async def retire(self) -> None:
        """Stops taking new work, answers every request already queued, then ends the worker (a model
        swap: the old version's batcher finishes its queue instead of being dropped mid-wait)."""
        self._retired = True
        if self._task is None or self._task.done():
            return
        self._queue.put_nowait(None)  # the worker ends when it reaches this, after every request before
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ending = False
        while not ending:
            first = await self._queue.get()
            if first is None:
                return
            pending = [first]
            deadline = loop.time() + self._max_delay_s
            while len(pending) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    ending = True
                    break
                pending.append(item)
            live = [(row, future) for row, future in pending if not future.cancelled()]
            if not live:
                continue
            try:
                batch = np.stack([row for row, _ in live])
                outputs = await asyncio.to_thread(self._fn, batch)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            if self._on_batch is not None:
                self._on_batch(len(live))
            for (_, future), output in zip(live, outputs, strict=True):
                if not future.done():
                    future.set_result(output)


class VersionBatchers:
    """One MicroBatcher per served model version: a new version gets a fresh batcher and the old
    versions' batchers retire (they answer what is queued, then end). Use from the event loop."""

    def __init__(self, *, max_batch: int, max_delay_s: float) -> None:
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._batchers: dict[str, MicroBatcher] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # old batchers finishing their queue
        self.on_batch: Callable[[int], None] | None = None
        """Told each dynamic batch's size (the batch-size histogram); may be set after batchers exist."""

    def get(self, version: str, fn: BatchFn) -> MicroBatcher:
        """The batcher of `version` (made on first use, retiring every other version's)."""
        batcher = self._batchers.get(version)
        if batcher is None:
            batcher = MicroBatcher(
                fn,
                max_batch=self._max_batch,
                max_delay_s=self._max_delay_s,
                name=f"batcher-{version}",
                on_batch=self._observe,
            )
            for old in self._batchers.values():
                retiring = asyncio.get_running_loop().create_task(old.retire(), name=f"retire-{version}")
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)
            self._batchers = {version: batcher}
        return batcher

    @property
    def versions(self) -> list[str]:
        """The versions with a live batcher (at most one)."""
        return list(self._batchers)

    @property
    def retiring(self) -> int:
        """Old batchers still finishing their queue."""
        return len(self._retiring)

    def _observe(self, size: int) -> None:
        if self.on_batch is not None:
            self.on_batch(size)

    async def close(self) -> None:
        """Stops every batcher (server shutdown) and waits for the retiring ones."""
        for batcher in list(self._batchers.values()):
            await batcher.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
