"""Load keras-vggface's published notop weights into the backbones of `vggface_arch`.

The files (`rcmalli_vggface_tf_notop_{vgg16,resnet50,senet50}.h5`) are Keras 2 HDF5 weight files:
the root attribute `layer_names` lists every layer, and the group of each layer has an attribute
`weight_names` naming its arrays, stored under that group by their full names. A `/` in a name is
an HDF5 path separator, so `conv1/7x7_s2/bn` is the group `bn` inside the group `conv1/7x7_s2`, and
its gamma is the dataset `conv1/7x7_s2/bn/conv1/7x7_s2/bn/gamma:0`; reading through the attributes
(as Keras 2 did) resolves those paths. Keras 3 forbids `/` in layer names and its by-name loading
skips what it cannot match, so this loader maps every file layer to a model layer explicitly and
refuses, naming the array, anything missing, unexpected or mis-shaped. Nothing is assigned unless
the whole file matches.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import keras
import numpy as np

from kinship.members.vggface_arch import (
    RESNET_STAGES,
    STEM_FILTERS,
    VGG16_BLOCKS,
    check_arch,
)

RELEASE_URL = "https://github.com/rcmalli/keras-vggface/releases/tag/v2.0"
KERAS_VGGFACE_CACHE = "~/.keras/models/vggface/"
CONV_WEIGHTS = ("kernel",)
CONV_BIAS_WEIGHTS = ("kernel", "bias")
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
_MAX_LISTED = 8  # problems listed in one error message


def weights_file_name(arch: str) -> str:
    """File name of the published notop weights of `arch`."""
    return f"rcmalli_vggface_tf_notop_{check_arch(arch)}.h5"


def weight_layout(arch: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(layer name in the file, layer name in our model, its weights) for every weighted layer."""
    if check_arch(arch) == "vgg16":
        blocks = enumerate(VGG16_BLOCKS, start=1)
        names = [f"conv{b}_{c}" for b, (_, convs) in blocks for c in range(1, convs + 1)]
        return [(name, name, CONV_BIAS_WEIGHTS) for name in names]
    layout = _conv_bn_layout("conv1/7x7_s2")
    for stage, _, blocks in RESNET_STAGES:
        for block in range(1, blocks + 1):
            layout += _block_layout(arch, f"conv{stage}_{block}", projection=block == 1)
    return layout


def load_vggface_weights(model: keras.Model, path: str | Path, arch: str) -> None:
    """Assign the published notop weights of `arch` in `path` to `model` (a width-1 backbone)."""
    path = Path(path)
    arch = check_arch(arch)
    if not path.is_file():
        raise FileNotFoundError(_missing_file_message(path, arch))
    backbone = _find_backbone(model, arch)
    _check_full_width(backbone, arch)
    layout = weight_layout(arch)
    _check_model_matches(backbone, layout, arch)
    with _open_hdf5(path) as f:
        stored = _stored_layers(_weights_root(f), path)
        values = _matched_values(stored, layout, backbone, path)
    for layer_name, arrays in values.items():
        for variable in backbone.get_layer(layer_name).weights:
            variable.assign(arrays[variable.name])


def _conv_bn_layout(conv: str) -> list[tuple[str, str, tuple[str, ...]]]:
    bn = f"{conv}/bn"
    return [(conv, _model_name(conv), CONV_WEIGHTS), (bn, _model_name(bn), BN_WEIGHTS)]


def _block_layout(arch: str, prefix: str, projection: bool) -> list[tuple[str, str, tuple]]:
    layout = []
    for conv in ("1x1_reduce", "3x3", "1x1_increase"):
        layout += _conv_bn_layout(f"{prefix}_{conv}")
    if arch == "senet50":
        se = [f"{prefix}_1x1_down", f"{prefix}_1x1_up"]
        layout += [(name, _model_name(name), CONV_BIAS_WEIGHTS) for name in se]
    if projection:
        layout += _conv_bn_layout(f"{prefix}_1x1_proj")
    return layout


def _model_name(file_name: str) -> str:
    return file_name.replace("/", "_")


def _missing_file_message(path: Path, arch: str) -> str:
    name = weights_file_name(arch)
    return (
        f"VGGFace {arch} weights not found at {path}. Download {name} from the keras-vggface "
        f"GitHub release v2.0 ({RELEASE_URL}; keras-vggface itself caches it in "
        f"{KERAS_VGGFACE_CACHE}), put it at the weights path that params.yaml names for this "
        f"member ({path}) and track it with `dvc add {path}`."
    )


def _find_backbone(model: keras.Model, arch: str) -> keras.Model:
    """`model` itself, or the backbone nested in it (e.g. by `pooled_features`)."""
    first = weight_layout(arch)[0][1]
    candidates = [model] + [layer for layer in model.layers if isinstance(layer, keras.Model)]
    for candidate in candidates:
        if any(layer.name == first for layer in candidate.layers):
            return candidate
    raise ValueError(
        f"model {model.name!r} has no layer {first!r}: pass the {arch} backbone built by "
        f"kinship.members.vggface_arch (or a model that contains it)"
    )


def _check_full_width(backbone: keras.Model, arch: str) -> None:
    stem = backbone.get_layer(weight_layout(arch)[0][1])
    if stem.filters != STEM_FILTERS:
        raise ValueError(
            f"pretrained {arch} weights need width=1, but model {backbone.name!r} has "
            f"{stem.filters} filters in {stem.name!r} (width={stem.filters / STEM_FILTERS:g}, "
            f"published {STEM_FILTERS}); build with width=1 or train from scratch"
        )


def _check_model_matches(backbone: keras.Model, layout: list, arch: str) -> None:
    """The model's weighted layers and their variables are exactly those of the layout."""
    model_weights = {layer.name: {v.name for v in layer.weights} for layer in backbone.layers}
    model_weights = {name: kinds for name, kinds in model_weights.items() if kinds}
    layout_weights = {model_name: set(kinds) for _, model_name, kinds in layout}
    if model_weights != layout_weights:
        differing = sorted(
            name
            for name in model_weights.keys() | layout_weights.keys()
            if model_weights.get(name) != layout_weights.get(name)
        )
        raise ValueError(
            f"model {backbone.name!r} is not the {arch} backbone that {weights_file_name(arch)} "
            f"fits; layers whose weights differ from the layout: {differing[:_MAX_LISTED]}"
        )


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:  # e.g. an HTML page saved under the .h5 name
        raise ValueError(f"{path} is not a readable HDF5 file ({error})") from error


def _weights_root(f: h5py.File) -> h5py.Group:
    """The group holding `layer_names` (a whole-model Keras 2 file keeps it under model_weights)."""
    if "layer_names" not in f.attrs and "model_weights" in f:
        return f["model_weights"]
    return f


def _name_list(group: h5py.Group, attr: str, path: Path) -> list[str]:
    """A Keras 2 name-list attribute, also when it was split into `<attr>0`, `<attr>1`, ..."""
    if attr in group.attrs:
        chunks = [group.attrs[attr]]
    else:
        chunks = []
        while f"{attr}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{attr}{len(chunks)}"])
    if not chunks:
        raise ValueError(
            f"{path}: group {group.name!r} has no attribute {attr!r}; expected a Keras 2 HDF5 "
            f"weights file like {RELEASE_URL}"
        )
    names = [name for chunk in chunks for name in np.atleast_1d(chunk)]
    return [name.decode("utf8") if isinstance(name, bytes) else str(name) for name in names]


def _stored_layers(root: h5py.Group, path: Path) -> dict[str, dict[str, h5py.Dataset]]:
    """{file layer name: {weight name: dataset}} for every file layer that has weights."""
    stored = {}
    for layer in _name_list(root, "layer_names", path):
        if layer not in root:
            raise ValueError(f"{path}: layer_names lists {layer!r} but there is no such group")
        group = root[layer]
        arrays = {}
        for weight in _name_list(group, "weight_names", path):
            if weight not in group or not isinstance(group[weight], h5py.Dataset):
                raise ValueError(f"{path}: array {weight!r} of layer {layer!r} is not in the file")
            arrays[weight] = group[weight]
        if arrays:
            stored[layer] = arrays
    return stored


def _weight_kind(weight_name: str) -> str:
    """`conv1/7x7_s2/bn/moving_mean:0` -> `moving_mean`."""
    return re.sub(r":\d+$", "", weight_name).rsplit("/", 1)[-1]


def _matched_values(stored: dict, layout: list, backbone: keras.Model, path: Path) -> dict:
    """{model layer name: {weight kind: array}} after checking every name and shape."""
    expected = {file_name for file_name, _, _ in layout}
    problems = [
        f"missing layer {name!r} (arrays {[f'{name}/{k}' for k in kinds]})"
        for name, _, kinds in layout
        if name not in stored
    ]
    problems += [
        f"unexpected layer {name!r} with arrays {list(stored[name])}"
        for name in stored
        if name not in expected
    ]
    values = {}
    for file_name, model_name, kinds in layout:
        if file_name in stored:
            layer = backbone.get_layer(model_name)
            arrays, layer_problems = _layer_values(stored[file_name], file_name, kinds, layer)
            values[model_name] = arrays
            problems += layer_problems
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        hidden = len(problems) - _MAX_LISTED
        more = f"\n  ... and {hidden} more" if hidden > 0 else ""
        raise ValueError(f"{path} does not match the VGGFace layout:\n  {listed}{more}")
    return values


def _layer_values(arrays: dict, file_name: str, kinds: tuple, layer) -> tuple[dict, list[str]]:
    """The arrays of one layer by weight kind, and what is wrong with them."""
    variables = {variable.name: variable for variable in layer.weights}
    values, problems = {}, []
    for weight, dataset in arrays.items():
        kind = _weight_kind(weight)
        if kind not in kinds or kind in values:
            problems.append(f"unexpected array {weight!r} in {file_name!r} (expected {kinds})")
        elif tuple(dataset.shape) != tuple(variables[kind].shape):
            problems.append(
                f"array {weight!r} has shape {tuple(dataset.shape)}, expected "
                f"{tuple(variables[kind].shape)} for {layer.name}.{kind}"
            )
        else:
            values[kind] = np.asarray(dataset)
    seen = {_weight_kind(weight) for weight in arrays}
    problems += [
        f"missing array '{file_name}/{kind}' (layer {file_name!r} has {list(arrays)})"
        for kind in kinds
        if kind not in seen
    ]
    return values, problems
