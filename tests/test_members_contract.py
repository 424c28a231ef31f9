"""The member contract, for every registered member: build, learn, predict, round-trip, preprocess.

Preprocessing is checked against the published formulas written out here, independently of the
members' code: VGGFace v1 (VGG16) / v2 (ResNet50, SENet50) BGR means, FaceNet (x − 127.5) / 128,
and the Koch network's [0, 1] scaling.
"""

from __future__ import annotations

import numpy as np
import pytest

from kinship.members.base import pairs_as_groups
from kinship.members.params import HeadParams, MemberParams
from kinship.members.registry import KERAS_MODELS, MODELS, create_member

VGGFACE_V1_BGR = np.array([93.5940, 104.7624, 129.1863])
VGGFACE_V2_BGR = np.array([91.4953, 103.8827, 131.0912])
REFERENCE_PREPROCESS = {
    "vggface_vgg16": lambda x: x[..., ::-1] - VGGFACE_V1_BGR,
    "vggface_resnet50": lambda x: x[..., ::-1] - VGGFACE_V2_BGR,
    "vggface_senet50": lambda x: x[..., ::-1] - VGGFACE_V2_BGR,
    "siamese_cnn": lambda x: x / 255.0,
    "facenet": lambda x: (x - 127.5) / 128.0,
}
# the smallest input each member accepts (rounded up to a size the tests use) and a fast width
SMALL = {
    "vggface_vgg16": (32, 0.25),
    "vggface_resnet50": (32, 0.25),
    "vggface_senet50": (32, 0.25),
    "siamese_cnn": (64, 0.25),
    "facenet": (80, 1.0),
}


def test_every_registered_member_is_covered():
    assert set(MODELS) == set(REFERENCE_PREPROCESS) == set(SMALL)


def test_registry_limits_match_the_members_code():
    from kinship.members import facenet_backbone, koch, vggface_arch
    from kinship.members.registry import LIMITS

    assert LIMITS["siamese_cnn"].min_input_size == koch.min_input_size()
    assert LIMITS["facenet"].min_input_size == facenet_backbone.min_input_size()
    for arch in ("vgg16", "resnet50", "senet50"):
        assert LIMITS[f"vggface_{arch}"].min_input_size >= vggface_arch.min_input_size(arch)


def _member(model: str, head: HeadParams | None = None):
    size, width = SMALL[model]
    params = MemberParams(
        model=model, input_size=size, width=width, batch_size=4, lr=1e-2, head=head or HeadParams()
    )
    member = create_member(f"contract_{model}", params)
    member.build()
    member.reset(0)
    return member


def _images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_member_contract(model, tmp_path):
    member = _member(model)
    size = member.input_size
    x1, x2 = _images(4, size, 1), _images(4, size, 2)
    y = np.array([1, 0, 1, 0], np.float32)

    # preprocessing follows the published formula (NCHW outputs compared as NHWC)
    out = np.asarray(member.preprocess(x1), dtype=np.float64)
    if out.shape[1] == 3 and out.shape[-1] != 3:
        out = out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, REFERENCE_PREPROCESS[model](x1.astype(np.float64)), atol=1e-3)

    # one optimiser step changes the (unfrozen) backbone: embeddings move
    before = member.embed(x1)
    loss = member.train_step(*pairs_as_groups(x1, x2, y))
    assert np.isfinite(loss)
    after = member.embed(x1)
    assert before.shape == after.shape and before.shape[0] == 4
    assert not np.allclose(before, after)

    # a tiny epoch, then probabilities in [0, 1], one per pair
    for _ in range(2):
        member.train_step(*pairs_as_groups(x2, x1, y))
    e1, e2 = member.embed(x1), member.embed(x2)
    probs = member.score(e1, e2)
    assert probs.shape == (4,) and np.all((probs >= 0) & (probs <= 1))

    # reset(seed) is deterministic
    member.reset(3)
    fresh = member.embed(x1)
    member.reset(3)
    np.testing.assert_allclose(member.embed(x1), fresh, rtol=1e-5, atol=1e-5)

    # save → a new member → load gives identical predictions
    member.train_step(*pairs_as_groups(x1, x2, y))
    member.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    expected = member.score(member.embed(x1), member.embed(x2))
    twin = _member(model)
    twin.load(tmp_path / "ckpt")
    got = twin.score(twin.embed(x1), twin.embed(x2))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_group_batch_loss_is_the_mean_bce_of_its_pairs(model):
    """A group batch scores exactly the pairs (i, partners[i, j]): the head step's loss equals
    the BCE of `score` on those pairs written out one by one (no dropout: train = inference)."""
    member = _member(model, HeadParams(hidden=[8], dropout=0.0))
    rng = np.random.default_rng(5)
    embeddings = member.embed(_images(6, member.input_size, 4))
    partners = rng.integers(0, 6, size=(6, 3)).astype(np.int32)
    labels = rng.integers(0, 2, size=(6, 3)).astype(np.float32)
    anchors = np.repeat(np.arange(6), 3)
    probs = member.score(embeddings[anchors], embeddings[partners.reshape(-1)]).astype(np.float64)
    expected = -np.mean(
        labels.reshape(-1) * np.log(probs) + (1 - labels.reshape(-1)) * np.log(1 - probs)
    )
    assert member.train_head_step(embeddings, partners, labels) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("partners", "labels", "match"),
    [
        (np.zeros((3, 2), np.int32), np.zeros((3, 2), np.float32), r"shape \(4, M\)"),
        (np.zeros((4, 2), np.int32), np.zeros((4, 3), np.float32), "labels"),
        (np.full((4, 2), 4, np.int32), np.zeros((4, 2), np.float32), r"rows in \[0, 4\)"),
        (np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32), "integer rows"),
    ],
)
def test_bad_group_batches_are_rejected(partners, labels, match):
    member = _member("siamese_cnn")
    with pytest.raises(ValueError, match=match):
        member.train_step(_images(4, member.input_size, 0), partners, labels)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_state_round_trip_continues_the_same_steps(model, tmp_path):
    """`--resume` restores weights and optimiser state: the steps after a saved training state
    repeat on a member loaded from it (Adam's moments and step count included)."""
    size, _ = SMALL[model]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    batch = pairs_as_groups(images[:4], images[4:], np.float32([1, 0, 1, 0]))
    member = _member(model)
    for _ in range(2):
        member.train_step(*batch)
    member.set_learning_rate(5e-3)
    member.save_training_state(tmp_path)
    continued = [member.train_step(*batch) for _ in range(2)]
    expected = member.embed(images[:2])
    other = _member(model)  # a fresh optimiser and other weights
    other.load_training_state(tmp_path)
    assert other.get_learning_rate() == pytest.approx(5e-3)
    again = [other.train_step(*batch) for _ in range(2)]
    np.testing.assert_allclose(again, continued, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(other.embed(images[:2]), expected, rtol=1e-3, atol=1e-4)


def _weights(member) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of (backbone, head) trainable weights, whatever the framework."""
    if member.framework == "torch":
        parts = (member.net.backbone, member.net.head)
        return tuple([p.detach().cpu().numpy().copy() for p in m.parameters()] for m in parts)
    from keras import ops

    parts = (member.models.backbone, member.models.head)
    return tuple([ops.convert_to_numpy(v).copy() for v in m.trainable_variables] for m in parts)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_backbone_and_head_step_at_their_own_rates(model):
    """`backbone_lr`: Adam's first step moves each weight by about its rate (|m̂ / √v̂| = 1), so
    the largest backbone change is about backbone_lr and the head's about lr; set_learning_rate
    keeps the ratio."""
    size, width = SMALL[model]
    params = MemberParams(
        model=model, input_size=size, width=width, batch_size=4, lr=1e-2, backbone_lr=1e-4
    )
    member = create_member(f"rates_{model}", params)
    member.build()
    member.reset(0)
    member.set_learning_rate(2e-2)  # as a warm-up or a plateau cut would: the ratio holds
    before = _weights(member)
    member.train_step(
        *pairs_as_groups(_images(4, size, 1), _images(4, size, 2), np.float32([1, 0] * 2))
    )
    after = _weights(member)
    moved = [
        max(np.abs(a - b).max() for a, b in zip(x, y, strict=True))
        for x, y in zip(after, before, strict=True)
    ]
    assert moved[0] == pytest.approx(2e-4, rel=0.05)
    assert moved[1] == pytest.approx(2e-2, rel=0.05)
    assert member.get_learning_rate() == pytest.approx(2e-2)


@pytest.mark.parametrize("model", sorted(set(MODELS) - KERAS_MODELS))
def test_the_device_path_repeats_from_a_seed_and_resumes(model, tmp_path):
    """`upload` + `train_uploaded` (the torch members; Keras on its torch backend, tested in
    test_keras_members): the same seed gives the same steps, augmentation included, and a saved
    training state continues them exactly."""
    member = _member(model)
    assert member.device_path
    size = member.input_size
    batch = pairs_as_groups(_images(4, size, 1), _images(4, size, 2), np.float32([1, 0] * 2))

    def steps(m, n=2):
        return [float(m.train_uploaded(m.upload(*batch))) for _ in range(n)]

    member.reset(3)
    first = steps(member)
    member.reset(3)
    assert steps(member) == first
    member.save_training_state(tmp_path)
    expected = steps(member)
    other = _member(model)
    other.load_training_state(tmp_path)
    np.testing.assert_allclose(steps(other), expected, rtol=1e-5)
