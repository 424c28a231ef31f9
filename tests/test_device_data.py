"""The prefetch thread (kinship.prefetch)."""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np
import pytest

from kinship.prefetch import Prefetcher

# --- prefetch -----------------------------------------------------------------------------------


def finishes_within(seconds: float, work) -> None:
    """Run `work` in a thread; fail (instead of hanging the test run) if it is not done in time."""
    errors = []

    def run():
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if errors:
        raise errors[0]


def counter():
    calls = []

    def make_batch():
        calls.append(threading.get_ident())
        return len(calls) - 1

    return make_batch, calls


@pytest.mark.parametrize("count", [0, 1, 7])
def test_prefetcher_yields_count_batches_in_order_from_one_background_thread(count):
    make_batch, calls = counter()
    with Prefetcher(make_batch, count=count) as batches:
        assert list(batches) == list(range(count))
    assert len(calls) == count
    assert len(set(calls)) <= 1 and threading.get_ident() not in calls


def test_prefetched_random_batches_and_final_rng_state_equal_a_serial_loop():
    def make_batch_of(rng):
        return lambda: (rng.integers(0, 256, (4, 8, 8, 3)), rng.random(4))

    serial_rng, prefetch_rng = np.random.default_rng(5), np.random.default_rng(5)
    serial = [make_batch_of(serial_rng)() for _ in range(25)]
    with Prefetcher(make_batch_of(prefetch_rng), count=25, depth=3) as batches:
        prefetched = list(batches)
    for a, b in zip(serial, prefetched, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert prefetch_rng.bit_generator.state == serial_rng.bit_generator.state


def test_an_error_in_make_batch_reaches_the_consumer_with_the_threads_traceback():
    def failing_make_batch():
        if len(calls) == 2:
            raise ValueError("cache row 17 is missing")
        calls.append(None)
        return len(calls)

    calls, received = [], []
    prefetcher = Prefetcher(failing_make_batch, count=5)

    def consume():
        with prefetcher as batches:
            received.extend(batches)

    with pytest.raises(ValueError, match="cache row 17 is missing") as caught:
        finishes_within(5, consume)
    assert received == [1, 2]  # the batches before the failure arrived first
    frames = "".join(traceback.format_tb(caught.value.__traceback__))
    assert "failing_make_batch" in frames and "consume" in frames
    assert not prefetcher._thread.is_alive()


@pytest.mark.parametrize("how", ["break", "consumer error", "plain for, break"])
def test_leaving_early_stops_the_thread(how):
    make_batch, calls = counter()
    prefetcher = Prefetcher(make_batch, count=10**9, depth=2)

    def consume():
        if how == "plain for, break":
            for batch in prefetcher:
                if batch == 3:
                    break
            return
        with prefetcher as batches:
            for batch in batches:
                if batch == 3:
                    if how == "break":
                        break
                    raise KeyError("the step failed")

    if how == "consumer error":
        with pytest.raises(KeyError, match="the step failed"):
            finishes_within(5, consume)
    else:
        finishes_within(5, consume)
    assert not prefetcher._thread.is_alive()
    assert 4 <= len(calls) <= 4 + 2 + 1  # the consumed, at most depth queued, one in the making
    made = len(calls)
    time.sleep(0.2)
    assert len(calls) == made


def test_close_waits_only_for_the_batch_in_the_making():
    def slow_batch():
        time.sleep(0.3)
        return 0

    prefetcher = Prefetcher(slow_batch, count=100)

    def consume():
        with prefetcher as batches:
            next(iter(batches))

    start = time.perf_counter()
    finishes_within(3, consume)
    assert time.perf_counter() - start < 1.5  # first batch 0.3 s + the one in the making 0.3 s
    assert not prefetcher._thread.is_alive()


def test_depth_bounds_the_batches_made_ahead():
    make_batch, calls = counter()
    with Prefetcher(make_batch, count=50, depth=2) as batches:
        iterator = iter(batches)
        assert next(iterator) == 0
        deadline = time.monotonic() + 5
        while len(calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # time to overrun the bound, were there none
        assert len(calls) == 1 + 2 + 1  # consumed, depth queued, one waiting to be queued
        assert next(iterator) == 1


def test_making_and_training_overlap():
    def make_batch():
        time.sleep(0.05)
        return 0

    start = time.perf_counter()
    with Prefetcher(make_batch, count=10) as batches:
        for _ in batches:
            time.sleep(0.05)  # the "step"
    assert time.perf_counter() - start < 0.85  # serially 1.0 s; overlapped about 0.55 s


def test_prefetcher_refuses_bad_settings_and_a_second_pass():
    with pytest.raises(ValueError, match="depth must be >= 1, got 0"):
        Prefetcher(lambda: 0, count=3, depth=0)
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        Prefetcher(lambda: 0, count=-1)
    with Prefetcher(lambda: 0, count=2) as batches:
        assert list(batches) == [0, 0]
        with pytest.raises(RuntimeError, match="yields its batches once"):
            list(batches)


def test_a_closed_prefetcher_raises_instead_of_waiting_forever():
    prefetcher = Prefetcher(lambda: 0, count=3)
    prefetcher.close()

    def consume():
        list(prefetcher)

    with pytest.raises(RuntimeError, match="ended before its last batch"):
        finishes_within(5, consume)
