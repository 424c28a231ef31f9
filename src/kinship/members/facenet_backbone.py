"""FaceNet backbone: facenet-pytorch's InceptionResnetV1, giving its 512-d embedding before L2 norm.

facenet-pytorch's forward ends last_linear → last_bn → (logits | F.normalize). The backbone keeps
the library's own forward and swaps the per-instance `logits` layer for an identity, so it returns
the last_bn output. Weights come only from a file the user controls (`load_facenet_weights`), never
from `pretrained=` (which downloads). The architecture has no width knob: width must be 1.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinship.members.base import check_image_batch

INPUT_SIZE = 160  # what the published weights were trained at
MIN_INPUT_SIZE = 75  # smallest input whose last map is ≥ 1×1 (measured: 74 px fails in mixed_7a)
EMBEDDING_DIM = 512
RELEASE_URL = "https://github.com/timesler/facenet-pytorch/releases/tag/v2.2.9"
WEIGHT_FILES = {
    "vggface2": "20180402-114759-vggface2.pt",  # logits: 8,631 classes
    "casia-webface": "20180408-102900-casia-webface.pt",  # logits: 10,575 classes
}
CLASSIFIER_KEYS = ("logits.weight", "logits.bias")


def min_input_size() -> int:
    """The smallest square input (px) InceptionResnetV1 accepts (75)."""
    return MIN_INPUT_SIZE


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) → float32 `(x − 127.5) / 128`, NCHW (facenet-pytorch's)."""
    check_image_batch(images, "FaceNet preprocess")
    out = images.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    out -= 127.5
    out /= 128.0
    return out


def _inception_resnet_v1(dropout_prob: float) -> nn.Module:
    """InceptionResnetV1 whose forward returns last_bn's output (no classifier, no L2 norm)."""
    from facenet_pytorch import InceptionResnetV1  # loads torchvision.ops: keep it out of imports

    net = InceptionResnetV1(classify=True, num_classes=1, dropout_prob=dropout_prob)
    net.logits = nn.Identity()  # classify=True skips F.normalize; identity skips the classifier
    return net


class FacenetBackbone(nn.Module):
    """InceptionResnetV1: preprocessed images (N, 3, S, S) → embeddings (N, 512), not unit-norm."""

    def __init__(self, input_size: int = INPUT_SIZE, width: float = 1.0, dropout_prob: float = 0.6):
        super().__init__()
        if width != 1:
            raise ValueError(
                f"FaceNet width must be 1 (InceptionResnetV1 has no width knob), got {width!r}"
            )
        if not isinstance(input_size, int) or input_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"FaceNet input_size must be an int ≥ {MIN_INPUT_SIZE}, got {input_size!r}"
            )
        self.input_size = input_size
        self.width = 1.0
        self.dropout_prob = float(dropout_prob)
        self.out_features = EMBEDDING_DIM
        self.net = _inception_resnet_v1(self.dropout_prob)

    @property
    def config(self) -> dict:
        """The arguments that rebuild this backbone (store them with every checkpoint)."""
        return {
            "input_size": self.input_size,
            "width": self.width,
            "dropout_prob": self.dropout_prob,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (3, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            want = ", ".join(map(str, expected))
            raise ValueError(f"FacenetBackbone expects input (N, {want}), got {tuple(x.shape)}")
        return self.net(x)


def _missing_weights_message(path: Path) -> str:
    names = " or ".join(WEIGHT_FILES.values())
    return (
        f"FaceNet weights not found at {path}. Download {names} from facenet-pytorch's GitHub "
        f"releases ({RELEASE_URL}), put the file at {path} (the path set in params.yaml for this "
        f"member) and track it with `dvc add {path}`."
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(_missing_weights_message(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path}: not a readable torch state dict ({err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _mismatches(state: dict, expected: dict) -> list[str]:
    """Every missing, unexpected or mis-shaped key, as readable lines."""
    problems = [f"unexpected key {k!r}" for k in state if k not in expected]
    for key, ref in expected.items():
        if key not in state:
            # BatchNorm counters: files saved before torch 0.4.1 lack them; torch fills them in.
            if not key.endswith(".num_batches_tracked"):
                problems.append(f"missing key {key!r} of shape {tuple(ref.shape)}")
        elif state[key].shape != ref.shape:
            got, want = tuple(state[key].shape), tuple(ref.shape)
            problems.append(f"key {key!r} has shape {got}, the model expects {want}")
    return problems


def load_facenet_weights(model: FacenetBackbone, path: str | Path) -> FacenetBackbone:
    """Load a facenet-pytorch state dict (vggface2 / casia-webface) strictly, minus its logits."""
    path = Path(path)
    if not isinstance(model, FacenetBackbone) or model.width != 1:
        raise ValueError(f"{path}: FaceNet weights load only into FacenetBackbone at width 1")
    state = _read_state_dict(path)
    kept = OrderedDict((k, v) for k, v in state.items() if k not in CLASSIFIER_KEYS)
    if hasattr(state, "_metadata"):
        kept._metadata = state._metadata  # module versions: torch upgrades old BatchNorm entries
    problems = _mismatches(kept, model.net.state_dict())
    if problems:
        raise ValueError(f"{path} does not fit InceptionResnetV1: " + "; ".join(problems))
    model.net.load_state_dict(kept, strict=False)  # every key checked above, counters aside
    return model
