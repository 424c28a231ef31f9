"""VGGFace backbones: structure against keras-vggface 0.6's spec, sizes, pooling, preprocessing and
the other Keras backend (in a subprocess). Tiny widths keep every build fast.

Keras (and so TensorFlow) is imported inside fixtures, not at collection time: importing TensorFlow
before torchvision in one process crashes, and other test modules import torchvision.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

# Keras 3.15 turns tensors into numpy with np.array(tensor), which numpy 2.4 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy")
LAYOUT_DIR = Path(__file__).parent / "vggface_layout"
ARCHS = ("vgg16", "resnet50", "senet50")
TINY = 0.125  # width for fast random-init builds
SIZE = 37  # odd on purpose: "same" padding with stride 2 is asymmetric there
# VGGFace means (B, G, R): v1 for VGG16, v2 for ResNet50/SENet50 (keras-vggface's preprocess_input)
MEANS_V1 = (93.5940, 104.7624, 129.1863)
MEANS_V2 = (91.4953, 103.8827, 131.0912)


@pytest.fixture(scope="module")
def va():
    from kinship.members import vggface_arch

    return vggface_arch


@pytest.fixture(scope="module")
def tiny(va):
    """Tiny-width backbones at SIZE px, built once per arch."""
    models = {}

    def get(arch):
        if arch not in models:
            models[arch] = va.build_backbone(arch, SIZE, width=TINY)
        return models[arch]

    return get


def load_spec(arch: str) -> list[dict]:
    return json.loads((LAYOUT_DIR / f"{arch}.json").read_text())["layers"]


# -- structure against the spec derived from keras-vggface 0.6 ------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_weighted_layers_match_the_spec(tiny, arch):
    """Same weighted layers (`/` -> `_`), kernels, strides, padding, bias, activation, BN eps."""
    model = tiny(arch)
    spec = [layer for layer in load_spec(arch) if layer["weights"]]
    ours = [layer for layer in model.layers if layer.weights]
    assert sorted(layer.name for layer in ours) == sorted(s["name"].replace("/", "_") for s in spec)
    for expected in spec:
        layer = model.get_layer(expected["name"].replace("/", "_"))
        assert type(layer).__name__ == expected["class"], layer.name
        assert _config_of(layer, expected["config"]) == expected["config"], layer.name


def _config_of(layer, spec_config: dict) -> dict:
    """Our layer's configuration in the spec's terms (Keras 2 wrote activation=None for linear)."""
    config = layer.get_config()
    if "epsilon" in spec_config:
        axis = 3 if config["axis"] == -1 else config["axis"]  # the channel axis of NHWC either way
        return {"axis": axis, "epsilon": config["epsilon"]}
    return {
        "kernel_size": list(config["kernel_size"]),
        "strides": list(config["strides"]),
        "padding": config["padding"],
        "use_bias": config["use_bias"],
        "activation": None if config["activation"] == "linear" else config["activation"],
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_counts_map_to_the_published_ones(tiny, arch):
    """Every layer kind as often as in keras-vggface, less its weightless 7x7 avg_pool."""
    spec_classes = Counter(layer["class"] for layer in load_spec(arch))
    spec_classes -= Counter({"AveragePooling2D": 1}) if arch != "vgg16" else Counter()
    assert Counter(type(layer).__name__ for layer in tiny(arch).layers) == spec_classes
    assert len(tiny(arch).weights) == sum(len(layer["weights"]) for layer in load_spec(arch))


def test_layer_name_spot_checks(tiny):
    names = {arch: {layer.name for layer in tiny(arch).layers} for arch in ARCHS}
    assert {f"conv{b}_{c}" for b in (1, 2) for c in (1, 2)} <= names["vgg16"]
    assert {"conv3_3", "conv4_3", "conv5_3", "pool5"} <= names["vgg16"]
    resnet = {"conv1_7x7_s2", "conv1_7x7_s2_bn", "conv2_1_1x1_reduce", "conv2_1_1x1_reduce_bn"}
    resnet |= {"conv2_1_1x1_proj", "conv4_6_1x1_increase_bn", "conv5_3_3x3"}
    assert resnet <= names["resnet50"] and resnet <= names["senet50"]
    assert {"conv3_1_1x1_down", "conv3_1_1x1_up", "conv5_3_1x1_up"} <= names["senet50"]
    assert not any("1x1_down" in name for name in names["resnet50"])
    assert "conv3_2_1x1_proj" not in names["resnet50"]  # only block 1 of a stage projects


@pytest.mark.parametrize("arch", ARCHS)
def test_names_are_stable_across_builds(va, tiny, arch):
    again = va.build_backbone(arch, SIZE, width=TINY)
    assert [layer.name for layer in again.layers] == [layer.name for layer in tiny(arch).layers]


def test_width_scales_channels(va, tiny):
    assert tiny("vgg16").get_layer("conv5_3").filters == va.scaled_channels(512, TINY)
    increase = tiny("resnet50").get_layer("conv5_3_1x1_increase")
    assert increase.filters == 4 * va.scaled_channels(512, TINY)
    assert tiny("senet50").get_layer("conv5_3_1x1_down").filters == increase.filters // 16


# -- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_min_input_size_is_the_smallest_that_builds(va, arch):
    smallest = va.min_input_size(arch)
    model = va.build_backbone(arch, smallest, width=TINY)
    assert model.output.shape[1:3] == (1, 1)
    assert va.feature_map_size(arch, smallest - 1) == 0
    with pytest.raises(ValueError, match=f"minimum {smallest}"):
        va.build_backbone(arch, smallest - 1, width=TINY)


@pytest.mark.parametrize("arch", ARCHS)
def test_feature_map_size_matches_the_model(va, tiny, arch):
    side = va.feature_map_size(arch, SIZE)
    assert tiny(arch).output.shape[1:3] == (side, side)
    assert va.feature_map_size(arch, 224) == 7  # the published 7x7 last map at 224 px


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "resnet"}, "did you mean 'resnet50'"),
        ({"arch": "vgg16", "width": 0.0}, "width"),
        ({"arch": "vgg16", "width": -1.0}, "width"),
        ({"arch": "vgg16", "width": math.nan}, "width"),
        ({"arch": "vgg16", "input_size": 64.0}, "input_size"),
    ],
)
def test_invalid_arguments(va, kwargs, message):
    with pytest.raises(ValueError, match=message):
        va.build_backbone(**({"input_size": 64} | kwargs))


# -- pooled features and preprocessing ------------------------------------------------------------


def _run(model, images: np.ndarray) -> np.ndarray:
    """Inference without compiling a predict function (much faster for one small batch)."""
    import keras

    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.mark.parametrize("arch", ARCHS)
def test_pooled_features_are_max_then_mean(va, tiny, arch):
    backbone = tiny(arch)
    images = np.random.default_rng(0).normal(0, 50, (2, SIZE, SIZE, 3)).astype(np.float32)
    feature_map = _run(backbone, images)
    pooled = _run(va.pooled_features(backbone), images)
    channels = feature_map.shape[-1]
    assert pooled.shape == (2, 2 * channels)
    np.testing.assert_allclose(pooled[:, :channels], feature_map.max(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(pooled[:, channels:], feature_map.mean(axis=(1, 2)), rtol=1e-4)


@pytest.mark.parametrize(
    "arch, means", [("vgg16", MEANS_V1), ("resnet50", MEANS_V2), ("senet50", MEANS_V2)]
)
def test_preprocessing_flips_to_bgr_and_subtracts_means(va, arch, means):
    images = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 10, 20, 250  # R, G, B
    out = va.preprocess_input(images, arch)
    assert out.dtype == np.float32 and out.shape == images.shape
    expected = np.array([250, 20, 10], dtype=np.float32) - np.array(means, dtype=np.float32)
    np.testing.assert_array_equal(out[1, 2, 3], expected)
    assert images[0, 0, 0, 0] == 10  # input untouched


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((1, 8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 8, 8, 1), np.uint8),
    ],
)
def test_preprocessing_rejects_other_inputs(va, images):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        va.preprocess_input(images, "vgg16")


# -- the other backend ----------------------------------------------------------------------------

OTHER_BACKEND_SCRIPT = """
import sys
from pathlib import Path
import keras, numpy as np
from kinship.members import vggface_arch as va
work, size, width = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
images = np.load(work / "images.npy")
for arch in va.ARCHS:
    model = va.pooled_features(va.build_backbone(arch, size, width=width))
    model.load_weights(work / f"{arch}.weights.h5")
    features = keras.ops.convert_to_numpy(model(images, training=False))
    np.save(work / f"{arch}.{keras.backend.backend()}.npy", features)
"""


def _randomise_batchnorm(model, rng) -> None:
    """Non-trivial BN statistics and biases, so the comparison covers them."""
    for variable in model.weights:
        if variable.name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
        elif variable.name in ("beta", "moving_mean", "bias"):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype(np.float32))


def test_other_backend_builds_and_agrees(va, tiny, tmp_path):
    """TensorFlow and torch give the same pooled features for the same weights (odd input size)."""
    import keras

    here = keras.backend.backend()
    other = "torch" if here == "tensorflow" else "tensorflow"
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    expected = {}
    for arch in ARCHS:
        model = va.pooled_features(va.build_backbone(arch, SIZE, width=TINY))
        _randomise_batchnorm(model, rng)
        model.save_weights(tmp_path / f"{arch}.weights.h5")
        expected[arch] = _run(model, images)
    command = [sys.executable, "-c", OTHER_BACKEND_SCRIPT, str(tmp_path), str(SIZE), str(TINY)]
    env = os.environ | {"KERAS_BACKEND": other, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for arch in ARCHS:
        theirs = np.load(tmp_path / f"{arch}.{other}.npy")
        scale = np.abs(expected[arch]).max()
        np.testing.assert_allclose(theirs, expected[arch], rtol=1e-4, atol=1e-4 * scale)
