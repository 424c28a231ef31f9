"""Prepare the next training batches in a background thread while the current one trains.

Why: a step on a GPU is short, and sampling pairs, gathering images from the cache and starting
their upload (`kinship.device_data.to_device`) take host time that the GPU would otherwise spend
idle. numpy's gathers and copies release the GIL, so one thread overlaps them with the step.

Why one thread, calling `make_batch` in order: the batches must not depend on the overlap. A
`numpy.random.Generator` used only inside `make_batch` sees the same calls in the same order as
in a serial loop, so after a full iteration the batches and the generator's final state are those
of `[make_batch() for _ in range(count)]` (a resumed run reproduces). Nothing else may use that
generator while batches are being made. Framework-free: the trainer imports it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.05
"""How often a blocked put or get looks up from waiting (to notice a stop or a dead thread):
it bounds how long `close()` takes beyond the batch being made, and costs nothing otherwise."""


class _Failure:
    """What the thread hands over instead of a batch when `make_batch` raised."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher(Generic[T]):
    """Yields exactly `count` results of `make_batch()`, made ahead in one background thread.

    At most `depth` finished batches wait in the queue, and one more may be in the making, so
    memory (device memory when `make_batch` uploads) holds at most `depth + 1` batches ahead of
    the one in use. An exception in `make_batch` is raised in the consumer at the batch where it
    happened, as the same exception object, so its traceback still shows the thread's frames.

        with Prefetcher(make_batch, count=steps) as batches:
            for batch in batches:
                train(batch)

    Leaving the `with` block early (break, exception) stops the thread: it finishes the batch in
    hand, if any, and makes no more. Batches made but not consumed are dropped — so after an
    early exit a generator used by `make_batch` has advanced by up to `depth + 1` extra calls.
    """

    def __init__(self, make_batch: Callable[[], T], count: int, depth: int = 2):
        if count < 0:
            raise ValueError(f"Prefetcher count must be >= 0, got {count}")
        if depth < 1:
            raise ValueError(f"Prefetcher depth must be >= 1, got {depth}")
        self.make_batch = make_batch
        self.count = count
        self._queue: queue.Queue[T | _Failure] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # a daemon: a make_batch that never returns must not keep the interpreter alive
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._iterated = False

    def __enter__(self) -> Prefetcher[T]:
        self._start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        if self._iterated:
            raise RuntimeError("a Prefetcher yields its batches once; make a new one")
        self._iterated = True
        self._start()
        try:
            for _ in range(self.count):
                yield self._next()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread and wait for it (at most the batch in the making plus a poll)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        while not self._queue.empty():  # let unconsumed batches (and device memory) go now
            self._queue.get_nowait()

    def _start(self) -> None:
        if self._thread.ident is None and not self._stop.is_set():
            self._thread.start()

    # -- the consumer's side ----------------------------------------------------------------------
    def _next(self) -> T:
        while True:
            # read before waiting: a thread already gone when a wait comes back empty has put
            # everything it ever will (without this, a vanished thread would hang the loop)
            alive = self._thread.is_alive()
            try:
                item = self._queue.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if not alive:
                    raise RuntimeError("the prefetch thread ended before its last batch") from None
        if isinstance(item, _Failure):
            raise item.error
        return item

    # -- the thread's side ----------------------------------------------------------------------
    def _produce(self) -> None:
        try:
            for _ in range(self.count):
                if self._stop.is_set():
                    return
                self._put(self.make_batch())
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(_Failure(error))

    def _put(self, item: T | _Failure) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue
