"""Ordered prefetching with worker threads, so that decoding/resizing overlaps the model.

PIL decoding, OpenCV resizing and PNG/JPEG encoding release the GIL, so threads give real parallelism for this
work without the start-up and pickling cost of processes.
"""
from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, Iterator, List, Optional, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(items: Iterable[T], fn: Callable[[T], R], workers: int = 2, window: Optional[int] = None
             ) -> Iterator[Tuple[T, Optional[R], Optional[BaseException]]]:
    """Apply ``fn`` to ``items`` on ``workers`` threads, yielding ``(item, result, error)`` in input order.

    At most ``window`` items (default ``4 × workers``) are in flight, so memory stays bounded for long inputs.
    ``workers <= 0`` runs ``fn`` inline (no threads). Exceptions (not KeyboardInterrupt) are returned, not raised.
    """
    if workers <= 0:
        for item in items:
            try:
                yield item, fn(item), None
            except Exception as e:  # noqa: BLE001 - reported per item
                yield item, None, e
        return
    window = max(1, window or 4 * workers)
    pending: Deque[Tuple[T, Future]] = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gem-load")
    try:
        it = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((item, pool.submit(fn, item)))
            if not pending:
                break
            item, fut = pending.popleft()
            try:
                yield item, fut.result(), None
            except Exception as e:  # noqa: BLE001
                yield item, None, e
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def batched(iterable: Iterable[T], size: int) -> Iterator[List[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: List[T] = []
    for x in iterable:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class BackgroundWriter:
    """Run output-writing jobs on worker threads; errors are collected per key and read with :meth:`drain`."""

    def __init__(self, workers: int = 1, max_pending: int = 16):
        self.workers = workers
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gem-write") if workers > 0 else None
        self._pending: Deque[Tuple[object, Future]] = collections.deque()

    def submit(self, key, fn: Callable[[], object]) -> List[Tuple[object, Optional[object], Optional[BaseException]]]:
        """Queue ``fn``; returns the jobs that completed meanwhile (key, result, error), oldest first."""
        if self._pool is None:
            try:
                return [(key, fn(), None)]
            except Exception as e:  # noqa: BLE001
                return [(key, None, e)]
        self._pending.append((key, self._pool.submit(fn)))
        done = []
        while self._pending and (len(self._pending) > self.max_pending or self._pending[0][1].done()):
            done.append(self._pop())
        return done

    def _pop(self):
        key, fut = self._pending.popleft()
        try:
            return key, fut.result(), None
        except Exception as e:  # noqa: BLE001
            return key, None, e

    def drain(self) -> List[Tuple[object, Optional[object], Optional[BaseException]]]:
        """Wait for every queued job; returns their (key, result, error)."""
        out = []
        while self._pending:
            out.append(self._pop())
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
