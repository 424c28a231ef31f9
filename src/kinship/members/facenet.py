"""facenet: facenet-pytorch's InceptionResnetV1 (512-d embedding before L2 norm) + the pair head.

Preprocessing is facenet-pytorch's own `(x − 127.5) / 128`. Pretrained weights (vggface2 or
casia-webface) load from `weights` at build; otherwise the net trains from random init. The
architecture has no width knob, and its BatchNorm needs at least 2 images per training batch
(one pair gives 2, as both sides go through the backbone together).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinship import device_data
from kinship.members import facenet_backbone as fb
from kinship.members.torch_member import TorchMember


class FacenetMember(TorchMember):
    def make_backbone(self) -> nn.Module:
        return fb.FacenetBackbone(input_size=self.params.input_size, width=self.params.width)

    def load_pretrained(self, backbone: nn.Module, path: Path) -> None:
        fb.load_facenet_weights(backbone, path)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        return fb.preprocess(images)

    def device_input(self, images: torch.Tensor) -> torch.Tensor:
        return device_data.facenet_input(images)
