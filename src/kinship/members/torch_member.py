"""What the torch members share: a siamese net (backbone + pair head) behind the `Member` API.

One forward of the siamese net runs the backbone once on a group batch of images and scores each
image against its in-batch partners with `torch_head.PairHead` (see `base` for group batches).
Training is Adam on BCE; with `freeze` the backbone has `requires_grad` off, stays in inference
mode (BatchNorm statistics and dropout untouched) and is left out of the optimiser. The device is
CUDA when available, else CPU.

The device data path (`upload` in the trainer's prefetch thread, then `train_uploaded`): uint8
batches cross to the device on a side stream, are augmented there from the member's own seeded
`torch.Generator` and become the model's input there (`device_input`); the step returns its loss
as a device scalar, read once per epoch, so no step waits on the host (`kinship.device_data`).

Mixed precision: with `mixed_precision` and CUDA, forward passes run under
`torch.autocast(bfloat16)` (losses, embeddings and probabilities come back as float32); on CPU the
setting is ignored, as bfloat16 autocast there is slower than float32 on most CPUs.

Subclasses supply `make_backbone` (a module with `out_features`), `preprocess`, and, when the
architecture has published weights, `load_pretrained`; the architecture's limits are checked by
`MemberParams.check_model` (kinship.members.params), once, when the member is built.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from kinship import device_data
from kinship.io import atomic_file, write_json
from kinship.members import torch_head
from kinship.members.base import CONFIG_FILE, Member, check_groups, check_pairs
from kinship.members.params import MemberParams

MODEL_FILE = "model.pt"
TRAINING_STATE_FILE = "training_state.pt"
SCORE_BATCH = 8192


class SiameseNet(nn.Module):
    """Backbone + pair head: preprocessed images (B, ...) and partners (B, M) → logits (B, M)."""

    def __init__(self, backbone: nn.Module, head: torch_head.PairHead, frozen: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.frozen = frozen
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> SiameseNet:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # a frozen backbone always runs in inference mode
        return self

    def forward(self, images: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            embeddings = self.backbone(images)
        return group_logits(self.head, embeddings, partners)


def group_logits(
    head: torch_head.PairHead, embeddings: torch.Tensor, partners: torch.Tensor
) -> torch.Tensor:
    """Head logits (B, M) of each row's pairs (i, partners[i, j]) inside one batch.

    The partners' embeddings are gathered with a one-hot matrix product rather than by indexing:
    the backward pass of indexing accumulates with `index_put_`, whose CPU kernel adds rows in a
    thread-dependent order, so two runs from one seed drifted apart; a matrix product's gradient
    is a matrix product, which repeats. At B ≈ 32 the product costs nothing next to the backbone.
    """
    count, dim = embeddings.shape
    anchors = embeddings.unsqueeze(1).expand(count, partners.shape[1], dim).reshape(-1, dim)
    selector = nn.functional.one_hot(partners.reshape(-1), count).to(embeddings.dtype)
    return head(anchors, selector @ embeddings).view(partners.shape)


class TorchMember(Member):
    """A siamese torch member; see the module docstring for what subclasses supply."""

    framework: ClassVar[str] = "torch"
    device_path: ClassVar[bool] = True

    def __init__(self, name: str, params: MemberParams):
        super().__init__(name, params)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._net: SiameseNet | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._pretrained_backbone: dict[str, torch.Tensor] | None = None
        self._device_path = device_data.DeviceTraining(self.device)

    # -- what subclasses supply ---------------------------------------------------------------
    def make_backbone(self) -> nn.Module:
        """A fresh backbone with an `out_features` attribute (the embedding width)."""

    def load_pretrained(self, backbone: nn.Module, path: Path) -> None:
        raise ValueError(
            f"members.{self.name}.weights: {type(self).__name__} has no pretrained weights, "
            f"expected 'none', got {str(path)!r}"
        )

    def device_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, S, S, 3) on the device → this model's float32 input, NCHW in channels-last
        memory: the twin of `preprocess` (`kinship.device_data` has one per model family)."""
        raise NotImplementedError(f"{type(self).__name__} has no device_input")

    def init_backbone(self, backbone: nn.Module, seed: int) -> None:
        """Random init: every submodule's default init, drawn from the (seeded) global RNG."""
        for module in backbone.modules():
            if module is not backbone and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    # -- the model ----------------------------------------------------------------------------
    @property
    def net(self) -> SiameseNet:
        if self._net is None:
            raise RuntimeError(f"member {self.name!r}: call build() before using the model")
        return self._net

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            raise RuntimeError(f"member {self.name!r}: call build() before training")
        return self._optimizer

    def build(self) -> None:
        backbone = self.make_backbone()
        if self.params.weights_path is not None:
            self.load_pretrained(backbone, self.params.weights_path)
            self._pretrained_backbone = copy.deepcopy(backbone.state_dict())
        head = torch_head.PairHead(backbone.out_features, self.params.head)
        self._net = SiameseNet(backbone, head, frozen=self.frozen).to(
            self.device, memory_format=torch.channels_last
        )
        self._optimizer = self._new_optimizer()

    def reset(self, seed: int) -> None:
        # 1. one seed drives the init and, later, dropout
        torch.manual_seed(seed)
        # 2. backbone: pretrained weights restored, or a fresh random init
        if self._pretrained_backbone is not None:
            self.net.backbone.load_state_dict(self._pretrained_backbone)
        else:
            self.init_backbone(self.net.backbone, seed)
        # 3. head and optimiser from scratch, learning rate back to params.lr
        self.net.head.reset_parameters()
        self._optimizer = self._new_optimizer()
        # 4. the device augmentation's own stream
        self._device_path.seed(seed)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """Adam with two parameter groups: the head at `lr`, the backbone at `backbone_lr` (left
        out when frozen). A head step leaves the backbone's gradients None, so Adam skips them
        and their moments start when the backbone starts training."""
        groups = [{"params": list(self.net.head.parameters()), "lr": self.params.lr}]
        if not self.frozen:
            backbone_lr = self.params.lr * self.params.backbone_lr_ratio
            groups.insert(0, {"params": list(self.net.backbone.parameters()), "lr": backbone_lr})
        # fused: one kernel for all parameters (FaceNet's 27 M: 25 ms a step on 2 CPU cores,
        # against 70 ms for the default multi-tensor Adam)
        return torch.optim.Adam(groups, lr=self.params.lr, fused=True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.params.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _images(self, images: np.ndarray) -> torch.Tensor:
        # uint8 to the device (a quarter of float32's bytes), the model's input made there, in
        # channels-last memory like the weights: oneDNN's and cuDNN's fast layout (measured here
        # on CPU: FaceNet embeds about a third faster; training within noise)
        return self.device_input(
            device_data.to_device(images, self.device, self._device_path.copy_stream).wait()
        )

    def _floats(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, np.float32), device=self.device)

    def _rows(self, partners: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(partners, np.int64), device=self.device)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> float:
        check_groups(len(images), partners, labels)
        self.net.train()
        with self._autocast():
            logits = self.net(self._images(images), self._rows(partners))
        return float(self._step(logits, self._floats(labels)))

    def upload(
        self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray
    ) -> device_data.Batch:
        check_groups(len(images), partners, labels)
        return self._device_path.upload(images, partners, labels)

    def train_uploaded(self, batch: device_data.Batch) -> torch.Tensor:
        images, partners, labels = batch.wait()
        images = self._device_path.augment(images, self.params.augment)
        self.net.train()
        with self._autocast():
            logits = self.net(self.device_input(images), partners)
        return self._step(logits, labels)

    def train_head_step(
        self, embeddings: np.ndarray, partners: np.ndarray, labels: np.ndarray
    ) -> float:
        check_groups(len(embeddings), partners, labels)
        self.net.head.train()
        with self._autocast():
            logits = group_logits(self.net.head, self._floats(embeddings), self._rows(partners))
        return float(self._step(logits, self._floats(labels)))

    def _step(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """BCE, backward, Adam; the loss as a device scalar (reading it would wait for the GPU)."""
        loss = torch_head.loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)  # backbone grads stay None in head steps
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def set_learning_rate(self, lr: float) -> None:
        groups = self.optimizer.param_groups
        groups[-1]["lr"] = float(lr)  # the head
        if len(groups) == 2:
            groups[0]["lr"] = float(lr) * self.params.backbone_lr_ratio

    def get_learning_rate(self) -> float:
        return float(self.optimizer.param_groups[-1]["lr"])

    # -- inference ----------------------------------------------------------------------------
    def embed(self, images: np.ndarray) -> np.ndarray:
        backbone = self.net.backbone.eval()
        batch = self.params.batch_size * 4
        chunks = [np.zeros((0, backbone.out_features), np.float32)]
        with torch.no_grad(), self._autocast():
            for start in range(0, len(images), batch):
                features = backbone(self._images(images[start : start + batch]))
                chunks.append(features.float().cpu().numpy())
        return np.concatenate(chunks)

    def score(self, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
        check_pairs(e1, e2)
        head = self.net.head.eval()
        chunks = [np.zeros(0, np.float32)]
        with torch.no_grad(), self._autocast():
            for start in range(0, len(e1), SCORE_BATCH):
                rows = slice(start, start + SCORE_BATCH)
                logits = head(self._floats(e1[rows]), self._floats(e2[rows]))
                chunks.append(torch_head.probabilities(logits).cpu().numpy())
        return np.concatenate(chunks)

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> dict[str, torch.Tensor]:
        return {key: value.detach().clone() for key, value in self.net.state_dict().items()}

    def set_state(self, state: Any) -> None:
        self.net.load_state_dict(state)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        state = {key: value.detach().cpu() for key, value in self.net.state_dict().items()}
        with atomic_file(directory / MODEL_FILE, "wb") as fh:
            torch.save(state, fh)
        write_json(directory / CONFIG_FILE, self.member_config())

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        self.check_checkpoint_config(directory / CONFIG_FILE)
        path = directory / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint weights not found (written by save)")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.net.load_state_dict(state)

    def save_training_state(self, directory: Path) -> None:
        """Weights, Adam's state (moments, step, learning rate), torch's random state and the
        device augmentation's."""
        state = {
            "net": {key: value.detach().cpu() for key, value in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "augment_rng": self._device_path.augment_rng.get_state(),
        }
        with atomic_file(Path(directory) / TRAINING_STATE_FILE, "wb") as fh:
            torch.save(state, fh)
        write_json(Path(directory) / CONFIG_FILE, self.member_config())

    def load_training_state(self, directory: Path) -> None:
        directory = Path(directory)
        self.check_checkpoint_config(directory / CONFIG_FILE)
        path = directory / TRAINING_STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training state not found (written each epoch)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self._device_path.augment_rng.set_state(state["augment_rng"])
