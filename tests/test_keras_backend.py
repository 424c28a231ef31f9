"""`train.keras_backend`: the backend the train stage gives the Keras members, the warning when
they would run on the CPU beside a GPU torch can use, and the two backends' agreement.

The agreement test builds a member at full width from one weight file written in keras-vggface's
published HDF5 format, and embeds and scores the same uint8 images in two fresh processes, one
per backend (Keras picks its backend once per process), on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_training import numpy_pipeline  # noqa: F401  (a fixture)
from test_vggface_weights import load_spec, write_keras2_weights

from kinship.members import registry
from kinship.members.params import MemberParams
from kinship.members.vggface_weights import weights_file_name

# Keras 3.15 turns tensors into numpy with np.array(tensor), which numpy 2.4 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy")

BACKENDS = ("tensorflow", "torch")
TINY = MemberParams(model="vggface_vgg16", input_size=32, width=0.25)


# --- the setting, applied before Keras is imported ------------------------------------------------


def test_the_default_is_tensorflow_as_before():
    """The demo's results stay as they were: params.yaml and the default name TensorFlow."""
    from kinship.params import TrainParams, load_params

    committed = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert TrainParams().keras_backend == committed.train.keras_backend == "tensorflow"


def test_keras_models_are_the_keras_members():
    for model in registry.MODELS:
        keras_built = registry.member_class(model).framework == "keras"
        assert (model in registry.KERAS_MODELS) == keras_built, model


def test_params_choose_over_the_environment(monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # as in a fresh stage process
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        registry.use_keras_backend("torch")
    assert os.environ["KERAS_BACKEND"] == "torch"
    expected = "KERAS_BACKEND=tensorflow in the environment is overridden by params.yaml "
    assert expected + "train.keras_backend: torch" in caplog.text
    caplog.clear()
    registry.use_keras_backend("torch")  # agreeing: silent
    assert not caplog.text
    monkeypatch.delenv("KERAS_BACKEND")
    registry.use_keras_backend("tensorflow")  # unset: set (~/.keras/keras.json is not read)
    assert os.environ["KERAS_BACKEND"] == "tensorflow" and not caplog.text


def test_keras_already_loaded_on_another_backend_is_an_error():
    import keras

    loaded = keras.config.backend()
    other = next(b for b in BACKENDS if b != loaded)
    registry.use_keras_backend(loaded)  # the same backend: nothing to do
    assert registry.keras_backend_in_use() == loaded
    with pytest.raises(RuntimeError, match=rf"train.keras_backend is '{other}', but Keras was "
                       rf"already imported in this process on the '{loaded}' backend"):  # fmt: skip
        registry.use_keras_backend(other)


# --- the CPU-beside-a-GPU warning (no GPU here: monkeypatched) ------------------------------------


@pytest.mark.parametrize(
    ("backend", "keras_gpu", "torch_gpu", "warns"),
    [
        ("tensorflow", False, True, True),  # tensorflow-cpu on a GPU machine
        ("tensorflow", True, True, False),  # a TensorFlow that sees the GPU
        ("tensorflow", False, False, False),  # a CPU machine
        ("torch", False, True, False),  # never on the torch backend (it uses what torch sees)
    ],
)
def test_warns_when_keras_runs_on_the_cpu_beside_a_gpu(
    monkeypatch, caplog, backend, keras_gpu, torch_gpu, warns
):
    import keras

    from kinship.members import keras_vggface

    monkeypatch.setattr(keras.config, "backend", lambda: backend)
    monkeypatch.setattr(keras_vggface, "has_gpu", lambda: keras_gpu)
    monkeypatch.setattr(keras_vggface, "torch_sees_cuda", lambda: torch_gpu)
    with caplog.at_level(logging.WARNING, logger=keras_vggface.__name__):
        assert keras_vggface.warn_if_cpu_beside_a_gpu("vggface_vgg16") is warns
    lines = [r.getMessage() for r in caplog.records]
    if warns:
        assert len(lines) == 1 and lines[0].startswith("vggface_vgg16: Keras runs on the CPU")
        assert "set train.keras_backend: torch in params.yaml" in lines[0]
    else:
        assert not lines


def test_a_keras_members_device_check_is_the_warning(monkeypatch):
    """What the train stage calls on a built member (`Member.check_device`)."""
    from kinship.members import keras_vggface

    calls = []
    monkeypatch.setattr(keras_vggface, "warn_if_cpu_beside_a_gpu", calls.append)
    keras_vggface.VggFace16Member("vggface_vgg16", TINY).check_device()
    assert calls == ["vggface_vgg16"]


def test_torch_sees_cuda_as_torch_does():
    """The driver-library shortcut never hides a GPU that torch would see."""
    import torch

    from kinship.members import keras_vggface

    assert keras_vggface.torch_sees_cuda() == torch.cuda.is_available()


# --- the train stage applies it -------------------------------------------------------------------


def test_the_train_stage_sets_the_backend_before_building_a_keras_member(request, monkeypatch):
    """MemberTrainer calls use_keras_backend with params' value before building (a numpy member
    registered as a Keras one stands in), then the member's device check (the Keras members'
    warning above), and records the backend in timing."""
    import dataclasses

    import keras
    from numpy_member import NumpyMember

    from kinship import paths
    from kinship.train_stage import MemberTrainer, Prepared

    events = []

    class KerasFlavouredMember(NumpyMember):
        framework = "keras"

        def check_device(self):
            events.append(("check_device", self.name))

    monkeypatch.setattr(registry, "KERAS_MODELS", registry.KERAS_MODELS | {"numpy_test"})
    monkeypatch.setattr(registry, "use_keras_backend", lambda b: events.append(("backend", b)))
    monkeypatch.setattr(
        registry, "member_class", lambda model: events.append(("build",)) or KerasFlavouredMember
    )
    pipeline = request.getfixturevalue("numpy_pipeline")  # test_training's, in tmp_path
    params = dataclasses.replace(
        pipeline, train=dataclasses.replace(pipeline.train, keras_backend="torch")
    )
    trainer = MemberTrainer("tiny", params, Prepared.load())
    assert events == [("backend", "torch"), ("build",), ("check_device", "tiny")]
    trainer.train_fold(0)
    timing = json.loads((paths.MODELS_DIR / "tiny/fold0/timing.json").read_text())
    assert timing["keras_backend"] == keras.config.backend()  # what this process runs on


# --- both backends agree -----------------------------------------------------------------------

SIZE = 45  # odd on purpose: "same" padding with stride 2 is asymmetric there; ResNet maps end 2x2
N_IMAGES = 8
TOLERANCE = 1e-4
"""Allowed difference between the backends, relative to the largest embedding value."""
PROB_TOLERANCE = 1e-4
"""Allowed absolute difference between the backends' probabilities."""

EMBED_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from kinship.members import registry

    backend, model, weights, work = sys.argv[1:5]
    registry.use_keras_backend(backend)  # the test's KERAS_BACKEND names the other one
    import keras
    from kinship.members.params import HeadParams, MemberParams

    params = MemberParams(
        model=model, input_size=int(sys.argv[5]), width=1.0, weights=weights, batch_size=4,
        head=HeadParams(hidden=[16]),
    )
    member = registry.create_member("m", params)
    member.build()
    member.reset(0)
    # the head's random init differs between the backends' generators: one set of weights here
    # (kernels scaled by fan-in, so the logits are a few units and the probabilities vary)
    rng = np.random.default_rng(0)
    head = member.models.head
    head.set_weights([
        rng.normal(0, w.shape[0] ** -0.5 if w.ndim == 2 else 0.1, w.shape).astype(np.float32)
        for w in head.get_weights()
    ])
    images = np.load(f"{work}/images.npy")
    embeddings = member.embed(images)
    half = len(images) // 2
    probs = member.score(embeddings[:half], embeddings[half:])
    np.savez(f"{work}/{backend}.npz", embeddings=embeddings, probs=probs)
    print("backend", keras.config.backend(), "tensorflow" in sys.modules)
    """
)


PIXEL_STD = 73.9
"""The spread of uniform uint8 pixels (255 / √12), which the test embeds."""


def write_published_weights(path, arch: str, seed: int = 0) -> None:
    """A notop file in keras-vggface's published format whose values keep the network as well
    conditioned as a trained one: He-scaled kernels (the first also divided by the pixels'
    spread), BatchNorm variances near 1, a small scale on each residual branch's last BatchNorm,
    small biases and means. Activations then stay within tens (not 1e5 after 16 blocks) and the SE
    gates' logits within a few units: with logits in the hundreds the backends' float32 rounding
    was amplified into different gates (0.45 of the embedding scale, measured)."""
    write_keras2_weights(path, load_spec(arch), seed=seed)
    rng = np.random.default_rng(seed)
    first = True
    with h5py.File(path, "r+") as f:
        for layer in load_spec(arch):
            for name, shape in layer["weights"]:
                kind = name.removesuffix(":0").rsplit("/", 1)[1]
                if kind == "kernel":
                    std = math.sqrt(2 / math.prod(shape[:-1])) / (PIXEL_STD if first else 1)
                    array, first = rng.normal(0, std, shape), False
                elif kind == "gamma" and "1x1_increase" in name:  # a residual branch's last
                    array = rng.uniform(0.1, 0.3, shape)
                elif kind in ("gamma", "moving_variance"):
                    array = rng.uniform(0.5, 1.5, shape)
                else:  # beta, moving_mean, bias
                    array = rng.normal(0, 0.1, shape)
                f[layer["name"]][name][...] = array.astype(np.float32)


def embed_on(backend: str, model: str, weights, work) -> subprocess.Popen:
    """Embed and score in a fresh process whose environment names the other backend."""
    other = next(b for b in BACKENDS if b != backend)
    env = os.environ | {
        "KERAS_BACKEND": other,
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    args = [backend, model, str(weights), str(work), str(SIZE)]
    command = [sys.executable, "-c", EMBED_SCRIPT, *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    "model",
    [
        "vggface_resnet50",
        pytest.param("vggface_senet50", marks=pytest.mark.slow),
        pytest.param("vggface_vgg16", marks=pytest.mark.slow),
    ],
)
def test_backends_give_the_same_embeddings_and_scores(model, tmp_path):
    """The same published-format weights, the same uint8 images: TensorFlow and torch give the
    same embeddings within TOLERANCE (1e-4) of the largest embedding value and the same
    probabilities within PROB_TOLERANCE (1e-4), both on the CPU. Measured (AMD EPYC with
    AVX-512): max embedding difference 1.1e-6 of the scale (ResNet50), 5.5e-7 (SENet50), 0
    (VGG16: bitwise equal); probabilities within 4e-7. It prints its numbers (`pytest -s`)."""
    arch = model.removeprefix("vggface_")
    weights = tmp_path / weights_file_name(arch)
    write_published_weights(weights, arch)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (N_IMAGES, SIZE, SIZE, 3), np.uint8))
    start = time.perf_counter()
    procs = {b: embed_on(b, model, weights, tmp_path) for b in BACKENDS}
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        assert out.split()[-2:] == [backend, str(backend == "tensorflow")]  # torch: no TF loaded
    seconds = time.perf_counter() - start
    tf, pt = (np.load(tmp_path / f"{b}.npz") for b in BACKENDS)
    scale = float(np.abs(tf["embeddings"]).max())
    embed_diff = float(np.abs(tf["embeddings"] - pt["embeddings"]).max()) / scale
    prob_diff = float(np.abs(tf["probs"] - pt["probs"]).max())
    print(f"{model}: max |tf - torch| = {embed_diff:.2e} of the embedding scale {scale:.3g}, "
          f"probabilities {prob_diff:.2e} ({seconds:.1f} s)")  # fmt: skip
    assert np.all(np.isfinite(tf["embeddings"])) and scale > 0
    assert np.ptp(tf["probs"]) > 1e-3  # the head's output is not a constant
    assert embed_diff <= TOLERANCE
    assert prob_diff <= PROB_TOLERANCE
