"""VGGFace backbones (VGG16, ResNet50, SENet50) as Keras 3 functional models, without their tops.

The layers, their order of application and their names follow keras-vggface 0.6 with every `/`
replaced by `_` (Keras 3 forbids `/` in names), so the published notop weights load by an explicit
name map (`vggface_weights.py`). Weightless layers, which keras-vggface left to Keras's automatic
names, get stable names here (`conv2_1_add`, `conv2_1_out`, `pool1`, ...).

Layer counts (`len(model.layers)`, which counts the InputLayer as Keras 2 did) against the
published notop models: VGG16 19 = 19; ResNet50 173 = 174 - 1 and SENet50 285 = 286 - 1, because
keras-vggface's notop ResNet50/SENet50 end in a weightless `AveragePooling2D((7, 7))` named
`avg_pool` that only fits inputs >= 197 px; these models end at the last stage-5 feature map, and
`pooled_features` adds concat(global max pool, global average pool) on top of it. Weighted layers
and arrays are one-to-one: 26 / 265 / 329 arrays.

Random init: VGG16's convolutions (no BatchNorm) use He-normal weights (He et al. 2015): with
Keras's default Glorot init the 13 ReLU layers shrank the signal until the member predicted a
constant. Each ResNet/SENet bottleneck's last BatchNorm scale (`*_1x1_increase_bn` gamma) starts
at zero, so every residual block starts as the identity (Goyal et al. 2017, "zero-gamma").
Measured on the synthetic data: with ones, the batch-statistics noise of 16 random blocks left no
kinship signal in the training-mode embeddings (linear probe AUC 0.50; 0.57 with zeros) and the
members did not learn. Pretrained weights overwrite it.

Only `keras.layers` / `keras.ops`: the models run on the TensorFlow and torch backends.
"""

from __future__ import annotations

import difflib
import math
import numbers

import keras
import numpy as np
from keras import layers

ARCHS = ("vgg16", "resnet50", "senet50")
STEM_FILTERS = 64  # first conv of every arch at width 1: conv1_1 (VGG16) or conv1_7x7_s2
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (filters, convs) per block
RESNET_STAGES = ((2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3))  # (stage, filters, blocks)
EXPANSION = 4  # a bottleneck's 1x1_increase has EXPANSION x filters channels
SE_REDUCTION = 16
BN_EPSILON = {"resnet50": 1e-3, "senet50": 1e-4}
BN_MOMENTUM = 0.9
"""Moving-statistics momentum (Keras defaults to 0.99, torch to 0.9 in its convention): with a
few hundred fine-tuning steps, 0.99 leaves inference-mode statistics mostly at their init."""
PREPROCESS_VERSION = {"vgg16": 1, "resnet50": 2, "senet50": 2}
MEANS_BGR = {1: (93.5940, 104.7624, 129.1863), 2: (91.4953, 103.8827, 131.0912)}

# Spatial downsampling of each arch as (kernel, stride, padding): what bounds the input size.
_STEM = [(7, 2, "same"), (3, 2, "valid")]  # conv1_7x7_s2, pool1
_RESNET_DOWNSAMPLING = _STEM + [(1, 2, "valid")] * 3  # stride-2 1x1_reduce of stages 3, 4, 5
_DOWNSAMPLING = {
    "vgg16": [(2, 2, "valid")] * len(VGG16_BLOCKS),  # pool1 .. pool5
    "resnet50": _RESNET_DOWNSAMPLING,
    "senet50": _RESNET_DOWNSAMPLING,
}


def check_arch(arch: str) -> str:
    """`arch` if it is one of ARCHS, else a ValueError naming the valid ones."""
    if arch in ARCHS:
        return arch
    hint = difflib.get_close_matches(str(arch), ARCHS, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"unknown VGGFace arch {arch!r}: expected one of {ARCHS}{suggestion}")


def feature_map_size(arch: str, input_size: int) -> int:
    """Side of the last feature map for a square input of `input_size` px (0 if too small)."""
    size = int(input_size)
    for kernel, stride, padding in _DOWNSAMPLING[check_arch(arch)]:
        if padding == "same":
            size = math.ceil(size / stride)
        elif size < kernel:
            return 0
        else:
            size = (size - kernel) // stride + 1
    return size


def min_input_size(arch: str) -> int:
    """Smallest square input (px) the arch accepts: 32 for VGG16, 5 for ResNet50/SENet50."""
    size = 1
    while feature_map_size(arch, size) < 1:
        size += 1
    return size


def scaled_channels(channels: int, width: float) -> int:
    """Channel count of a layer at `width` (width 1 is the published architecture)."""
    return max(1, round(channels * width))


def build_backbone(arch: str, input_size: int = 224, width: float = 1.0) -> keras.Model:
    """The notop backbone of `arch`: images (N, S, S, 3) preprocessed -> last feature map."""
    builders = {"vgg16": build_vgg16, "resnet50": build_resnet50, "senet50": build_senet50}
    return builders[check_arch(arch)](input_size=input_size, width=width)


def build_vgg16(input_size: int = 224, width: float = 1.0) -> keras.Model:
    """VGGFace1 VGG16 without fc6-fc8: conv1_1 .. conv5_3 (ReLU inside the conv), pool1 .. pool5."""
    inputs = _image_input("vgg16", input_size, width)
    x = inputs
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            channels = scaled_channels(filters, width)
            name = f"conv{block}_{conv}"
            x = layers.Conv2D(
                channels, 3, padding="same", activation="relu", name=name,
                kernel_initializer="he_normal",
            )(x)  # fmt: skip
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    return keras.Model(inputs, x, name="vggface_vgg16")


def build_resnet50(input_size: int = 224, width: float = 1.0) -> keras.Model:
    """VGGFace2 ResNet50 without avg_pool/classifier; ends at conv5_3_out."""
    return _build_resnet("resnet50", input_size, width)


def build_senet50(input_size: int = 224, width: float = 1.0) -> keras.Model:
    """VGGFace2 SENet50 (ResNet50 + squeeze-excitation) without avg_pool/classifier."""
    return _build_resnet("senet50", input_size, width)


def pooled_features(backbone: keras.Model, name: str | None = None) -> keras.Model:
    """images -> concat(global max pool, global average pool) of the last feature map: (N, 2C)."""
    inputs = keras.Input(shape=backbone.input_shape[1:], name="image")
    feature_map = backbone(inputs)
    pooled_max = layers.GlobalMaxPooling2D(name="global_max_pool")(feature_map)
    pooled_avg = layers.GlobalAveragePooling2D(name="global_avg_pool")(feature_map)
    features = layers.Concatenate(name="max_avg_features")([pooled_max, pooled_avg])
    return keras.Model(inputs, features, name=name or f"{backbone.name}_pooled")


def preprocess_input(images: np.ndarray, arch: str) -> np.ndarray:
    """VGGFace preprocessing: RGB uint8 (N, H, W, 3) -> BGR float32 minus the arch's BGR means."""
    version = PREPROCESS_VERSION[check_arch(arch)]
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"preprocess_input expects RGB uint8 images of shape (N, H, W, 3), "
            f"got dtype {images.dtype} and shape {images.shape}"
        )
    bgr = images[..., ::-1].astype(np.float32)
    return bgr - np.asarray(MEANS_BGR[version], dtype=np.float32)


def _image_input(arch: str, input_size: int, width: float) -> keras.KerasTensor:
    """The model input after checking `input_size` and `width`."""
    minimum = min_input_size(arch)
    if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer):
        raise ValueError(f"{arch}: input_size must be an int, got {input_size!r}")
    if input_size < minimum:
        raise ValueError(f"{arch}: input_size {input_size} is below the minimum {minimum} px")
    is_number = isinstance(width, numbers.Real) and not isinstance(width, bool)
    if not (is_number and math.isfinite(width) and width > 0):
        raise ValueError(f"{arch}: width must be a positive number, got {width!r}")
    return keras.Input(shape=(int(input_size), int(input_size), 3), name="image")


def _build_resnet(arch: str, input_size: int, width: float) -> keras.Model:
    inputs = _image_input(arch, input_size, width)
    stem = scaled_channels(STEM_FILTERS, width)
    x = _conv_bn(inputs, stem, 7, 2, "conv1_7x7_s2", BN_EPSILON[arch], padding="same")
    x = layers.Activation("relu", name="conv1_7x7_s2_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, filters, blocks in RESNET_STAGES:
        for block in range(1, blocks + 1):
            x = _bottleneck(x, arch, stage, block, scaled_channels(filters, width))
    return keras.Model(inputs, x, name=f"vggface_{arch}")


def _bottleneck(x, arch: str, stage: int, block: int, filters: int):
    """One residual block; block 1 of a stage projects the shortcut (strided from stage 3 on)."""
    prefix, eps = f"conv{stage}_{block}", BN_EPSILON[arch]
    stride = 2 if block == 1 and stage > RESNET_STAGES[0][0] else 1
    channels = filters * EXPANSION
    y = _conv_bn(x, filters, 1, stride, f"{prefix}_1x1_reduce", eps)  # stride on the 1x1_reduce
    y = layers.Activation("relu", name=f"{prefix}_1x1_reduce_relu")(y)
    y = _conv_bn(y, filters, 3, 1, f"{prefix}_3x3", eps, padding="same")
    y = layers.Activation("relu", name=f"{prefix}_3x3_relu")(y)
    # zero-init the branch's last BatchNorm scale: a random-init block starts as the identity
    y = _conv_bn(y, channels, 1, 1, f"{prefix}_1x1_increase", eps, zero_gamma=True)
    if arch == "senet50":
        y = _squeeze_excite(y, prefix)
    shortcut = x
    if block == 1:
        shortcut = _conv_bn(x, channels, 1, stride, f"{prefix}_1x1_proj", eps)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{prefix}_out")(y)


def _conv_bn(
    x, filters: int, kernel: int, stride: int, name: str, eps: float, padding="valid",
    zero_gamma: bool = False,
):  # fmt: skip
    """Conv2D without bias, then BatchNormalization named `<conv name>_bn` (scale initialised to
    zeros with `zero_gamma`)."""
    x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=name)(x)
    return layers.BatchNormalization(
        axis=-1, epsilon=eps, momentum=BN_MOMENTUM, name=f"{name}_bn",
        gamma_initializer="zeros" if zero_gamma else "ones",
    )(x)  # fmt: skip


def _squeeze_excite(x, prefix: str):
    """Channel gates from a bottleneck (1x1_down, ReLU, 1x1_up, sigmoid; convs with bias)."""
    channels = x.shape[-1]
    gate = layers.GlobalAveragePooling2D(name=f"{prefix}_se_pool")(x)
    gate = layers.Reshape((1, 1, channels), name=f"{prefix}_se_reshape")(gate)
    bottleneck = max(1, channels // SE_REDUCTION)
    gate = layers.Conv2D(bottleneck, 1, name=f"{prefix}_1x1_down")(gate)
    gate = layers.Activation("relu", name=f"{prefix}_1x1_down_relu")(gate)
    gate = layers.Conv2D(channels, 1, name=f"{prefix}_1x1_up")(gate)
    gate = layers.Activation("sigmoid", name=f"{prefix}_1x1_up_sigmoid")(gate)
    return layers.Multiply(name=f"{prefix}_se_scale")([x, gate])
