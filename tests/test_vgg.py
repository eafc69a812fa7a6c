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


# --- pre-activation layers (convX_Y), per-layer weights and the L1 criterion: Real-ESRGAN's perceptual loss ---

# BasicSR's basicsr/archs/vgg_arch.py NAMES: the layers of torchvision's ``features``, in order
BASICSR_NAMES = {
    "vgg16": ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
              "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3", "conv4_1", "relu4_1",
              "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4", "conv5_1", "relu5_1", "conv5_2", "relu5_2",
              "conv5_3", "relu5_3", "pool5"],
    "vgg19": ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
              "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
              "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
              "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5"],
}
REAL_ESRGAN_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


@pytest.mark.parametrize("backbone, cfg", [("vgg16", "D"), ("vgg19", "E")])
def test_layer_names_are_basicsrs(backbone, cfg):
    from srframe_plugins.srgan.vgg import LAYERS, layer_names

    names = layer_names(make_layers(cfgs[cfg]))
    expected = {name: index for index, name in enumerate(BASICSR_NAMES[backbone]) if not name.startswith("pool")}
    assert names == expected
    assert sorted(LAYERS[backbone]) == sorted(expected)  # what recipes may name, checked without weights


def test_real_esrgans_layers_are_the_convolutions_before_their_relu():
    from srframe_plugins.srgan.vgg import layer_names

    names = layer_names(make_layers(cfgs["E"]))
    assert {layer: names[layer] for layer in REAL_ESRGAN_LAYERS} == \
        {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}


def _by_hand(features, index, x):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return features[: index + 1]((x - mean) / std)


def test_pre_activation_features_are_the_conv_output_and_differ_from_post_relu(random_vgg16):
    path, features = random_vgg16
    features.eval()
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    conv = srframe.build("loss", "vgg", backbone="vgg16", layers="conv2_2", weights=str(path))
    relu = srframe.build("loss", "vgg", backbone="vgg16", layers="relu2_2", weights=str(path))
    assert conv.vgg.indices == {"conv2_2": 7} and len(conv.vgg.features) == 8  # cut before relu2_2
    captured = conv.vgg(sr)["conv2_2"]
    with torch.no_grad():
        expected = _by_hand(features, 7, sr)
    assert torch.allclose(captured, expected, atol=1e-6)
    assert captured.min() < 0  # before the ReLU: negative values survive
    assert torch.allclose(relu.vgg(sr)["relu2_2"], expected.clamp(min=0), atol=1e-6)
    with torch.no_grad():
        pre, post = conv(LossContext(sr=sr, hr=hr)), relu(LossContext(sr=sr, hr=hr))
    assert pre.item() == pytest.approx(F.mse_loss(expected, _by_hand(features, 7, hr)).item(), rel=1e-5)
    assert pre.item() > post.item() * 1.05  # the ReLU throws away the differences of negative responses


def test_per_layer_weights_give_the_weighted_sum_of_single_layer_losses(random_vgg16):
    path, _ = random_vgg16
    layers = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0, "relu3_3": 0.5}
    sr, hr = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    combined = srframe.build("loss", "vgg", backbone="vgg16", criterion="l1", layers=layers, weights=str(path))
    value = combined(LossContext(sr=sr, hr=hr))
    value.backward()
    sr2 = sr.detach().clone().requires_grad_(True)
    expected = sum(weight * srframe.build("loss", "vgg", backbone="vgg16", criterion="l1", layers=layer,
                                          weights=str(path))(LossContext(sr=sr2, hr=hr))
                   for layer, weight in layers.items())
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(sr.grad, sr2.grad, rtol=1e-4, atol=1e-9)


def test_the_l1_criterion_is_the_mean_absolute_feature_difference(random_vgg16):
    path, features = random_vgg16
    features.eval()
    sr, hr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    loss = srframe.build("loss", "vgg", backbone="vgg16", criterion="l1", layers={"conv1_2": 0.1, "conv3_3": 1.0},
                         weights=str(path))
    with torch.no_grad():
        value = loss(LossContext(sr=sr, hr=hr))
        expected = sum(w * (_by_hand(features, i, sr) - _by_hand(features, i, hr)).abs().mean()
                       for i, w in ((2, 0.1), (14, 1.0)))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_real_esrgans_perceptual_loss_checks_without_its_weights():
    """Checked as `srframe recipe check` checks it, before (and without) ImageNet VGG19."""
    from srframe.schema import Checker

    entry = srframe.registry.get("loss", "vgg")
    params = {"layers": REAL_ESRGAN_LAYERS, "backbone": "vgg19", "criterion": "l1"}
    checker = Checker()
    checked = checker.check_table(params, entry.schema, (), 'loss "vgg"')
    assert not checker.problems and checker.check_params(entry.factory, checked, (), 'loss "vgg"')
    assert checked["layers"] == REAL_ESRGAN_LAYERS


def test_vgg16_has_no_conv5_4_and_the_message_lists_its_convolutions(random_vgg16):
    path, _ = random_vgg16
    with pytest.raises(RecipeError, match=r'layers: vgg16 has no layer "conv5_4" .* choose one of conv1_1, conv1_2, '
                                          r".*conv5_3, or backbone"):
        srframe.build("loss", "vgg", backbone="vgg16", layers={"conv5_4": 1.0}, weights=str(path))


def test_an_unknown_layer_names_both_kinds():
    with pytest.raises(RecipeError, match=r'unknown VGG layer "conv54"; did you mean "conv5_4".*same names with conv'):
        srframe.build("loss", "vgg", layers={"conv54": 1.0})
