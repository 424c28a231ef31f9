"""The Keras VGGFace members beyond the shared contract: tracing once, reset, frozen pretrained
backbones, checkpoint configs, the pair head, mixed precision, and both Keras backends.

The members are tiny (VGG16 at 32 px, width 0.25) except where pretrained weights need width 1.
Keras loads TensorFlow, which must come after torch/torchvision in one process: conftest.py
imports those first. The backend checks run in subprocesses with their own `KERAS_BACKEND`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import h5py
import keras  # noqa: E402  (a required dependency: failing to import it fails the run)
import numpy as np
import pytest
from test_vggface_weights import load_spec, model_array, write_keras2_weights

from kinship.members import keras_head, keras_vggface  # noqa: E402
from kinship.members.base import pairs_as_groups  # noqa: E402
from kinship.members.keras_vggface import VggFace16Member, VggFaceResNet50Member  # noqa: E402
from kinship.members.params import PAIR_FEATURES, HeadParams, MemberParams  # noqa: E402
from kinship.members.vggface_weights import weights_file_name  # noqa: E402

# Keras 3.15 turns tensors into numpy with np.array(tensor), which numpy 2.4 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy")

TINY = MemberParams(
    model="vggface_vgg16", input_size=32, width=0.25, batch_size=4, head=HeadParams(hidden=[8])
)


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def pair_batch(n: int, size: int = 32, seed: int = 0):
    """n pairs as a group batch (2n images, one partner each)."""
    y = np.arange(n, dtype=np.float32) % 2
    return pairs_as_groups(images(n, size, seed), images(n, size, seed + 1), y)


def built(params: MemberParams, cls=VggFace16Member, name: str = "m", seed: int = 0):
    member = cls(name, params)
    member.build()
    member.reset(seed)
    return member


def weights_of(model) -> list[np.ndarray]:
    return [np.array(w, copy=True) for w in model.get_weights()]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def count_traces(model, method: str, counts: dict) -> None:
    """Count runs of `model.<method>`: with TensorFlow, Python runs it only while tracing."""
    original = getattr(model, method)

    def counted(*args, **kwargs):
        counts[method] = counts.get(method, 0) + 1
        return original(*args, **kwargs)

    setattr(model, method, counted)


@pytest.fixture(scope="module")
def tiny():
    """A built tiny member whose siamese model counts its train/predict traces."""
    member = VggFace16Member("tiny", TINY)
    member.build()
    member.traces = {}
    count_traces(member.models.siamese, "train_step", member.traces)
    count_traces(member.models.embedding, "predict_step", member.traces)
    member.reset(0)
    return member


# --- tracing once, reset --------------------------------------------------------------------------


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="counts TensorFlow traces")
def test_reset_and_steps_do_not_retrace(tiny):
    batch = pair_batch(4)
    tiny.train_step(*batch)
    tiny.embed(batch[0])
    traces, train_function = dict(tiny.traces), tiny.models.siamese.train_function
    start = time.perf_counter()
    tiny.reset(1)
    tiny.train_step(*batch)
    tiny.embed(batch[0])
    seconds = time.perf_counter() - start
    assert tiny.models.siamese.train_function is train_function
    assert tiny.traces == traces, f"reset + step + embed took {seconds:.2f} s"
    assert traces["train_step"] == 1


def test_reset_is_seeded_and_clears_the_optimiser(tiny):
    x = images(4)

    def outputs():
        e = tiny.embed(x)
        return e, tiny.score(e[:2], e[2:])

    tiny.reset(1)
    first = outputs()
    tiny.set_learning_rate(1e-5)
    assert tiny.get_learning_rate() == pytest.approx(1e-5)
    losses = [tiny.train_step(*pair_batch(4)) for _ in range(2)]
    tiny.train_head_step(*pairs_as_groups(first[0], first[0][::-1], np.float32([1, 0, 1, 0])))
    tiny.reset(1)
    assert tiny.get_learning_rate() == pytest.approx(TINY.lr)
    for model in (tiny.models.siamese, tiny.models.group_head):
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
        moments = [v for v in model.optimizer.variables if v.name != "learning_rate"]
        assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in moments)
    for got, want in zip(outputs(), first, strict=True):
        np.testing.assert_array_equal(got, want)
    tiny.set_learning_rate(1e-5)  # the same steps, dropout masks included, give the same losses
    np.testing.assert_allclose([tiny.train_step(*pair_batch(4)) for _ in range(2)], losses)
    tiny.reset(2)
    assert not np.array_equal(tiny.embed(x), first[0])


def test_train_step_moves_backbone_and_head_head_step_only_the_head(tiny):
    tiny.reset(0)
    backbone, head = weights_of(tiny.models.backbone), weights_of(tiny.models.head)
    assert math.isfinite(tiny.train_step(*pair_batch(4)))
    assert not same(backbone, weights_of(tiny.models.backbone))
    assert not same(head, weights_of(tiny.models.head))
    backbone, head = weights_of(tiny.models.backbone), weights_of(tiny.models.head)
    e = tiny.embed(images(8))
    assert math.isfinite(
        tiny.train_head_step(*pairs_as_groups(e[:4], e[4:], np.float32([1, 0] * 2)))
    )
    assert same(backbone, weights_of(tiny.models.backbone))
    assert not same(head, weights_of(tiny.models.head))


def test_embed_score_and_state(tiny):
    tiny.reset(0)
    e = tiny.embed(images(21))  # several padded chunks (batch 16)
    assert e.shape == (21, 256) and e.dtype == np.float32
    np.testing.assert_allclose(e[16:], tiny.embed(images(21)[16:]), rtol=1e-5, atol=1e-5)
    assert tiny.embed(images(0)).shape == (0, 256)
    p = tiny.score(e[:10], e[10:20])
    assert p.shape == (10,) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))
    state = tiny.get_state()
    tiny.train_step(*pair_batch(4))
    assert not np.array_equal(tiny.score(e[:10], e[10:20]), p)
    tiny.set_state(state)
    np.testing.assert_array_equal(tiny.score(e[:10], e[10:20]), p)


# --- checkpoints ----------------------------------------------------------------------------------


def test_save_writes_weights_and_config(tiny, tmp_path):
    tiny.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.weights.h5"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["name"] == "tiny" and config["class"] == "VggFace16Member"
    assert config["params"]["width"] == 0.25 and config["params"]["head"]["hidden"] == [8]
    with h5py.File(tmp_path / "model.weights.h5") as f:
        names = []
        f.visit(names.append)
    assert not [n for n in names if "optimizer" in n]  # the model only, as the torch members


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"width": 0.5}, "width"),
        ({"input_size": 64}, "input_size"),
        ({"model": "vggface_resnet50"}, "model"),
        ({"head": HeadParams(hidden=[8], features=["abs_diff"])}, "head.features"),
        ({"head": HeadParams(hidden=[16])}, "head.hidden"),
    ],
)
def test_load_with_another_config_fails_naming_the_key(tiny, tmp_path, change, key):
    tiny.save(tmp_path)
    cls = VggFaceResNet50Member if "model" in change else VggFace16Member
    other = cls("keras16", dataclasses.replace(TINY, **change))  # the check precedes the build
    with pytest.raises(ValueError, match=rf"has {key} = .*members\.keras16\.{key} is") as err:
        other.load(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_load_without_a_checkpoint(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        tiny.load(tmp_path)


def test_params_refused_at_construction():
    with pytest.raises(ValueError, match=r"members\.v16\.input_size must be at least 32 px"):
        VggFace16Member("v16", dataclasses.replace(TINY, input_size=31))
    with pytest.raises(ValueError, match=r"members\.v16\.freeze must be false without"):
        VggFace16Member("v16", dataclasses.replace(TINY, freeze=True))


# --- pretrained weights ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_weights(tmp_path_factory):
    """A notop VGG16 file as keras-vggface published it, with He-scaled random kernels (so 13
    random layers stay finite); returns its path and arrays by file weight name."""
    path = tmp_path_factory.mktemp("vggface") / weights_file_name("vgg16")
    arrays = write_keras2_weights(path, load_spec("vgg16"))
    with h5py.File(path, "r+") as f:
        for name, array in arrays.items():
            if name.endswith("kernel:0"):
                array *= np.float32(math.sqrt(2 / math.prod(array.shape[:-1])))
                f[name.split("/")[0]][name][...] = array
    return path, arrays


def assert_backbone_is(member, arrays: dict) -> None:
    for name, array in arrays.items():
        np.testing.assert_array_equal(model_array(member.models.backbone, name), array)


def test_frozen_pretrained_trains_only_its_head(vgg16_weights):
    path, arrays = vgg16_weights
    params = dataclasses.replace(TINY, width=1.0, weights=str(path), freeze=True)
    member = built(params)
    assert_backbone_is(member, arrays)
    head = weights_of(member.models.head)
    assert math.isfinite(member.train_step(*pair_batch(2)))
    e = member.embed(images(4))
    assert np.all(np.isfinite(e))
    assert math.isfinite(member.train_head_step(*pairs_as_groups(e[:2], e[2:], np.float32([1, 0]))))
    assert_backbone_is(member, arrays)
    assert not same(head, weights_of(member.models.head))


def test_fine_tuning_then_reset_restores_pretrained(vgg16_weights):
    path, arrays = vgg16_weights
    member = built(dataclasses.replace(TINY, width=1.0, weights=str(path)))
    member.train_step(*pair_batch(2))
    kernel = model_array(member.models.backbone, "conv1_1/kernel:0")
    assert not np.array_equal(kernel, arrays["conv1_1/kernel:0"])
    member.reset(3)
    assert_backbone_is(member, arrays)


# --- the pair head --------------------------------------------------------------------------------


def test_pair_features_by_hand():
    e1, e2 = np.float32([[1.0, 2.0]]), np.float32([[3.0, -1.0]])
    expected = {
        "sq_diff": [4.0, 9.0],
        "sq_sub": [-8.0, 3.0],
        "prod": [3.0, -2.0],
        "abs_diff": [2.0, 3.0],
        "cosine": [1 / math.sqrt(50)],  # (3 − 2) / (√5 · √10)
    }
    assert set(keras_head.FEATURES) == set(PAIR_FEATURES)
    for name, values in expected.items():
        got = keras.ops.convert_to_numpy(keras_head.PairFeatures([name])(e1, e2))
        np.testing.assert_allclose(got, [values], rtol=1e-6)
    order = ["cosine", "abs_diff", "prod"]
    got = keras.ops.convert_to_numpy(keras_head.PairFeatures(order)(e1, e2))
    np.testing.assert_allclose(got, [[1 / math.sqrt(50), 2.0, 3.0, 3.0, -2.0]], rtol=1e-6)
    assert keras_head.feature_width(order, 2) == 5


def test_head_layers_and_probabilities():
    head = keras_head.build_head(6, HeadParams(features=["sq_diff", "cosine"], hidden=[5, 3]))
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    assert [tuple(layer.kernel.shape) for layer in dense] == [(7, 5), (5, 3), (3, 1)]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "linear"]
    np.testing.assert_allclose(
        keras_head.probabilities(np.float32([[-1000.0], [0.0], [2.0]])),
        [0.0, 0.5, 1 / (1 + math.exp(-2))],
        rtol=1e-6,
    )


# --- mixed precision ------------------------------------------------------------------------------


def test_mixed_precision_keeps_float32_outputs(monkeypatch):
    monkeypatch.setattr(keras_vggface, "has_gpu", lambda: True)  # the policy a GPU gets
    before = keras.config.dtype_policy().name
    member = built(dataclasses.replace(TINY, mixed_precision=True))
    assert keras.config.dtype_policy().name == before  # the policy is set only while building
    assert member.models.backbone.get_layer("conv1_1").compute_dtype == "bfloat16"
    assert member.models.head.get_layer("pair_features").compute_dtype == "float32"
    assert math.isfinite(member.train_step(*pair_batch(4)))
    e = member.embed(images(4))
    p = member.score(e[:2], e[2:])
    assert e.dtype == np.float32 and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))


def test_mixed_precision_is_ignored_without_a_gpu(monkeypatch, caplog):
    """As the README says and the torch members do: on CPU the models stay float32."""
    monkeypatch.setattr(keras_vggface, "has_gpu", lambda: False)
    with caplog.at_level("INFO", logger=keras_vggface.__name__):
        member = built(dataclasses.replace(TINY, mixed_precision=True))
    assert "dtype policy float32" in caplog.text
    conv = member.models.backbone.get_layer("conv1_1")
    assert conv.compute_dtype == "float32" and conv.variable_dtype == "float32"
    assert all(v.dtype == "float32" for v in member.models.siamese.trainable_variables)


def test_the_machine_decides_the_policy():
    assert keras_vggface.dtype_policy(False) == "float32"
    expected = "mixed_bfloat16" if keras_vggface.has_gpu() else "float32"
    assert keras_vggface.dtype_policy(True) == expected


# --- both backends, in their own processes --------------------------------------------------------

ROUND_TRIP = textwrap.dedent(
    """
    import sys, tempfile
    import keras, numpy as np
    from kinship.members.base import pairs_as_groups
    from kinship.members.registry import create_member
    from kinship.members.params import HeadParams, MemberParams

    rng = np.random.default_rng(0)
    x1, x2 = (rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    y = np.float32([1, 0, 1, 0])
    params = MemberParams(
        model=sys.argv[1], input_size=32, width=0.25, batch_size=4, head=HeadParams(hidden=[8])
    )
    member = create_member("m", params)
    member.build()
    member.reset(0)
    before = member.embed(x1)
    assert np.isfinite(member.train_step(*pairs_as_groups(x1, x2, y)))
    assert not np.allclose(before, member.embed(x1))
    probs = member.score(member.embed(x1), member.embed(x2))
    if member.device_path:  # the torch backend: uint8 batches augmented on the device
        batch = pairs_as_groups(x1, x2, y)

        def steps(m, n=2):
            return [float(m.train_uploaded(m.upload(*batch))) for _ in range(n)]

        member.reset(3)
        first = steps(member)
        member.reset(3)
        assert steps(member) == first and np.all(np.isfinite(first))
        with tempfile.TemporaryDirectory() as state:  # --resume: the augmentation stream too
            member.save_training_state(state)
            expected = steps(member)
            resumed = create_member("m", params)
            resumed.build()
            resumed.reset(5)
            resumed.load_training_state(state)
            np.testing.assert_allclose(steps(resumed), expected, rtol=1e-5)
        member.reset(0)
        assert np.isfinite(member.train_step(*batch))
        probs = member.score(member.embed(x1), member.embed(x2))
    with tempfile.TemporaryDirectory() as checkpoint:
        member.save(checkpoint)
        twin = create_member("m", params)
        twin.build()
        twin.reset(1)
        twin.load(checkpoint)
    got = twin.score(twin.embed(x1), twin.embed(x2))
    np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)
    loaded = [name for name in ("tensorflow", "torch", "torch._dynamo") if name in sys.modules]
    print("backend", keras.backend.backend(), "loaded", ",".join(loaded))
    """
)


def run_round_trip(backend: str, model: str) -> str:
    """Build, reset, train, embed, score, save and load `model` in a fresh process."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, model], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "model",
    [
        "vggface_resnet50",
        pytest.param("vggface_vgg16", marks=pytest.mark.slow),
        pytest.param("vggface_senet50", marks=pytest.mark.slow),
    ],
)
def test_members_run_on_the_torch_backend_without_tensorflow(model):
    line = run_round_trip("torch", model)
    assert line.startswith("backend torch loaded torch")
    assert "tensorflow" not in line.split()[-1].split(",")  # never imported


def test_tensorflow_backend_never_loads_torch_dynamo():
    """Loading torch._dynamo (triton's LLVM) after TensorFlow segfaults: a Keras member on the
    TensorFlow backend must not pull it in."""
    line = run_round_trip("tensorflow", "vggface_vgg16")
    assert line.startswith("backend tensorflow loaded tensorflow")
    assert "torch._dynamo" not in line.split()[-1].split(",")
