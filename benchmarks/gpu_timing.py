"""The GPU benchmark's measurements: a member's training step alone and on the trainer's data path.

- `model_alone`: one group batch uploaded once, then `member.train_uploaded` on it again and again
  (device augmentation, preprocessing, forward, backward, Adam), the device synchronised only
  before the first and after the last timed step.
- `data_path`: `kinship.training._device_epoch` itself (the sampler, the gather from the uint8
  cache, the prefetch thread, the upload, the step), with the producer's parts and the step calls
  timed by `Probe` in passing.
- `gpu_busy`: the share of a few steps' wall time in which the GPU ran any kernel or copy
  (torch.profiler), the utilisation proxy behind "what limits this number".
- `torch_reference`: torchvision's ResNet50 in plain torch at the same batch and precision, a
  ceiling for the card that no Keras layer stands between.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch

from kinship.training import _device_epoch

MS = 1000.0


def sync() -> None:
    """Wait for the GPU (a no-op on the CPU, whose work is synchronous)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_steps(step: Callable[[], object], warmup: int, steps: int, batch: int) -> dict:
    """Images per second of `steps` calls of `step` after `warmup` untimed ones. `host_ms` is the
    loop's time per step before the final wait: near `step_ms`, the host is as slow as the GPU."""
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    host = time.perf_counter() - start
    sync()
    wall = time.perf_counter() - start
    loss = float(last) if last is not None else float("nan")
    return {
        "img_per_s": steps * batch / wall,
        "step_ms": wall / steps * MS,
        "host_ms": host / steps * MS,
        "loss": loss,
    }


def fixed_batch(member, cache: np.ndarray, sampler):
    """One sampled group batch, uploaded and ready on the device."""
    rows, partners, labels = sampler.sample(member.params.batch_size)
    return member.upload(cache[rows], partners, labels)


def model_alone(member, cache: np.ndarray, sampler, warmup: int, steps: int) -> dict:
    """(a) The training step alone, on one batch already on the device."""
    batch = fixed_batch(member, cache, sampler)
    return timed_steps(
        lambda: member.train_uploaded(batch), warmup, steps, member.params.batch_size
    )


class Probe:
    """Stands in for the sampler and wraps the member's `upload` and `train_uploaded`, adding up
    where the time goes: in the prefetch thread, sampling, gathering the images from the cache
    (between the sampler's return and the upload call) and uploading; in the training loop, the
    host time of each step call."""

    def __init__(self, member, sampler):
        self.member, self.sampler = member, sampler
        self.seconds = dict.fromkeys(("sample", "gather", "upload", "step_host"), 0.0)
        self.batches = 0
        self._sampled = 0.0

    def sample(self, batch_size: int):
        start = time.perf_counter()
        out = self.sampler.sample(batch_size)
        self._sampled = time.perf_counter()
        self.seconds["sample"] += self._sampled - start
        return out

    @contextlib.contextmanager
    def installed(self):
        """The member's `upload` and `train_uploaded` timed, for the duration."""
        upload, train = self.member.upload, self.member.train_uploaded

        def timed_upload(images, partners, labels):
            start = time.perf_counter()
            self.seconds["gather"] += start - self._sampled
            out = upload(images, partners, labels)
            self.seconds["upload"] += time.perf_counter() - start
            self.batches += 1
            return out

        def timed_train(batch):
            start = time.perf_counter()
            out = train(batch)
            self.seconds["step_host"] += time.perf_counter() - start
            return out

        self.member.upload, self.member.train_uploaded = timed_upload, timed_train
        try:
            yield self
        finally:
            del self.member.upload, self.member.train_uploaded  # the class's methods again

    def per_batch_ms(self) -> dict:
        n = max(self.batches, 1)
        parts = {f"{key}_ms": value / n * MS for key, value in self.seconds.items()}
        parts["producer_ms"] = sum(parts[f"{key}_ms"] for key in ("sample", "gather", "upload"))
        return parts


def data_path(member, cache: np.ndarray, sampler, warmup: int, steps: int) -> dict:
    """(b) The trainer's device epoch: sampler → cache gather → prefetch thread → upload →
    device augmentation → step, `steps` batches after a `warmup`-batch epoch."""
    probe = Probe(member, sampler)

    def no_schedule(step: int) -> None:
        """The epoch's learning-rate hook; the benchmark keeps the rate."""

    with probe.installed():
        if warmup:
            _device_epoch(member, cache, probe, warmup, no_schedule)
        sync()
        probe.seconds = dict.fromkeys(probe.seconds, 0.0)
        probe.batches = 0
        start = time.perf_counter()
        losses = _device_epoch(member, cache, probe, steps, no_schedule)
        sync()
        wall = time.perf_counter() - start
    batch = member.params.batch_size
    result = {"img_per_s": steps * batch / wall, "step_ms": wall / steps * MS}
    result["loss"] = float(losses[-1])
    result.update(probe.per_batch_ms())
    # the loop's time not spent inside step calls: waiting for the next batch (or for the GIL)
    result["wait_ms"] = max(0.0, result["step_ms"] - result["step_host_ms"])
    return result


def data_path_steps(member, cache: np.ndarray, sampler, steps: int) -> Callable[[], None]:
    """`steps` batches of the data path, for `gpu_busy`."""
    return lambda: _device_epoch(member, cache, sampler, steps, lambda step: None)


def model_alone_steps(member, cache: np.ndarray, sampler, steps: int) -> Callable[[], None]:
    batch = fixed_batch(member, cache, sampler)

    def run() -> None:
        for _ in range(steps):
            member.train_uploaded(batch)

    return run


def gpu_busy(run: Callable[[], object]) -> dict:
    """The share of `run`'s wall time in which the GPU executed anything (kernels, copies: the
    union of their intervals), from torch.profiler's CUDA trace alone (no CPU-side tracing, which
    would slow the host and understate the share). None without a GPU, or with a note saying why
    when the profiler cannot tell."""
    if not torch.cuda.is_available():
        return {"busy": None, "note": "no GPU"}
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync()
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            run()
            sync()
            wall_us = (time.perf_counter() - start) * 1e6
        events = prof.events()
    except RuntimeError as error:  # e.g. CUPTI unavailable: the proxy is missing, not the run
        return {"busy": None, "note": f"torch.profiler failed: {error}"}
    spans = [
        (e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA
    ]
    if not spans:
        return {"busy": None, "note": "the profiler recorded no GPU activity"}
    return {"busy": min(1.0, union_length(spans) / wall_us), "note": f"{len(spans)} GPU events"}


def union_length(spans: list[tuple[float, float]]) -> float:
    """The total length covered by intervals that may overlap (copies beside kernels)."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def peak_memory() -> dict:
    """Peak allocated and reserved GPU memory since the last reset, in GiB (None on the CPU)."""
    if not torch.cuda.is_available():
        return {"peak_gib": None, "reserved_gib": None}
    gib = 2.0**30
    return {
        "peak_gib": torch.cuda.max_memory_allocated() / gib,
        "reserved_gib": torch.cuda.max_memory_reserved() / gib,
    }


def reset_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def torch_reference(size: int, batch: int, mixed_precision: bool, warmup: int, steps: int) -> dict:
    """torchvision's ResNet50 (plain torch, channels-last, the same autocast and fused Adam) on
    one fixed float batch: what the card does with no Keras layer and no data path."""
    try:
        import torchvision
    except ImportError as error:
        return {"skipped": f"torchvision not importable ({error})"}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the members set it (fixed input sizes)
    net = torchvision.models.resnet50(num_classes=512).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    use_bf16 = mixed_precision and device.type == "cuda"
    autocast = torch.autocast("cuda", torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    def step() -> torch.Tensor:
        with autocast:
            loss = net(x).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return timed_steps(step, warmup, steps, batch)
