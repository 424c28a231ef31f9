"""Torch backbones: Koch et al. (2015) conv net and facenet-pytorch's InceptionResnetV1."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: E402

from kinship.members import koch  # noqa: E402
from kinship.members.koch import KochBackbone  # noqa: E402

torch.set_num_threads(1)

# The paper's net (Fig. 4), one grey channel: (in, out, kernel) convs, FC 256·6·6 → 4096, output.
PAPER_CONVS = [(1, 64, 10), (64, 128, 7), (128, 128, 4), (128, 256, 4)]
PAPER_TOTAL = 38_951_745  # incl. the final 4096 → 1 unit (the pair head's job here)


def paper_param_count(in_channels: int) -> int:
    convs = [(in_channels, *PAPER_CONVS[0][1:])] + PAPER_CONVS[1:]
    conv = sum(c_in * c_out * k * k + c_out for c_in, c_out, k in convs)
    return conv + (256 * 6 * 6 * 4096 + 4096)


def test_koch_paper_parameter_count():
    assert paper_param_count(1) + 4096 + 1 == PAPER_TOTAL
    for channels in (1, 3):
        net = KochBackbone(input_size=105, in_channels=channels)
        assert sum(p.numel() for p in net.parameters()) == paper_param_count(channels)
    assert net.fc.in_features == 9216


@pytest.mark.parametrize(
    ("size", "width", "fc_in", "out"), [(105, 1.0, 9216, 4096), (64, 0.25, 64, 1024)]
)
def test_koch_output_shapes(size, width, fc_in, out):
    net = KochBackbone(input_size=size, width=width).eval()
    assert net.fc.in_features == fc_in
    with torch.no_grad():
        y = net(torch.rand(2, 3, size, size))
    assert y.shape == (2, out) and net.out_features == out
    assert torch.all((y >= 0) & (y <= 1))


def test_koch_minimum_input_size_is_what_torch_accepts():
    smallest = koch.min_input_size()
    net = KochBackbone(input_size=smallest, width=0.25).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, smallest, smallest)).shape == (1, 1024)
        with pytest.raises(RuntimeError):
            net.features(torch.rand(1, 3, smallest - 1, smallest - 1))
    with pytest.raises(ValueError, match="input_size"):
        KochBackbone(input_size=smallest - 1)


def test_koch_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="width"):
        KochBackbone(width=0)
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\).*\(2, 3, 65, 65\)"):
        KochBackbone(input_size=64, width=0.25)(torch.rand(2, 3, 65, 65))


def test_koch_init_statistics_follow_the_paper():
    net = KochBackbone(input_size=105)
    net.reset_parameters(seed=0)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    conv_w = torch.cat([c.weight.detach().flatten() for c in convs])
    fc_w = net.fc.weight.detach()
    biases = torch.cat([c.bias.detach() for c in [*convs, net.fc]])
    assert abs(conv_w.mean().item()) < 1e-3 and conv_w.std().item() == pytest.approx(1e-2, rel=0.02)
    assert abs(fc_w.mean().item()) < 1e-3 and fc_w.std().item() == pytest.approx(0.2, rel=0.02)
    assert biases.mean().item() == pytest.approx(0.5, abs=1e-3)
    assert biases.std().item() == pytest.approx(1e-2, rel=0.1)


def test_koch_reset_is_seeded():
    a, b = KochBackbone(input_size=64, width=0.25), KochBackbone(input_size=64, width=0.25)
    a.reset_parameters(seed=3)
    b.reset_parameters(seed=3)
    assert torch.equal(a.fc.weight, b.fc.weight)
    b.reset_parameters(seed=4)
    assert not torch.equal(a.fc.weight, b.fc.weight)


def test_koch_one_optimiser_step_changes_every_weight():
    net = KochBackbone(input_size=64, width=0.25)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x1, x2 = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    logit = (net(x1) - net(x2)).abs().sum(dim=1) - 1.0  # Koch's L1 head, untrained weights
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([1.0, 0, 1, 0]))
    loss.backward()
    torch.optim.Adam(net.parameters(), lr=1e-3).step()
    unchanged = [k for k, v in net.state_dict().items() if torch.equal(v, before[k])]
    assert unchanged == []


def test_koch_preprocess_scales_and_transposes():
    images = np.zeros((2, 4, 5, 3), np.uint8)
    images[1, 2, 3] = (255, 128, 0)
    out = koch.preprocess(images)
    assert out.dtype == np.float32 and out.shape == (2, 3, 4, 5) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[1, :, 2, 3], np.float32([1.0, 128 / 255, 0.0]))
    assert out.sum() == pytest.approx(1 + 128 / 255)
    with pytest.raises(ValueError, match="uint8"):
        koch.preprocess(images.astype(np.float32))


# --- FaceNet -------------------------------------------------------------------------------------

NUM_CLASSES = {"vggface2": 8631, "casia-webface": 10575}


@pytest.fixture(scope="module")
def fb():
    from kinship.members import facenet_backbone

    return facenet_backbone


def facenet_pytorch_model(num_classes: int, seed: int):
    """A model built by facenet-pytorch itself, with non-default BatchNorm statistics."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(seed)
    model = InceptionResnetV1(classify=True, num_classes=num_classes).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def weight_files(fb, tmp_path_factory):
    """name → (facenet-pytorch model, its state dict saved under the published file name)."""
    folder = tmp_path_factory.mktemp("facenet")
    files = {}
    for seed, (name, file_name) in enumerate(fb.WEIGHT_FILES.items()):
        model = facenet_pytorch_model(NUM_CLASSES[name], seed)
        torch.save(model.state_dict(), folder / file_name)
        files[name] = (model, folder / file_name)
    return files


@pytest.mark.parametrize("name", list(NUM_CLASSES))
def test_facenet_loads_facenet_pytorch_weights(fb, weight_files, name):
    source, path = weight_files[name]
    assert source.state_dict()["logits.weight"].shape == (NUM_CLASSES[name], 512)
    x = torch.rand(2, 3, 160, 160) * 2 - 1
    model = fb.FacenetBackbone().eval()
    with torch.no_grad():
        before = model(x)
        fb.load_facenet_weights(model, path)
        after = model(x)
        last_bn = []
        hook = source.last_bn.register_forward_hook(lambda _m, _i, out: last_bn.append(out))
        source.classify = False  # facenet-pytorch's own embedding: L2-normalised last_bn output
        normalised = source(x)
        source.classify = True
        hook.remove()
    assert after.shape == (2, 512) and not torch.allclose(before, after)
    torch.testing.assert_close(after, last_bn[0], rtol=0, atol=0)
    torch.testing.assert_close(torch.nn.functional.normalize(after), normalised)
    assert not torch.allclose(after.norm(dim=1), torch.ones(2), atol=0.1)


def _edit(state: dict, kind: str) -> tuple[dict, str]:
    state = dict(state)
    if kind == "renamed":
        state["repeat_1.0.branch0.conv.weights"] = state.pop("repeat_1.0.branch0.conv.weight")
        return state, r"'repeat_1\.0\.branch0\.conv\.weights'.*'repeat_1\.0\.branch0\.conv\.weight'"
    if kind == "missing":
        del state["block8.conv2d.bias"]
        return state, r"missing key 'block8\.conv2d\.bias'"
    state["last_linear.weight"] = torch.zeros(512, 1024)
    return state, r"'last_linear\.weight' has shape \(512, 1024\), the model expects \(512, 1792\)"


@pytest.mark.parametrize("kind", ["renamed", "missing", "misshaped"])
def test_facenet_weights_that_do_not_fit_fail_naming_the_key(fb, weight_files, tmp_path, kind):
    source, _ = weight_files["vggface2"]
    state, message = _edit(source.state_dict(), kind)
    path = tmp_path / f"{kind}.pt"
    torch.save(state, path)
    model = fb.FacenetBackbone()
    untouched = model.net.last_bn.running_var.clone()
    with pytest.raises(ValueError, match=message) as err:
        fb.load_facenet_weights(model, path)
    assert str(path) in str(err.value)
    assert torch.equal(model.net.last_bn.running_var, untouched)


def test_facenet_missing_or_unreadable_file(fb, tmp_path):
    path = tmp_path / "weights" / "20180402-114759-vggface2.pt"
    with pytest.raises(FileNotFoundError) as err:
        fb.load_facenet_weights(fb.FacenetBackbone(), path)
    for text in (str(path), "v2.2.9", *fb.WEIGHT_FILES.values(), "params.yaml", "dvc add"):
        assert text in str(err.value)
    path.parent.mkdir()
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch state dict"):
        fb.load_facenet_weights(fb.FacenetBackbone(), path)


def test_facenet_refuses_other_widths_and_models(fb, weight_files):
    with pytest.raises(ValueError, match="width must be 1"):
        fb.FacenetBackbone(width=0.5)
    with pytest.raises(ValueError, match="FacenetBackbone at width 1"):
        fb.load_facenet_weights(
            KochBackbone(input_size=64, width=0.25), weight_files["vggface2"][1]
        )


def test_facenet_minimum_input_size_is_what_facenet_pytorch_accepts(fb, weight_files):
    source, _ = weight_files["vggface2"]
    smallest = fb.min_input_size()
    with torch.no_grad():
        assert source(torch.rand(1, 3, smallest, smallest)).shape == (1, 8631)
        with pytest.raises(RuntimeError):
            source(torch.rand(1, 3, smallest - 1, smallest - 1))
    with pytest.raises(ValueError, match="input_size"):
        fb.FacenetBackbone(input_size=smallest - 1)


def test_facenet_preprocess(fb):
    images = np.array([0, 255, 128, 127, 1, 2], np.uint8).reshape(1, 1, 2, 3)
    out = fb.preprocess(images)
    assert out.dtype == np.float32 and out.shape == (1, 3, 1, 2)
    expected = np.float32(
        [[-0.99609375, -0.00390625], [0.99609375, -0.98828125], [0.00390625, -0.98046875]]
    )
    np.testing.assert_array_equal(out[0, :, 0, :], expected)
