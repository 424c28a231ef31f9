"""siamese_cnn: Koch et al. (2015) conv net trained from scratch, with the shared pair head.

Its FC-4096 sigmoid features (4096·width units) feed the head; Koch's weighted-L1 head is the
`head.features: [abs_diff]` setting. No pretrained weights exist for it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kinship import device_data
from kinship.members import koch
from kinship.members.torch_member import TorchMember


class SiameseCnnMember(TorchMember):
    def make_backbone(self) -> nn.Module:
        return koch.KochBackbone(input_size=self.params.input_size, width=self.params.width)

    def init_backbone(self, backbone: nn.Module, seed: int) -> None:
        backbone.reset_parameters(seed)  # the paper's init, from its own seeded generator

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        return koch.preprocess(images)

    def device_input(self, images: torch.Tensor) -> torch.Tensor:
        return device_data.koch_input(images)
