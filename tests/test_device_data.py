"""The device data path: torch augmentation against numpy's, model inputs against each member's
preprocess, the upload helper, and the prefetch thread (kinship.device_data, kinship.prefetch)."""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np
import pytest
import torch

from kinship import augment as numpy_augment
from kinship import device_data as dd
from kinship.members import facenet_backbone, koch
from kinship.members.params import AugmentParams
from kinship.prefetch import Prefetcher

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def generator(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class ScriptedRng:
    """Stands in for numpy's Generator inside `kinship.augment.augment`: answers its draws with
    given decisions, and checks each draw asks for what `draw` drew (same kind, range, shape)."""

    def __init__(self, decisions: dd.Decisions, max_shift: int, strength: float):
        self.script = []
        if decisions.flip is not None:
            n = len(decisions.flip)
            self.script.append(("random", (n,), np.where(decisions.flip.numpy(), 0.25, 0.75)))
        if decisions.shift is not None:
            bounds = (-max_shift, max_shift + 1)
            self.script.append(("integers", (*bounds, decisions.shift.shape), decisions.shift))
        if decisions.colour is not None:
            factors = decisions.colour.numpy().astype(np.float64)
            n, bounds = len(factors), (1 - strength, 1 + strength)
            for column in range(3):  # brightness, contrast, saturation
                values = factors[:, column].reshape(n, 1, 1, 1)
                self.script.append(("uniform", (*bounds, (n, 1, 1, 1)), values))

    def _answer(self, kind: str, args: tuple):
        expected_kind, expected_args, values = self.script.pop(0)
        assert (kind, args) == (expected_kind, expected_args)
        return np.asarray(values)

    def random(self, n):
        return self._answer("random", (n,))

    def integers(self, low, high, size):
        return self._answer("integers", (low, high, torch.Size(size)))

    def uniform(self, low, high, size):
        return self._answer("uniform", (low, high, size))


def numpy_with(batch: np.ndarray, decisions: dd.Decisions, params: AugmentParams) -> np.ndarray:
    """kinship.augment.augment's output when it draws `decisions`."""
    rng = ScriptedRng(decisions, int(round(params.shift * batch.shape[1])), params.colour)
    out = numpy_augment.augment(batch, rng, params)
    assert rng.script == [], "numpy's augment drew fewer decisions than torch's"
    return out


# --- augmentation against numpy -----------------------------------------------------------------


@pytest.mark.parametrize("size", [17, 32])
@pytest.mark.parametrize("shift", [0.0, 0.03, 0.1, 0.49])
@pytest.mark.parametrize("flip", [False, True])
def test_flip_and_shift_equal_numpy_given_the_same_decisions(size, shift, flip):
    params = AugmentParams(flip=flip, shift=shift, colour=0.0)
    batch = images(64, size, seed=size)
    decisions = dd.draw(len(batch), size, params, generator(1))
    out = dd.apply(torch.from_numpy(batch), decisions)
    np.testing.assert_array_equal(out.numpy(), numpy_with(batch, decisions, params))


def test_colour_jitter_is_numpy_within_one_level_and_mostly_exact():
    params = AugmentParams(flip=True, shift=0.1, colour=0.4)
    batch = images(64, 32, seed=3)
    decisions = dd.draw(len(batch), 32, params, generator(2))
    out = dd.apply(torch.from_numpy(batch), decisions).numpy().astype(int)
    expected = numpy_with(batch, decisions, params).astype(int)
    assert np.abs(out - expected).max() <= 1
    assert np.mean(out != expected) < 1e-4  # measured ~6e-6: float32 vs float64 near .5
    assert np.mean(out != batch) > 0.5  # the jitter did change the images


def test_augment_is_draw_then_apply_and_repeats_from_a_seed():
    params = AugmentParams(flip=True, shift=0.1, colour=0.2)
    batch = torch.from_numpy(images(16, 24))
    first = dd.augment(batch, generator(7), params)
    assert torch.equal(first, dd.augment(batch, generator(7), params))
    assert torch.equal(first, dd.apply(batch, dd.draw(16, 24, params, generator(7))))
    assert not torch.equal(first, dd.augment(batch, generator(8), params))
    assert first.dtype == torch.uint8 and first.shape == batch.shape


def test_decisions_have_the_documented_shapes_ranges_and_rates():
    params = AugmentParams(flip=True, shift=0.1, colour=0.3)
    n, size = 20_000, 30  # max shift round(3.0) = 3
    decisions = dd.draw(n, size, params, generator(0))
    assert decisions.flip.dtype == torch.bool and decisions.flip.shape == (n,)
    assert abs(decisions.flip.float().mean().item() - 0.5) < 0.02
    assert decisions.shift.dtype == torch.int64 and decisions.shift.shape == (n, 2)
    counts = torch.bincount(decisions.shift.flatten() + 3)
    assert len(counts) == 7 and counts.min() > 0.9 * 2 * n / 7  # uniform over -3..3, both axes
    assert decisions.colour.dtype == torch.float32 and decisions.colour.shape == (n, 3)
    assert decisions.colour.min() >= 0.7 and decisions.colour.max() <= 1.3
    assert abs(decisions.colour.mean().item() - 1.0) < 0.01


def test_shift_rounding_and_switches_follow_numpy():
    # 0.05 × 50 = 2.5 rounds half to even (2), as kinship.augment's round()
    assert dd.draw(1000, 50, AugmentParams(shift=0.05), generator(0)).shift.abs().max() == 2
    off = dd.draw(5, 50, AugmentParams(flip=False, shift=0.009, colour=0.0), generator(0))
    assert off == dd.Decisions()  # round(0.45) = 0: no shift, as numpy


def test_the_shift_reads_the_documented_pixel():
    """out[y, x] = in[clamp(y + dy), clamp(x + dx)]: the convention `Decisions.shift` states."""
    image = torch.arange(16, dtype=torch.uint8).view(1, 4, 4, 1).expand(1, 4, 4, 3).contiguous()
    out = dd.apply(image, dd.Decisions(shift=torch.tensor([[1, -2]])))[0, :, :, 0]
    expected = [[4, 4, 4, 5], [8, 8, 8, 9], [12, 12, 12, 13], [12, 12, 12, 13]]
    assert out.tolist() == expected
    mirrored = dd.apply(image, dd.Decisions(flip=torch.tensor([True])))[0, :, :, 0]
    assert mirrored.tolist() == image[0, :, :, 0].flip(1).tolist()


def test_switched_off_and_neutral_decisions_are_identities():
    batch = torch.from_numpy(images(8, 20))
    off = AugmentParams(flip=False, shift=0.0, colour=0.0)
    assert dd.augment(batch, generator(0), off) is batch
    neutral = dd.Decisions(
        flip=torch.zeros(8, dtype=torch.bool),
        shift=torch.zeros((8, 2), dtype=torch.int64),
        colour=torch.ones((8, 3)),
    )
    assert torch.equal(dd.apply(batch, neutral), batch)


def test_bad_batches_and_decisions_are_refused():
    params = AugmentParams()
    with pytest.raises(ValueError, match="uint8 torch tensor, got torch.float32"):
        dd.augment(torch.zeros((2, 8, 8, 3)), generator(0), params)
    with pytest.raises(ValueError, match=r"square RGB images \(N, S, S, 3\), got \(2, 8, 9, 3\)"):
        dd.augment(torch.zeros((2, 8, 9, 3), dtype=torch.uint8), generator(0), params)
    wrong = dd.Decisions(shift=torch.zeros((3, 2), dtype=torch.int64))
    with pytest.raises(
        ValueError, match=r"decisions.shift must have shape \(2, 2\) on cpu, got \(3, 2\)"
    ):
        dd.apply(torch.zeros((2, 8, 8, 3), dtype=torch.uint8), wrong)
    with pytest.raises(ValueError, match="uint8 torch tensor, got uint8"):
        dd.facenet_input(images(2, 8))  # a numpy array, not a tensor


# --- model inputs against each member's numpy preprocess --------------------------------------


def input_and_preprocess(model: str):
    """(torch input function, the member's numpy preprocess, whether the input is NCHW)."""
    if model == "siamese_cnn":
        return dd.koch_input, koch.preprocess, True
    if model == "facenet":
        return dd.facenet_input, facenet_backbone.preprocess, True
    from kinship.members import vggface_arch  # loads Keras: only in the tests that need it

    means = vggface_arch.MEANS_BGR[vggface_arch.PREPROCESS_VERSION[model]]
    return (
        lambda batch: dd.vggface_input(batch, means),
        lambda batch: vggface_arch.preprocess_input(batch, model),
        False,
    )


@pytest.mark.parametrize("model", ["siamese_cnn", "facenet", "vgg16", "resnet50"])  # VGGFace v1, v2
def test_model_inputs_equal_the_members_numpy_preprocess(model):
    torch_input, numpy_preprocess, nchw = input_and_preprocess(model)
    batch = images(6, 16, seed=4)
    batch[0] = 0  # the range's ends
    batch[1] = 255
    out = torch_input(torch.from_numpy(batch))
    expected = numpy_preprocess(batch)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out, torch.from_numpy(expected), rtol=2**-23, atol=0)  # ≤ 1 ulp
    layout = torch.channels_last if nchw else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)


# --- upload -------------------------------------------------------------------------------------


def test_to_device_on_the_cpu_shares_the_array_and_needs_no_wait():
    batch = images(4, 8)
    upload = dd.to_device(batch, "cpu")
    assert upload.ready is None
    assert upload.wait() is upload.tensor
    assert upload.tensor.dtype == torch.uint8 and upload.tensor.data_ptr() == batch.ctypes.data
    strided = dd.to_device(batch[:, ::2], torch.device("cpu")).wait()  # made contiguous
    np.testing.assert_array_equal(strided.numpy(), batch[:, ::2])


@CUDA
def test_upload_from_a_prefetch_thread_then_augment_without_a_host_sync():
    """On a GPU: uploads made in the prefetch thread arrive intact, and the step's device work
    (wait, augment, model input) never makes the host wait (sync debug mode raises if it would)."""
    device, stream = torch.device("cuda"), torch.cuda.Stream()
    batches = [images(32, 64, seed=i) for i in range(6)]
    source = iter(batches)
    params = AugmentParams(flip=True, shift=0.1, colour=0.2)
    gen, outputs = generator(0, "cuda"), []
    with Prefetcher(lambda: dd.to_device(next(source), device, stream), count=6) as uploads:
        torch.cuda.set_sync_debug_mode("error")
        try:
            for upload in uploads:
                x = upload.wait()
                outputs.append((x.clone(), dd.facenet_input(dd.augment(x, gen, params))))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for batch, (arrived, model_input) in zip(batches, outputs, strict=True):
        np.testing.assert_array_equal(arrived.cpu().numpy(), batch)
        assert model_input.is_contiguous(memory_format=torch.channels_last)


@CUDA
def test_device_augmentation_equals_the_cpu_one_given_the_same_decisions():
    params = AugmentParams(flip=True, shift=0.1, colour=0.0)
    batch = torch.from_numpy(images(32, 40))
    decisions = dd.draw(32, 40, params, generator(0, "cuda"))
    on_gpu = dd.apply(batch.cuda(), decisions).cpu()
    cpu_decisions = dd.Decisions(flip=decisions.flip.cpu(), shift=decisions.shift.cpu())
    assert torch.equal(on_gpu, dd.apply(batch, cpu_decisions))


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
