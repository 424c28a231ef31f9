"""The training batch on the accelerator: augmentation, model inputs and the host→device upload.

Why: on a GPU, `kinship.augment` (numpy, on the host) and a float32 upload leave the model waiting
between steps. Here a batch crosses as uint8 (a quarter of float32's bytes) on a side CUDA stream
while the previous step computes (`to_device`), is augmented where it lands (`augment`), and only
then becomes the model's float32 input (`koch_input`, `facenet_input`, `vggface_input`).

Nothing here waits for the device: random decisions come from a `torch.Generator` on the images'
device, shifts are an index gather, and no code reads a tensor's value on the host (`.item()`,
boolean-mask indexing, a Python `if` on a tensor) — each of those would stall the CPU until the
GPU caught up, and the GPU would then idle while the CPU queued the next step.

Conventions: images are uint8 RGB (N, S, S, 3), NHWC, as in the cache and in `kinship.augment`;
`augment` returns the same. Each model's input function returns float32: NCHW in channels-last
memory for the torch members (their weights' layout), NHWC for Keras. Torch is imported at the top:
only torch-based members import this module (training.py and the package stay framework-free).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kinship.members.params import AugmentParams

# --- augmentation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decisions:
    """One batch's random augmentation decisions, on the images' device. `None` turns that
    augmentation off. Kept apart from drawing them so a test can hand the same decisions to
    `kinship.augment` and compare the images (see tests/test_device_data.py)."""

    flip: torch.Tensor | None = None
    """(N,) bool: mirror the image left to right (before the shift, as numpy does)."""
    shift: torch.Tensor | None = None
    """(N, 2) int64 (dy, dx): output pixel (y, x) shows input pixel (y + dy, x + dx), coordinates
    clamped to the image (edge padding)."""
    colour: torch.Tensor | None = None
    """(N, 3) float32 factors: brightness, contrast, saturation (numpy's draw order)."""


def augment(
    images: torch.Tensor, generator: torch.Generator, params: AugmentParams
) -> torch.Tensor:
    """`kinship.augment.augment` on the device: flips, edge-padded shifts and colour jitter drawn
    per image from `generator`. Returns uint8 (N, S, S, 3); the input itself when `params` turn
    every augmentation off (no copy: write into the result only after cloning it)."""
    check_images(images, "augment")
    if generator.device.type != images.device.type:
        raise ValueError(
            f"augment needs a generator on the images' device ({images.device}), "
            f"got one on {generator.device}"
        )
    return apply(images, draw(len(images), images.shape[1], params, generator))


def draw(count: int, size: int, params: AugmentParams, generator: torch.Generator) -> Decisions:
    """Random decisions for `count` images of side `size`, as `kinship.augment` draws them: a
    flip with probability 1/2, integer shifts uniform in [-m, m] per axis with
    m = round(shift × size), colour factors uniform in [1 − colour, 1 + colour]."""
    device = generator.device
    flip = shift = colour = None
    if params.flip:
        flip = torch.rand(count, generator=generator, device=device) < 0.5
    max_shift = int(round(params.shift * size))  # kinship.augment's rounding (half to even)
    if max_shift > 0:
        high = max_shift + 1  # exclusive, as numpy's integers
        shift = torch.randint(-max_shift, high, (count, 2), generator=generator, device=device)
    if params.colour > 0:
        colour = torch.empty((count, 3), device=device)
        colour.uniform_(1 - params.colour, 1 + params.colour, generator=generator)
    return Decisions(flip=flip, shift=shift, colour=colour)


def apply(images: torch.Tensor, decisions: Decisions) -> torch.Tensor:
    """Carry out `decisions` on uint8 images (N, S, S, 3): flip, shift, then colour, as numpy.

    Flips and shifts are bit-exact against numpy. Colour is computed in float32 (numpy's
    float64 factors make its arithmetic float64; float64 is slow on most GPUs), so a value that
    lands within rounding error of a .5 boundary can come out one uint8 level apart.
    """
    check_images(images, "apply")
    count = len(images)
    for name, shape in (("flip", (count,)), ("shift", (count, 2)), ("colour", (count, 3))):
        value = getattr(decisions, name)
        if value is None:
            continue
        if tuple(value.shape) != shape or value.device != images.device:
            raise ValueError(
                f"decisions.{name} must have shape {shape} on {images.device}, "
                f"got {tuple(value.shape)} on {value.device}"
            )
    out = images
    if decisions.flip is not None or decisions.shift is not None:
        out = _move(out, decisions.flip, decisions.shift)
    if decisions.colour is not None:
        out = _colour(out, decisions.colour)
    return out


def _move(images: torch.Tensor, flip: torch.Tensor | None, shift: torch.Tensor | None):
    """Flip and shift in one gather: out[i, y, x] = images[i, rows[i, y], cols[i, x]].

    Edge padding is clamping: numpy's padded window at offset d reads input coordinate
    clamp(y + d, 0, S − 1). Flipping first and then shifting reads column S − 1 − clamp(x + dx).
    """
    count, size = images.shape[:2]
    grid = torch.arange(size, device=images.device).expand(count, size)
    rows = cols = grid
    if shift is not None:
        rows = (grid + shift[:, :1]).clamp(0, size - 1)
        cols = (grid + shift[:, 1:]).clamp(0, size - 1)
    if flip is not None:
        cols = torch.where(flip[:, None], size - 1 - cols, cols)
    batch = torch.arange(count, device=images.device).view(count, 1, 1)
    return images[batch, rows[:, :, None], cols[:, None, :]]


def _colour(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """`kinship.augment._colour`'s formula: saturation around each pixel's grey, contrast around
    the image mean, brightness as a scale; rounded half up and clipped to uint8."""
    brightness, contrast, saturation = factors.to(torch.float32).view(-1, 3, 1, 1, 1).unbind(1)
    x = images.to(torch.float32)
    grey = x.mean(dim=3, keepdim=True)
    x = grey + (x - grey) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * contrast) * brightness
    return (x + 0.5).clamp_(0, 255).to(torch.uint8)  # float→uint8 truncates, as numpy's astype


# --- model inputs --------------------------------------------------------------------------------
# One function per model family, each the twin of its owner's numpy `preprocess` (tested equal):
# every model owns its preprocessing (STYLE.md), so there is deliberately no shared "normalise".


def koch_input(images: torch.Tensor) -> torch.Tensor:
    """siamese_cnn (`kinship.members.koch.preprocess`): x / 255, float32 NCHW, channels-last."""
    return _nchw_float(images, "koch_input").div_(255.0)


def facenet_input(images: torch.Tensor) -> torch.Tensor:
    """facenet (`kinship.members.facenet_backbone.preprocess`): (x − 127.5) / 128, float32 NCHW,
    channels-last."""
    return _nchw_float(images, "facenet_input").sub_(127.5).div_(128.0)


def vggface_input(images: torch.Tensor, means_bgr: tuple[float, float, float]) -> torch.Tensor:
    """VGGFace (`kinship.members.vggface_arch.preprocess_input`): RGB→BGR minus the arch's BGR
    means, float32 NHWC (Keras' layout). The caller passes
    `MEANS_BGR[PREPROCESS_VERSION[arch]]` from vggface_arch, which owns them (importing it here
    would load Keras)."""
    check_images(images, "vggface_input")
    bgr = images.flip(3).to(torch.float32)
    # one Python scalar per channel: a means tensor would be a host→device copy from pageable
    # memory, which makes the host wait for the stream (the scalar is a kernel argument)
    for channel, mean in enumerate(means_bgr):
        bgr[..., channel].sub_(mean)
    return bgr


def _nchw_float(images: torch.Tensor, who: str) -> torch.Tensor:
    """float32 NCHW in channels-last memory: permuting NHWC gives exactly those strides, and the
    cast keeps them, so the conversion is one pass."""
    check_images(images, who)
    nchw = images.permute(0, 3, 1, 2).to(torch.float32)
    return nchw.contiguous(memory_format=torch.channels_last)  # a no-op unless N or S is 1


def check_images(images: torch.Tensor, who: str) -> None:
    """Raise a ValueError unless `images` is a uint8 RGB batch tensor (N, S, S, 3). Reads only
    metadata: no device sync."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"{who} expects a uint8 torch tensor, got {kind}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"{who} expects square RGB images (N, S, S, 3), got {tuple(images.shape)}")


# --- upload --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A batch on its way to the device: `tensor` may still be being written by the copy stream
    until `ready` has passed; `wait()` is the only safe way to hand it to the compute stream."""

    tensor: torch.Tensor
    ready: torch.cuda.Event | None = None
    """Recorded on the copy stream right after the copy; None when no copy is in flight."""

    def wait(self) -> torch.Tensor:
        """The tensor, safe to use on the current stream: that stream waits for the copy on the
        GPU (the host does not block), and the caching allocator learns the tensor is used there,
        so its memory is not reused for the next upload while this step still reads it."""
        if self.ready is not None:
            stream = torch.cuda.current_stream(self.tensor.device)
            stream.wait_event(self.ready)
            self.tensor.record_stream(stream)
        return self.tensor


def to_device(
    array: np.ndarray, device: torch.device | str, stream: torch.cuda.Stream | None = None
) -> Upload:
    """Start copying `array` (e.g. a uint8 batch) to `device`; call `.wait()` on the result in the
    thread and on the stream that uses it.

    CUDA: the array is staged in pinned (page-locked) host memory, which is what lets
    `non_blocking=True` return before the copy ends, and copied on `stream` (a side stream; pass
    one long-lived stream, else one is taken from torch's pool), so it overlaps the compute
    stream's work. The pinned staging buffer may be dropped at once: torch's caching host
    allocator holds it until the copy's stream has passed it. Safe to call from a prefetch thread.

    Other devices: `torch.from_numpy`, which on the CPU shares the array's memory (no copy, no
    pinning: pinning is for DMA to a GPU), so the array must not be written afterwards.
    """
    device = torch.device(device)
    host = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return Upload(host.to(device))
    stream = stream if stream is not None else torch.cuda.Stream(device)
    pinned = host.pin_memory()
    with torch.cuda.stream(stream):
        tensor = pinned.to(device, non_blocking=True)
        ready = stream.record_event()
    return Upload(tensor, ready)


# --- a group batch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A group batch on its way to the device: uint8 images (B, S, S, 3), partners (B, M) and
    labels (B, M) float32 (`kinship.members.base` explains group batches)."""

    images: Upload
    partners: Upload
    labels: Upload

    def wait(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three tensors, safe to use on the current stream (see `Upload.wait`)."""
        return self.images.wait(), self.partners.wait(), self.labels.wait()


def upload_batch(
    images: np.ndarray,
    partners: np.ndarray,
    labels: np.ndarray,
    device: torch.device | str,
    stream: torch.cuda.Stream | None = None,
) -> Batch:
    """Start copying a group batch to `device` on `stream`: the images stay uint8 (a quarter of
    float32's bytes), partners become int64 (torch's index type), labels float32. Every part goes
    through pinned memory on CUDA: a copy from ordinary memory would make the host wait."""
    return Batch(
        to_device(images, device, stream),
        to_device(np.asarray(partners, np.int64), device, stream),
        to_device(np.asarray(labels, np.float32), device, stream),
    )


# --- what a member on the device path owns --------------------------------------------------------

AUGMENT_SEED_OFFSET = 0x5EED
"""The augmentation generator's seed is the member seed plus this: its own stream, not a copy of
the one that drew the initial weights."""


class DeviceTraining:
    """A member's device data path: its augmentation generator and side copy stream on `device`.
    On CUDA it also turns on cuDNN's benchmark mode: the inputs have fixed sizes, so timing the
    convolution algorithms once keeps the fastest (GPU results are not bit-reproducible anyway)."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.augment_rng = torch.Generator(device=self.device)
        self.copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def seed(self, seed: int) -> None:
        """Seed the augmentation stream from the member seed (at `reset`)."""
        self.augment_rng.manual_seed(seed + AUGMENT_SEED_OFFSET)

    def upload(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> Batch:
        return upload_batch(images, partners, labels, self.device, self.copy_stream)

    def augment(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        return augment(images, self.augment_rng, params)
