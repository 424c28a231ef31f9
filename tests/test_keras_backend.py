"""`train.keras_backend`: the backend the train stage gives the Keras members, and the warning
when they would run on the CPU beside a GPU torch can use."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from test_training import numpy_pipeline  # noqa: F401  (a fixture)

from kinship.members import registry
from kinship.members.params import MemberParams

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
