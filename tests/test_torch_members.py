"""The torch members (siamese_cnn, facenet), their shared base class and pair head."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math

import numpy as np
import pytest
import torch  # noqa: E402

from kinship.members import torch_head  # noqa: E402
from kinship.members.base import pairs_as_groups  # noqa: E402
from kinship.members.facenet import FacenetMember  # noqa: E402
from kinship.members.params import PAIR_FEATURES, HeadParams, MemberParams  # noqa: E402
from kinship.members.siamese_cnn import SiameseCnnMember  # noqa: E402

torch.set_num_threads(1)

KOCH = MemberParams(
    model="siamese_cnn", input_size=64, width=0.25, batch_size=4, head=HeadParams(hidden=[8])
)
FACENET = MemberParams(model="facenet", input_size=80, batch_size=2, head=HeadParams(hidden=[8]))


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def pair_batch(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n pairs as a group batch (2n images, one partner each)."""
    y = np.arange(n, dtype=np.float32) % 2
    return pairs_as_groups(images(n, size, seed), images(n, size, seed + 1), y)


def built(cls, params: MemberParams, name: str = "m", seed: int = 0):
    member = cls(name, params)
    member.build()
    member.reset(seed)
    return member


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: torch.nn.Module) -> list[str]:
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


# --- the pair head -------------------------------------------------------------------------------


def test_pair_features_by_hand():
    e1, e2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    expected = {
        "sq_diff": [4.0, 9.0],
        "sq_sub": [-8.0, 3.0],
        "prod": [3.0, -2.0],
        "abs_diff": [2.0, 3.0],
        "cosine": [1 / math.sqrt(50)],  # (3 − 2) / (√5 · √10)
    }
    assert set(torch_head.FEATURES) == set(PAIR_FEATURES)
    for name, values in expected.items():
        got = torch_head.pair_features(e1, e2, [name])
        torch.testing.assert_close(got, torch.tensor([values]))
    together = torch_head.pair_features(e1, e2, ["cosine", "abs_diff", "prod"])
    torch.testing.assert_close(together, torch.tensor([[1 / math.sqrt(50), 2.0, 3.0, 3.0, -2.0]]))
    assert torch_head.feature_width(["cosine", "abs_diff", "prod"], 2) == 5


def test_pair_head_layers_and_output_shape():
    head = torch_head.PairHead(6, HeadParams(features=["sq_diff", "cosine"], hidden=[5, 3]))
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(7, 5), (5, 3), (3, 1)]
    assert head(torch.rand(4, 6), torch.rand(4, 6)).shape == (4,)
    with pytest.raises(ValueError, match="two \\(N, D\\) embeddings"):
        head(torch.rand(4, 6), torch.rand(3, 6))


# --- siamese_cnn (Koch) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def koch_member():
    return built(SiameseCnnMember, KOCH)


def test_train_step_changes_backbone_and_head(koch_member):
    koch_member.reset(0)
    before = snapshot(koch_member.net)
    loss = koch_member.train_step(*pair_batch(4, 64))
    assert isinstance(loss, float) and math.isfinite(loss)
    assert set(changed(before, koch_member.net)) == set(before)  # every weight moved


def test_train_head_step_leaves_backbone_alone(koch_member):
    koch_member.reset(0)
    e = koch_member.embed(images(8, 64))
    before = snapshot(koch_member.net)
    koch_member.train_head_step(*pairs_as_groups(e[:4], e[4:], np.float32([1, 0, 1, 0])))
    moved = changed(before, koch_member.net)
    assert moved and all(k.startswith("head.") for k in moved)


def test_embed_and_score_shapes(koch_member):
    koch_member.reset(0)
    e = koch_member.embed(images(21, 64))  # more than one internal batch (4·4 = 16)
    assert e.shape == (21, 1024) and e.dtype == np.float32
    np.testing.assert_array_equal(e[16:], koch_member.embed(images(21, 64))[16:])
    p = koch_member.score(e[:10], e[10:20])
    assert p.shape == (10,) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))
    assert koch_member.embed(images(0, 64)).shape == (0, 1024)


def test_reset_is_seeded_and_restores_the_learning_rate(koch_member):
    x = images(4, 64)

    def outputs():
        e = koch_member.embed(x)
        return e, koch_member.score(e[:2], e[2:])

    koch_member.reset(1)
    first = outputs()
    koch_member.set_learning_rate(1e-5)
    assert koch_member.get_learning_rate() == pytest.approx(1e-5)
    koch_member.train_step(*pair_batch(4, 64))
    koch_member.reset(1)
    assert koch_member.get_learning_rate() == pytest.approx(KOCH.lr)
    for got, want in zip(outputs(), first, strict=True):
        np.testing.assert_array_equal(got, want)
    koch_member.reset(2)
    assert not np.array_equal(koch_member.embed(x), first[0])


def test_get_state_is_a_copy_and_set_state_restores_it(koch_member):
    koch_member.reset(0)
    e = koch_member.embed(images(8, 64))
    state = koch_member.get_state()
    best = koch_member.score(e[:4], e[4:])
    koch_member.train_step(*pair_batch(4, 64))
    assert not np.array_equal(koch_member.score(e[:4], e[4:]), best)
    koch_member.set_state(state)
    np.testing.assert_array_equal(koch_member.score(e[:4], e[4:]), best)


def test_save_load_round_trip(koch_member, tmp_path):
    koch_member.reset(0)
    koch_member.train_step(*pair_batch(4, 64))
    x = images(6, 64)
    e = koch_member.embed(x)
    koch_member.save(tmp_path / "fold0")
    config = json.loads((tmp_path / "fold0" / "config.json").read_text())
    assert config["name"] == "m" and config["class"] == "SiameseCnnMember"
    assert config["params"]["width"] == 0.25 and config["params"]["head"]["hidden"] == [8]
    other = built(SiameseCnnMember, KOCH, seed=5)
    other.load(tmp_path / "fold0")
    np.testing.assert_array_equal(other.embed(x), e)
    np.testing.assert_array_equal(other.score(e[:3], e[3:]), koch_member.score(e[:3], e[3:]))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"width": 0.5}, "width"),
        ({"input_size": 72}, "input_size"),
        ({"head": HeadParams(hidden=[8], features=["abs_diff"])}, "head.features"),
        ({"head": HeadParams(hidden=[16])}, "head.hidden"),
    ],
)
def test_load_with_another_config_fails_naming_the_key(koch_member, tmp_path, change, key):
    koch_member.save(tmp_path)
    other = built(SiameseCnnMember, dataclasses.replace(KOCH, **change), name="koch")
    with pytest.raises(ValueError, match=rf"has {key} = .*members\.koch\.{key} is") as err:
        other.load(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_load_without_a_checkpoint(koch_member, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        koch_member.load(tmp_path)


def test_siamese_cnn_refuses_weights_and_small_inputs():
    with pytest.raises(
        ValueError, match=r"members\.koch\.weights must be none: siamese_cnn has no published"
    ):
        SiameseCnnMember("koch", dataclasses.replace(KOCH, weights="w.pt", width=1.0))
    with pytest.raises(ValueError, match=r"members\.koch\.input_size must be at least 58 px"):
        SiameseCnnMember("koch", dataclasses.replace(KOCH, input_size=57))


# --- facenet -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory):
    """A state dict made by facenet-pytorch itself, as in its published vggface2 file."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(classify=True, num_classes=8631).state_dict()
    path = tmp_path_factory.mktemp("facenet") / "20180402-114759-vggface2.pt"
    torch.save(state, path)
    return path, {k: v for k, v in state.items() if not k.startswith("logits.")}


def assert_backbone_is(member, weights: dict) -> None:
    backbone = member.net.backbone.net.state_dict()
    assert backbone.keys() == weights.keys()
    assert all(torch.equal(backbone[k], weights[k]) for k in weights)


def test_facenet_frozen_trains_only_its_head(facenet_weights):
    path, weights = facenet_weights
    member = built(FacenetMember, dataclasses.replace(FACENET, weights=str(path), freeze=True))
    assert_backbone_is(member, weights)
    optimised = {id(p) for group in member.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in member.net.head.parameters()}
    before = snapshot(member.net)
    member.train_step(*pair_batch(2, 80))
    e = member.embed(images(4, 80))
    member.train_head_step(*pairs_as_groups(e[:2], e[2:], np.float32([1, 0])))
    assert_backbone_is(member, weights)  # BatchNorm statistics included
    assert changed(before, member.net) and all(
        k.startswith("head.") for k in changed(before, member.net)
    )


def test_facenet_fine_tuning_and_reset_restores_pretrained(facenet_weights):
    path, weights = facenet_weights
    member = built(FacenetMember, dataclasses.replace(FACENET, weights=str(path)))
    member.train_step(*pair_batch(2, 80))
    backbone = member.net.backbone.net.state_dict()
    assert not torch.equal(backbone["conv2d_1a.conv.weight"], weights["conv2d_1a.conv.weight"])
    member.reset(3)
    assert_backbone_is(member, weights)


def test_facenet_random_init_reset_is_seeded_and_round_trips(tmp_path):
    member = built(FacenetMember, FACENET, seed=3)
    first = snapshot(member.net)
    member.train_step(*pair_batch(2, 80))
    member.reset(3)
    assert changed(first, member.net) == []
    member.reset(4)
    assert "backbone.net.conv2d_1a.conv.weight" in changed(first, member.net)
    member.save(tmp_path)
    other = built(FacenetMember, FACENET, seed=9)
    other.load(tmp_path)
    x = images(3, 80)
    np.testing.assert_array_equal(other.embed(x), member.embed(x))


def test_facenet_refuses_small_inputs_and_widths():
    with pytest.raises(ValueError, match=r"members\.fn\.input_size must be at least 75 px"):
        FacenetMember("fn", dataclasses.replace(FACENET, input_size=74))
    with pytest.raises(ValueError, match=r"members\.fn\.width must be 1"):
        FacenetMember("fn", dataclasses.replace(FACENET, width=0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bfloat16 autocast runs on CUDA only")
def test_mixed_precision_on_cuda():
    member = built(SiameseCnnMember, dataclasses.replace(KOCH, mixed_precision=True))
    assert member.device.type == "cuda"
    assert math.isfinite(member.train_step(*pair_batch(4, 64)))
    e = member.embed(images(4, 64))
    p = member.score(e[:2], e[2:])
    assert e.dtype == np.float32 and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))


# --- repeatability -------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_settings(threads: int, deterministic: bool):
    old_threads, old_mode = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_mode)


@pytest.mark.parametrize("cls, params", [(SiameseCnnMember, KOCH), (FacenetMember, FACENET)])
def test_training_matches_torch_deterministic_mode(cls, params):
    """Seeded CPU training repeats bit for bit: what the default kernels compute equals what
    torch's deterministic-algorithms mode computes (threaded, as in the train stage). Gathering
    the partners by indexing failed this: its backward (`index_put_` with accumulation) adds in a
    thread-dependent order, and two runs of one commit gave different members."""
    size, group = params.input_size, 16
    x = images(group, size)
    partners = np.stack([(np.arange(group) + k) % group for k in (1, 2, 3, 4)], axis=1)
    y = (np.arange(partners.size).reshape(partners.shape) % 2).astype(np.float32)
    states = []
    for deterministic in (False, True):
        with torch_settings(threads=2, deterministic=deterministic):
            member = built(cls, dataclasses.replace(params, batch_size=group))
            for _ in range(3):
                member.train_step(x, partners, y)
            states.append(snapshot(member.net))
    assert changed(states[0], member.net) == []
