"""The VGG content loss, and where its ImageNet weights come from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.vgg import cfgs, make_layers

import srframe
from srframe.errors import RecipeError, WeightsError
from srframe.interfaces import LossContext
from srframe.weights import find_vgg_weights, load_vgg_features

# torchvision's ImageNet VGG16, features.0.weight[0]: the first filter, as torchvision publishes it
VGG16_FIRST_FILTER = torch.tensor([
    [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]],
    [[0.1755, 0.0099, -0.0814], [0.0441, -0.0703, -0.2604], [0.1324, -0.1728, -0.1323]],
    [[0.3130, -0.1659, -0.4275], [0.4752, -0.0827, -0.4870], [0.6320, 0.0193, -0.2775]],
])


@pytest.fixture
def random_vgg16(tmp_path):
    """A weights file with torchvision's VGG16 layout and random values (for exact arithmetic checks)."""
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])
    path = tmp_path / "vgg16_random.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, str(path))
    return path, features


def test_without_weights_the_error_lists_every_place_and_the_fix(nowhere):
    with pytest.raises(WeightsError) as caught:
        srframe.build("loss", "vgg", backbone="vgg16", layers="relu2_2")
    message = str(caught.value)
    assert str(nowhere / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert str(nowhere / "srframe" / "vgg16_features.safetensors") in message
    assert "SRFRAME_OFFLINE=1" in message and "srframe weights fetch vgg16" in message


def test_a_missing_explicit_file_is_named(nowhere):
    with pytest.raises(RecipeError, match=r'weights: ".*missing\.pth" does not exist: expected an existing file'):
        srframe.build("loss", "vgg", backbone="vgg16", weights=str(nowhere / "missing.pth"))


def test_layer_names_are_checked_with_the_recipe():
    with pytest.raises(RecipeError, match=r'unknown VGG layer "relu54"; did you mean "relu5_4"'):
        srframe.build("loss", "vgg", layers=["relu2_2", "relu54"])


def test_vgg16_has_no_relu5_4(random_vgg16):
    path, _ = random_vgg16
    with pytest.raises(RecipeError, match='layers: vgg16 has no layer "relu5_4"'):
        srframe.build("loss", "vgg", backbone="vgg16", layers="relu5_4", weights=str(path))


def test_loss_value_and_gradient_match_features_computed_by_hand(random_vgg16):
    path, features = random_vgg16
    features.eval()
    loss = srframe.build("loss", "vgg", backbone="vgg16", layers={"relu1_2": 0.5, "relu2_2": 2.0},
                         weights=str(path), rescale=True)
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16)
    value = loss(LossContext(sr=sr, hr=hr))
    value.backward()

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    sr2 = sr.detach().clone().requires_grad_(True)

    def relu(x, index):  # torchvision's features[: index + 1], relu1_2 = 3, relu2_2 = 8
        return features[: index + 1]((x - mean) / std) / 12.75

    expected = 0.5 * F.mse_loss(relu(sr2, 3), relu(hr, 3)) + 2.0 * F.mse_loss(relu(sr2, 8), relu(hr, 8))
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(sr.grad, sr2.grad, rtol=1e-4, atol=1e-9)
    assert not any(p.requires_grad for p in loss.parameters())


def test_backbone_stays_in_eval_mode_and_frozen(random_vgg16):
    path, _ = random_vgg16
    loss = srframe.build("loss", "vgg", backbone="vgg16", layers="relu3_3", weights=str(path)).train()
    assert not loss.vgg.training
    assert len(loss.vgg.features) == 16  # cut after relu3_3, nothing deeper is computed


def _imagenet_vgg16():
    try:
        return load_vgg_features("vgg16")
    except WeightsError as exc:
        pytest.skip(f"ImageNet VGG16 weights unavailable here ({str(exc).splitlines()[0]}); "
                    "run `srframe weights fetch vgg16` to enable this test")


def test_vgg16_weights_are_torchvisions_imagenet_features():
    state = _imagenet_vgg16()
    assert torch.allclose(state["0.weight"][0], VGG16_FIRST_FILTER, atol=5e-5)
    assert {k for k in state} == {f"{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
                                  for p in ("weight", "bias")}


def test_imagenet_features_tell_photographs_apart():
    """Deep ImageNet features of two crops of one photo are closer than crops of different photos."""
    from skimage import data

    state = _imagenet_vgg16()
    features = make_layers(cfgs["D"])
    features.load_state_dict(state)
    features = features[:30].eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def crop(image, top, left):
        patch = torch.from_numpy(image[top:top + 128, left:left + 128]).permute(2, 0, 1).float() / 255
        return (patch - mean[0]) / std[0]

    cat, coffee = data.chelsea(), data.coffee()
    batch = torch.stack([crop(cat, 60, 140), crop(cat, 80, 160), crop(coffee, 150, 200)])
    with torch.no_grad():
        pooled = F.normalize(features(batch).mean((2, 3)), dim=1)
    same, different = (pooled[0] @ pooled[1]).item(), (pooled[0] @ pooled[2]).item()
    assert same > different + 0.2


def test_explicit_weights_file_wins_over_the_caches(random_vgg16, nowhere):
    path, _ = random_vgg16
    assert find_vgg_weights("vgg16", path) == path
