"""Derive the weight layouts of keras-vggface 0.6's notop models by running its own source.

The JSON files next to this script are the test oracle for `kinship.members.vggface_weights`: what
the published `rcmalli_vggface_tf_notop_{vgg16,resnet50,senet50}.h5` files hold. They must not come
from our Keras 3 builders (a test comparing a guess with itself cannot fail), so this script
executes keras-vggface 0.6's `keras_vggface/models.py` unmodified, with the modules it imports
(`keras`, `keras_applications`) replaced by a small recording stand-in (no Keras, TensorFlow or
network needed).
Every layer the original code creates is recorded with its name, class, configuration and weight
shapes; the layer order is the one Keras 2 gives `model.layers` (sorted by depth from the output,
ties by first visit of a depth-first walk from the output), which is the order of the root
`layer_names` attribute of a Keras 2 HDF5 weights file. Weight names follow Keras 2 on TensorFlow:
`<layer name>/<weight>:0`.

Reproduce (the source is not vendored: it is MIT-licensed third-party code):

    pip download keras_vggface==0.6 --no-deps -d /tmp/kvf
    python -m zipfile -e /tmp/kvf/keras_vggface-0.6-py3-none-any.whl /tmp/kvf/src
    python tests/vggface_layout/derive_spec.py /tmp/kvf/src/keras_vggface/models.py

The same file is at github.com/rcmalli/keras-vggface commit bee3537 (differs only in one import).
Auto-generated names of weightless layers (`activation_1`, `add_1`, ...) are what a fresh Keras 2
session would give; the loader ignores weightless layers, so those names are informational.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import types
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
INPUT_SHAPE = (224, 224, 3)
BUILDERS = {"vgg16": "VGG16", "resnet50": "RESNET50", "senet50": "SENET50"}


class Tensor:
    """A symbolic tensor: its shape (batch first, channels last) and the layer that produced it."""

    def __init__(self, shape: tuple, layer: Layer | None):
        self.shape = shape
        self.layer = layer


class Layer:
    """Records name, configuration, inbound layers and weight shapes of one Keras 2 layer call."""

    counters: Counter = Counter()
    prefix: str | None = None  # Keras 2's auto-name prefix when it is not the snake-cased class

    def __init__(self, *args, name: str | None = None, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.name = name or self._auto_name()
        self.inbound: list[Layer] = []
        self.weights: list[tuple[str, tuple]] = []
        self.config: dict = {}

    def _auto_name(self) -> str:
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", type(self).__name__).lower()
        prefix = self.prefix or snake
        Layer.counters[prefix] += 1
        return f"{prefix}_{Layer.counters[prefix]}"

    def __call__(self, inputs):
        tensors = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
        self.inbound = [t.layer for t in tensors if t.layer is not None]
        shape = self.compute(tensors[0].shape)
        return Tensor(shape, self)

    def add_weight(self, kind: str, shape: tuple) -> None:
        self.weights.append((f"{self.name}/{kind}:0", tuple(int(d) for d in shape)))

    def compute(self, shape: tuple) -> tuple:
        return shape


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _spatial(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


class Conv2D(Layer):
    def compute(self, shape):
        filters, kernel = self.args[0], _pair(self.args[1])
        strides = _pair(self.kwargs.get("strides", 1))
        padding = self.kwargs.get("padding", "valid")
        use_bias = self.kwargs.get("use_bias", True)
        self.config = {"kernel_size": list(kernel), "strides": list(strides), "padding": padding}
        self.config |= {"use_bias": use_bias, "activation": self.kwargs.get("activation")}
        self.add_weight("kernel", (*kernel, shape[-1], filters))
        if use_bias:
            self.add_weight("bias", (filters,))
        h, w = (_spatial(shape[i + 1], kernel[i], strides[i], padding) for i in range(2))
        return (shape[0], h, w, filters)


class BatchNormalization(Layer):
    def compute(self, shape):
        self.config = {"axis": self.kwargs.get("axis", -1)}
        self.config["epsilon"] = self.kwargs.get("epsilon", 1e-3)  # Keras 2's default
        for kind in ("gamma", "beta", "moving_mean", "moving_variance"):
            self.add_weight(kind, (shape[-1],))
        return shape


class _Pooling2D(Layer):
    def compute(self, shape):
        pool = _pair(self.args[0] if self.args else self.kwargs.get("pool_size", 2))
        strides = _pair(self.kwargs.get("strides") or (self.args[1:2] or [pool])[0])
        padding = self.kwargs.get("padding", "valid")
        self.config = {"pool_size": list(pool), "strides": list(strides), "padding": padding}
        h, w = (_spatial(shape[i + 1], pool[i], strides[i], padding) for i in range(2))
        return (shape[0], h, w, shape[-1])


class MaxPooling2D(_Pooling2D):
    pass


class AveragePooling2D(_Pooling2D):
    pass


class _GlobalPooling2D(Layer):
    def compute(self, shape):
        return (shape[0], shape[-1])


class GlobalAveragePooling2D(_GlobalPooling2D):
    pass


class GlobalMaxPooling2D(_GlobalPooling2D):
    pass


class Reshape(Layer):
    def compute(self, shape):
        return (shape[0], *self.args[0])


class Flatten(Layer):
    def compute(self, shape):
        return (shape[0], math.prod(shape[1:]))


class Permute(Layer):
    def compute(self, shape):
        return (shape[0], *(shape[i] for i in self.args[0]))


class Activation(Layer):
    def compute(self, shape):
        self.config = {"activation": self.args[0]}
        return shape


class Dense(Layer):
    def compute(self, shape):
        self.add_weight("kernel", (shape[-1], self.args[0]))
        self.add_weight("bias", (self.args[0],))
        return (shape[0], self.args[0])


class Add(Layer):
    pass


class Multiply(Layer):
    pass


class InputLayer(Layer):
    prefix = "input"


def Input(shape=None, **kwargs):  # noqa: N802 - the Keras 2 name
    layer = InputLayer(name=kwargs.get("name"))
    return Tensor((None, *shape), layer)


class Model:
    """Keeps the layers in Keras 2's `model.layers` order."""

    def __init__(self, inputs, outputs, name=None):
        self.name = name
        self.layers = keras2_layer_order(outputs.layer)


def keras2_layer_order(output: Layer) -> list[Layer]:
    """Layers by depth from the output (deepest first), ties by first visit from the output."""
    first_seen: dict[Layer, int] = {}
    post_order: list[Layer] = []

    def visit(layer: Layer) -> None:
        if layer in first_seen:
            return
        first_seen[layer] = len(first_seen)
        for parent in layer.inbound:
            visit(parent)
        post_order.append(layer)

    visit(output)
    depth = {layer: 0 for layer in post_order}
    for layer in reversed(post_order):  # consumers before producers
        for parent in layer.inbound:
            depth[parent] = max(depth[parent], depth[layer] + 1)
    return sorted(post_order, key=lambda layer: (-depth[layer], first_seen[layer]))


def _obtain_input_shape(input_shape, default_size, min_size, data_format, require_flatten, **kw):
    return tuple(input_shape) if input_shape else (default_size, default_size, 3)


def _unavailable(*args, **kwargs):
    raise RuntimeError("derive_spec.py builds the models with weights=None: nothing to fetch")


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """The modules keras-vggface 0.6 imports, as recording stand-ins."""
    layers = types.ModuleType("keras.layers")
    for cls in (Flatten, Dense, GlobalAveragePooling2D, GlobalMaxPooling2D, Activation, Conv2D):
        setattr(layers, cls.__name__, cls)
    for cls in (MaxPooling2D, BatchNormalization, AveragePooling2D, Reshape, Permute):
        setattr(layers, cls.__name__, cls)
    layers.Input = Input
    layers.add = lambda tensors, **kw: Add(**kw)(tensors)
    layers.multiply = lambda tensors, **kw: Multiply(**kw)(tensors)
    backend = types.ModuleType("keras.backend")
    backend.image_data_format = lambda: "channels_last"
    backend.backend = lambda: "tensorflow"
    backend.is_keras_tensor = lambda x: isinstance(x, Tensor)
    utils = types.ModuleType("keras.utils")
    utils.layer_utils = types.ModuleType("keras.utils.layer_utils")
    utils.layer_utils.get_source_inputs = _unavailable
    utils.data_utils = types.ModuleType("keras.utils.data_utils")
    utils.data_utils.get_file = _unavailable
    topology = types.ModuleType("keras.engine.topology")
    topology.get_source_inputs = _unavailable
    models = types.ModuleType("keras.models")
    models.Model = Model
    keras = types.ModuleType("keras")
    keras.layers, keras.backend, keras.utils, keras.models = layers, backend, utils, models
    applications = types.ModuleType("keras_applications.imagenet_utils")
    applications._obtain_input_shape = _obtain_input_shape
    vggface = types.ModuleType("keras_vggface")
    vggface.utils = types.ModuleType("keras_vggface.utils")
    return {
        "keras": keras,
        "keras.layers": layers,
        "keras.backend": backend,
        "keras.utils": utils,
        "keras.utils.layer_utils": utils.layer_utils,
        "keras.utils.data_utils": utils.data_utils,
        "keras.engine": types.ModuleType("keras.engine"),
        "keras.engine.topology": topology,
        "keras.models": models,
        "keras_applications": types.ModuleType("keras_applications"),
        "keras_applications.imagenet_utils": applications,
        "keras_vggface": vggface,
        "keras_vggface.utils": vggface.utils,
    }


def load_original(models_py: Path) -> dict:
    """Execute keras-vggface's models.py against the stand-ins; return its namespace."""
    saved = {name: sys.modules.get(name) for name in _stand_in_modules()}
    sys.modules.update(_stand_in_modules())
    try:
        namespace: dict = {"__name__": "keras_vggface.models"}
        exec(compile(models_py.read_text(), str(models_py), "exec"), namespace)  # noqa: S102
        return namespace
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def layout(namespace: dict, arch: str) -> list[dict]:
    """One record per layer of the notop model, in Keras 2 `model.layers` order."""
    Layer.counters.clear()  # a fresh Keras 2 session per model
    build = namespace[BUILDERS[arch]]
    model = build(include_top=False, weights=None, input_shape=INPUT_SHAPE)
    return [
        {
            "name": layer.name,
            "class": type(layer).__name__,
            "config": layer.config,
            "weights": [[name, list(shape)] for name, shape in layer.weights],
        }
        for layer in model.layers
    ]


def write_spec(path: Path, arch: str, records: list[dict], source: dict) -> None:
    """JSON with one layer per line, so a diff shows exactly which layer changed."""
    header = {
        "arch": arch,
        "source": source,
        "call": f"{BUILDERS[arch]}(include_top=False, weights=None, input_shape={INPUT_SHAPE})",
        "order": "Keras 2 model.layers order = HDF5 root attribute layer_names",
    }
    lines = [json.dumps(record) for record in records]
    head = json.dumps(header, indent=1, sort_keys=True)[:-2]
    path.write_text(head + ',\n "layers": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_py", type=Path, help="keras_vggface/models.py of keras-vggface 0.6")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the <arch>.json files")
    args = parser.parse_args(argv)
    digest = hashlib.sha256(args.models_py.read_bytes()).hexdigest()
    source = {"package": "keras_vggface==0.6", "file": "keras_vggface/models.py", "sha256": digest}
    namespace = load_original(args.models_py)
    for arch in BUILDERS:
        records = layout(namespace, arch)
        write_spec(args.out / f"{arch}.json", arch, records, source)
        arrays = sum(len(r["weights"]) for r in records)
        params = sum(math.prod(shape) for r in records for _, shape in r["weights"])
        print(f"{arch}: {len(records)} layers, {arrays} arrays, {params:,} params")


if __name__ == "__main__":
    main()
