"""The explicit HDF5 loader of keras-vggface's notop weights, on fixtures written from the spec.

The spec (tests/vggface_layout/<arch>.json) was derived by running keras-vggface 0.6's own source
(see derive_spec.py), not from our Keras 3 models, so loader and fixture do not share one guess.
Keras (and so TensorFlow) is imported inside fixtures, not at collection time: importing TensorFlow
before torchvision in one process crashes, and other test modules import torchvision.
"""

from __future__ import annotations

import copy
import json
import math
import os
import runpy
from pathlib import Path

import h5py
import numpy as np
import pytest

# Keras 3.15 turns tensors into numpy with np.array(tensor), which numpy 2.4 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy")
LAYOUT_DIR = Path(__file__).parent / "vggface_layout"
ARCHS = ("vgg16", "resnet50", "senet50")
# Published notop totals (Keras 2): layers incl. Input/activation/pooling, arrays, params
PUBLISHED = {
    "vgg16": (19, 26, 14_714_688),
    "resnet50": (174, 265, 23_561_152),
    "senet50": (286, 329, 26_092_144),
}
SMALL_INPUT = 32  # the smallest input all three archs accept; weights do not depend on it


def load_spec(arch: str) -> list[dict]:
    """Layers of keras-vggface 0.6's notop `arch` in Keras 2 order (see derive_spec.py)."""
    return json.loads((LAYOUT_DIR / f"{arch}.json").read_text())["layers"]


def write_keras2_weights(path: Path, layers: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Write `layers` as Keras 2's save_weights did (h5py 2 era); return {weight name: array}.

    Root attribute `layer_names` (fixed-length bytes, every layer, weightless ones too); one group
    per layer, created by its name (a `/` nests groups), with attribute `weight_names`; each array
    stored under its layer's group by its full weight name (which nests groups again).
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer["name"].encode() for layer in layers], dtype="S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.6"
        for layer in layers:
            group = f.create_group(layer["name"])
            names = [name.encode() for name, _ in layer["weights"]]
            group.attrs["weight_names"] = np.array(names, dtype="S") if names else []
            for name, shape in layer["weights"]:
                arrays[name] = rng.standard_normal(shape, dtype=np.float32)
                group.create_dataset(name, data=arrays[name])
    return arrays


def renamed_layer(layers: list[dict], old: str, new: str) -> list[dict]:
    layers = copy.deepcopy(layers)
    layer = next(layer for layer in layers if layer["name"] == old)
    layer["name"] = new
    layer["weights"] = [[name.replace(old, new, 1), shape] for name, shape in layer["weights"]]
    return layers


def edited_weight(layers: list[dict], weight: str, name=None, shape=None, drop=False) -> list:
    """A copy of `layers` with one array renamed, reshaped or dropped."""
    layers = copy.deepcopy(layers)
    for layer in layers:
        entries = layer["weights"]
        for index, (old_name, old_shape) in enumerate(entries):
            if old_name == weight:
                if drop:
                    del entries[index]
                else:
                    entries[index] = [name or old_name, shape or old_shape]
                return layers
    raise KeyError(weight)


def value(variable) -> np.ndarray:
    """A Keras variable as numpy, on any backend (`variable.numpy()` warns under numpy 2)."""
    import keras

    return keras.ops.convert_to_numpy(variable.value)


def model_array(model, weight_name: str) -> np.ndarray:
    """The model variable that file array `weight_name` (e.g. `conv1/7x7_s2/bn/gamma:0`) maps to."""
    layer_path, kind = weight_name.removesuffix(":0").rsplit("/", 1)
    layer = model.get_layer(layer_path.replace("/", "_"))
    return next(value(v) for v in layer.weights if v.name == kind)


# -- the spec itself ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_matches_published_totals(arch):
    layers = load_spec(arch)
    shapes = [shape for layer in layers for _, shape in layer["weights"]]
    assert (len(layers), len(shapes), sum(math.prod(s) for s in shapes)) == PUBLISHED[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_names_follow_keras2(arch):
    layers = load_spec(arch)
    assert len({layer["name"] for layer in layers}) == len(layers)
    for layer in layers:
        for name, _ in layer["weights"]:
            assert name.startswith(layer["name"] + "/") and name.endswith(":0")


@pytest.mark.skipif(
    "KERAS_VGGFACE_MODELS_PY" not in os.environ,
    reason="set KERAS_VGGFACE_MODELS_PY to keras-vggface 0.6's models.py (see derive_spec.py)",
)
def test_spec_is_reproducible(tmp_path):
    derive = runpy.run_path(str(LAYOUT_DIR / "derive_spec.py"))
    derive["main"]([os.environ["KERAS_VGGFACE_MODELS_PY"], "--out", str(tmp_path)])
    for arch in ARCHS:
        assert (tmp_path / f"{arch}.json").read_text() == (LAYOUT_DIR / f"{arch}.json").read_text()


def test_fixture_writer_nests_slashed_names(tmp_path):
    """How h5py stores Keras 2's `conv1/7x7_s2/bn` and its gamma: groups nested at every `/`."""
    path = tmp_path / "w.h5"
    write_keras2_weights(path, load_spec("resnet50")[:4])
    with h5py.File(path, "r") as f:
        bn = f["conv1"]["7x7_s2"]["bn"]
        assert bn.attrs["weight_names"][0] == b"conv1/7x7_s2/bn/gamma:0"
        assert bn["conv1"]["7x7_s2"]["bn"]["gamma:0"].shape == (64,)
        assert list(f["activation_1"].attrs["weight_names"]) == []


# -- loading --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vggface():
    from kinship.members import vggface_arch, vggface_weights

    return vggface_arch, vggface_weights


@pytest.fixture(scope="module")
def full_width(vggface):
    arch_module, _ = vggface
    models = {}

    def get(arch):
        if arch not in models:
            models[arch] = arch_module.build_backbone(arch, SMALL_INPUT, width=1.0)
        return models[arch]

    return get


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggface") / "rcmalli_vggface_tf_notop_resnet50.h5"
    return path, write_keras2_weights(path, load_spec("resnet50"), seed=1)


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_every_array_where_expected(vggface, full_width, tmp_path, arch):
    _, weights = vggface
    model = full_width(arch)
    path = tmp_path / f"rcmalli_vggface_tf_notop_{arch}.h5"
    arrays = write_keras2_weights(path, load_spec(arch), seed=2)
    weights.load_vggface_weights(model, path, arch)
    for name, array in arrays.items():
        np.testing.assert_array_equal(model_array(model, name), array, err_msg=name)


def test_spot_checks_by_value(vggface, full_width, resnet_file):
    _, weights = vggface
    model = full_width("resnet50")
    path, arrays = resnet_file
    weights.load_vggface_weights(model, path, "resnet50")
    bn = model.get_layer("conv3_4_1x1_increase_bn")
    variance = arrays["conv3_4_1x1_increase/bn/moving_variance:0"]
    np.testing.assert_array_equal(value(bn.moving_variance), variance)
    kernel = arrays["conv1/7x7_s2/kernel:0"]
    np.testing.assert_array_equal(value(model.get_layer("conv1_7x7_s2").kernel), kernel)
    proj = arrays["conv4_1_1x1_proj/kernel:0"]  # proj sits next to 1x1_increase in the file
    np.testing.assert_array_equal(value(model.get_layer("conv4_1_1x1_proj").kernel), proj)


def test_senet_squeeze_excite_weights(vggface, full_width, tmp_path):
    _, weights = vggface
    model = full_width("senet50")
    path = tmp_path / "senet50.h5"
    arrays = write_keras2_weights(path, load_spec("senet50"), seed=3)
    weights.load_vggface_weights(model, path, "senet50")
    up = model.get_layer("conv4_2_1x1_up")
    np.testing.assert_array_equal(value(up.bias), arrays["conv4_2_1x1_up/bias:0"])
    np.testing.assert_array_equal(value(up.kernel), arrays["conv4_2_1x1_up/kernel:0"])


BROKEN = {
    "renamed layer": (
        lambda layers: renamed_layer(layers, "conv3_2_3x3/bn", "conv3_2_3x3/batchnorm"),
        "conv3_2_3x3/bn",
    ),
    "renamed array": (
        lambda layers: edited_weight(
            layers, "conv4_1_1x1_proj/kernel:0", name="conv4_1_1x1_proj/weights:0"
        ),
        "conv4_1_1x1_proj/weights:0",
    ),
    "missing array": (
        lambda layers: edited_weight(
            layers, "conv2_3_1x1_increase/bn/moving_variance:0", drop=True
        ),
        "conv2_3_1x1_increase/bn/moving_variance",
    ),
    "mis-shaped array": (
        lambda layers: edited_weight(layers, "conv5_1_3x3/kernel:0", shape=[3, 3, 512, 256]),
        "conv5_1_3x3/kernel:0",
    ),
    "extra layer": (
        lambda layers: layers + [{"name": "fc6", "weights": [["fc6/kernel:0", [8, 4]]]}],
        "fc6",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_file_fails_naming_the_array(vggface, full_width, tmp_path, case):
    _, weights = vggface
    model = full_width("resnet50")
    break_layers, array_name = BROKEN[case]
    path = tmp_path / "broken.h5"
    write_keras2_weights(path, break_layers(load_spec("resnet50")), seed=4)
    before = value(model.get_layer("conv1_7x7_s2").kernel).copy()
    with pytest.raises(ValueError, match="does not match") as error:
        weights.load_vggface_weights(model, path, "resnet50")
    assert array_name in str(error.value)
    assert str(path) in str(error.value)
    # nothing is assigned unless the whole file matches
    np.testing.assert_array_equal(value(model.get_layer("conv1_7x7_s2").kernel), before)


def test_layer_order_in_file_does_not_matter(vggface, full_width, tmp_path):
    _, weights = vggface
    model = full_width("vgg16")
    path = tmp_path / "reversed.h5"
    arrays = write_keras2_weights(path, load_spec("vgg16")[::-1], seed=5)
    weights.load_vggface_weights(model, path, "vgg16")
    kernel = value(model.get_layer("conv5_3").kernel)
    np.testing.assert_array_equal(kernel, arrays["conv5_3/kernel:0"])


def test_chunked_and_variable_length_name_attributes(vggface, full_width, tmp_path):
    """Keras 2 splits long name lists into `layer_names0`, `layer_names1`...; h5py 3 writes str."""
    _, weights = vggface
    model = full_width("vgg16")
    path = tmp_path / "chunked.h5"
    arrays = write_keras2_weights(path, load_spec("vgg16"), seed=6)
    with h5py.File(path, "a") as f:
        names = [name.decode() for name in f.attrs["layer_names"]]
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:7], names[7:]
    weights.load_vggface_weights(model, path, "vgg16")
    np.testing.assert_array_equal(value(model.get_layer("conv1_1").bias), arrays["conv1_1/bias:0"])


def test_loads_into_a_model_wrapping_the_backbone(vggface, full_width, tmp_path):
    arch_module, weights = vggface
    backbone = full_width("vgg16")
    path = tmp_path / "vgg16.h5"
    arrays = write_keras2_weights(path, load_spec("vgg16"), seed=7)
    weights.load_vggface_weights(arch_module.pooled_features(backbone), path, "vgg16")
    np.testing.assert_array_equal(
        value(backbone.get_layer("conv2_2").kernel), arrays["conv2_2/kernel:0"]
    )


def test_refuses_width_other_than_one(vggface, tmp_path):
    arch_module, weights = vggface
    model = arch_module.build_backbone("vgg16", SMALL_INPUT, width=0.25)
    path = tmp_path / "vgg16.h5"
    write_keras2_weights(path, load_spec("vgg16")[:2])
    with pytest.raises(ValueError, match=r"width=1.*width=0\.25"):
        weights.load_vggface_weights(model, path, "vgg16")


def test_refuses_another_archs_model(vggface, full_width, resnet_file):
    _, weights = vggface
    path, _ = resnet_file
    with pytest.raises(ValueError, match="senet50"):
        weights.load_vggface_weights(full_width("resnet50"), path, "senet50")


def test_missing_file_says_where_to_get_it(vggface, full_width, tmp_path):
    _, weights = vggface
    path = tmp_path / "weights" / "rcmalli_vggface_tf_notop_resnet50.h5"
    with pytest.raises(FileNotFoundError) as error:
        weights.load_vggface_weights(full_width("resnet50"), path, "resnet50")
    message = str(error.value)
    for needle in (str(path), "v2.0", "rcmalli_vggface_tf_notop_resnet50.h5", "params.yaml"):
        assert needle in message
    assert "dvc add" in message and "~/.keras/models/vggface/" in message


def test_not_a_keras2_file(vggface, full_width, tmp_path):
    _, weights = vggface
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="layer_names"):
        weights.load_vggface_weights(full_width("vgg16"), path, "vgg16")
    path.write_text("<html>Not Found</html>")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        weights.load_vggface_weights(full_width("vgg16"), path, "vgg16")


def test_weight_layout_follows_the_spec_names(vggface):
    """The loader's own map covers exactly the weighted layers of the spec, kinds in file order."""
    _, weights = vggface
    for arch in ARCHS:
        spec = {
            layer["name"]: tuple(
                n.removesuffix(":0").rsplit("/", 1)[1] for n, _ in layer["weights"]
            )
            for layer in load_spec(arch)
            if layer["weights"]
        }
        layout = {file_name: kinds for file_name, _, kinds in weights.weight_layout(arch)}
        assert layout == spec
