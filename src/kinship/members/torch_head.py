"""The pair head shared by the torch members: two embeddings → one kinship logit.

Pair features (Kaggle FIW 4th/6th place), chosen by `head.features` and concatenated in the order
given: `sq_diff` (x1−x2)², `sq_sub` x1²−x2², `prod` x1·x2, `abs_diff` |x1−x2| (D values each) and
`cosine` (one value), computed on embeddings scaled to unit root-mean-square when
`head.normalize` is set. Then `head.hidden` dense layers (ReLU, dropout) and a 1-unit logit;
the loss is BCE on the logit and probabilities are its sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kinship.members.params import HeadParams

RMS_EPS = 1e-6

FEATURES = {  # one entry per name in kinship.members.params.PAIR_FEATURES (a test checks it)
    "sq_diff": lambda a, b: (a - b) ** 2,
    "sq_sub": lambda a, b: a**2 - b**2,
    "prod": lambda a, b: a * b,
    "abs_diff": lambda a, b: (a - b).abs(),
    "cosine": lambda a, b: F.cosine_similarity(a, b, dim=1).unsqueeze(1),
}


def feature_width(features: list[str], embedding_dim: int) -> int:
    """Length of the concatenated pair-feature vector."""
    return sum(1 if name == "cosine" else embedding_dim for name in features)


def pair_features(e1: torch.Tensor, e2: torch.Tensor, features: list[str]) -> torch.Tensor:
    """Embeddings (N, D) × 2 → the named features concatenated, (N, feature_width)."""
    if e1.shape != e2.shape or e1.ndim != 2:
        raise ValueError(f"pair head expects two (N, D) embeddings, got {e1.shape} and {e2.shape}")
    return torch.cat([FEATURES[name](e1, e2) for name in features], dim=1)


class PairHead(nn.Module):
    """Pair features → dense layers (ReLU, dropout) → logit (N,)."""

    def __init__(self, embedding_dim: int, head: HeadParams):
        super().__init__()
        self.features = list(head.features)
        self.normalize = head.normalize
        layers: list[nn.Module] = []
        width = feature_width(self.features, embedding_dim)
        for units in head.hidden:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(head.dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def reset_parameters(self) -> None:
        """Fresh default (Kaiming-uniform) init, drawn from torch's global generator."""
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            e1, e2 = rms_normalize(e1), rms_normalize(e2)
        return self.mlp(pair_features(e1, e2, self.features)).squeeze(1)


def rms_normalize(e: torch.Tensor) -> torch.Tensor:
    """Each row scaled to unit root-mean-square."""
    return e / torch.sqrt((e.float() ** 2).mean(dim=1, keepdim=True) + RMS_EPS).to(e.dtype)


def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits, computed in float32."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits.float())
