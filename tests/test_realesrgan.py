"""Real-ESRGAN (Wang et al., ICCVW 2021): the U-Net discriminator with spectral norm, its place in a GAN
stage, and recipes/realesrgan_x4.toml against the values of Real-ESRGAN's options files."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import srframe
from srframe import testing
from srframe.cli import main
from srframe.errors import SrframeError
from srframe.interfaces import DiscriminatorContext, LossContext
from srframe.recipe import load_document, load_recipe
from srframe.train.stage import stage_seed

import train_helpers as h
from train_helpers import one_thread  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "realesrgan_x4.toml"


# --- the discriminator --------------------------------------------------------------------------------

def reference_keys(num_in_ch: int = 3, num_feat: int = 64) -> dict[str, tuple[int, ...]]:
    """The state dict of Real-ESRGAN's UNetDiscriminatorSN (realesrgan/archs/discriminator_arch.py), written
    out from its code: conv0 and conv9 plain convs with bias; conv1..conv8 bias-free under
    torch.nn.utils.spectral_norm, which keeps weight_orig, weight_u (out,) and weight_v (in * kh * kw,)."""
    f = num_feat
    keys: dict[str, tuple[int, ...]] = {"conv0.weight": (f, num_in_ch, 3, 3), "conv0.bias": (f,)}
    spectral = [("conv1", f, f * 2, 4), ("conv2", f * 2, f * 4, 4), ("conv3", f * 4, f * 8, 4),
                ("conv4", f * 8, f * 4, 3), ("conv5", f * 4, f * 2, 3), ("conv6", f * 2, f, 3),
                ("conv7", f, f, 3), ("conv8", f, f, 3)]
    for name, maps_in, maps_out, k in spectral:
        keys[f"{name}.weight_orig"] = (maps_out, maps_in, k, k)
        keys[f"{name}.weight_u"] = (maps_out,)
        keys[f"{name}.weight_v"] = (maps_in * k * k,)
    keys["conv9.weight"] = (1, f, 3, 3)
    keys["conv9.bias"] = (1,)
    return keys


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, skip: bool = True) -> torch.Tensor:
    """UNetDiscriminatorSN.forward in eval mode, from its state dict alone (spectral norm's weight is
    weight_orig / (u . W v), no power iteration in eval mode)."""

    def conv(name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        if f"{name}.weight_orig" in state:
            w, u, v = state[f"{name}.weight_orig"], state[f"{name}.weight_u"], state[f"{name}.weight_v"]
            weight = w / torch.dot(u, w.reshape(w.shape[0], -1) @ v)
        else:
            weight = state[f"{name}.weight"]
        return F.conv2d(x, weight, state.get(f"{name}.bias"), stride=stride, padding=1)

    def act(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2)

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    x0 = act(conv("conv0", x))
    x1 = act(conv("conv1", x0, 2))
    x2 = act(conv("conv2", x1, 2))
    x3 = act(conv("conv3", x2, 2))
    x4 = act(conv("conv4", up(x3))) + (x2 if skip else 0)
    x5 = act(conv("conv5", up(x4))) + (x1 if skip else 0)
    x6 = act(conv("conv6", up(x5))) + (x0 if skip else 0)
    return conv("conv9", act(conv("conv8", act(conv("conv7", x6)))))


def test_the_state_dict_has_real_esrgans_keys_and_shapes():
    discriminator = srframe.build("discriminator", "unet")
    state = discriminator.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == reference_keys()
    assert list(state) == list(reference_keys())  # the reference's order, too
    assert sum(p.numel() for p in discriminator.parameters()) == 4_376_897  # the published netD's count


def test_a_published_checkpoint_layout_loads_and_runs_as_the_reference_does():
    """A state dict in the reference layout (what RealESRGAN_x4plus_netD.pth holds under "params") loads
    strictly, and the forward pass is the reference's."""
    torch.manual_seed(0)
    params = {k: torch.randn(shape) * 0.05 for k, shape in reference_keys(num_feat=16).items()}
    for key in [k for k in params if k.endswith(("weight_u", "weight_v"))]:
        params[key] = F.normalize(params[key], dim=0)
    discriminator = srframe.build("discriminator", "unet", num_feat=16)
    discriminator.load_state_dict({"params": params}["params"], strict=True)
    discriminator.eval()
    image = torch.rand(2, 3, 32, 24)
    with torch.no_grad():
        logits = discriminator(image)
    assert logits.shape == (2, 1, 32, 24)  # a logit per pixel
    assert torch.allclose(logits, reference_forward(params, image), atol=1e-5)


def test_without_skip_connections():
    discriminator = srframe.build("discriminator", "unet", num_feat=8, skip_connection=False).eval()
    state = discriminator.state_dict()
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(discriminator(image), reference_forward(state, image, skip=False), atol=1e-6)


def test_spectral_norm_bounds_the_layers_it_covers():
    """After enough power iterations in training mode, each normalised weight has spectral norm 1."""
    discriminator = srframe.build("discriminator", "unet", num_feat=8).train()
    with torch.no_grad():
        for _ in range(30):
            discriminator(torch.rand(1, 3, 16, 16))
    for name in ("conv1", "conv4", "conv8"):
        weight = getattr(discriminator, name).weight
        assert torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2).item() == pytest.approx(1, rel=1e-2)
    assert not hasattr(discriminator.conv0, "weight_orig") and not hasattr(discriminator.conv9, "weight_orig")


@pytest.mark.parametrize("size", [(30, 32), (32, 36), (4, 4)])
def test_a_size_that_is_not_a_multiple_of_8_is_refused_with_the_rule(size):
    discriminator = srframe.build("discriminator", "unet", num_feat=4)
    with pytest.raises(SrframeError, match=rf"multiples of 8 .* got {size[0]}x{size[1]}: choose an HR patch_size"):
        discriminator(torch.rand(1, 3, *size))


def test_it_keeps_the_discriminator_contract():
    testing.check_discriminator("unet", {"num_feat": 8})
    testing.check_discriminator("unet", {"num_feat": 4, "skip_connection": False})


def test_the_adversarial_loss_averages_per_pixel_logits_as_basicsr_does():
    """BasicSR's vanilla GANLoss is BCEWithLogits (mean over every logit): G against 1, D real 1 + fake 0."""
    torch.manual_seed(0)
    discriminator = srframe.build("discriminator", "unet", num_feat=4)
    loss = srframe.build("loss", "adversarial", mode="vanilla")
    hr, sr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16, requires_grad=True)
    ctx = LossContext(sr=sr, hr=hr, discriminator=discriminator)
    fake = ctx.fake_logits
    assert fake.shape == (2, 1, 16, 16)
    assert loss(ctx).item() == pytest.approx(F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)).item())
    d_ctx = DiscriminatorContext(real=hr, fake=sr.detach(), discriminator=discriminator)
    real, fake = d_ctx.real_logits, d_ctx.fake_logits
    expected = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) \
        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    assert loss.discriminator_loss(d_ctx).item() == pytest.approx(expected.item())


def test_a_gan_stage_trains_with_the_unet_discriminator(tmp_path):
    recipe = h.write_recipe(tmp_path / "unet.toml", h.recipe_data(
        [h.gan_stage("gan", 2, discriminator={"kind": "unet", "num_feat": 8})],
        train={"checkpoint_every": 2}))
    run_dir = h.run_inprocess(recipe, tmp_path / "run")
    records = h.train_records(run_dir)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert all(np.isfinite(record[k]) for k in ("l1", "adversarial", "d_adversarial", "d_real", "d_fake"))
    saved = h.tensors(run_dir / "checkpoints" / "00000002" / "discriminator.safetensors")
    assert set(saved) == set(reference_keys(num_feat=8))
    torch.manual_seed(stage_seed(0, 0))  # the stage's discriminator is the first thing drawn after this seed
    untrained = srframe.build("discriminator", "unet", num_feat=8).state_dict()
    assert not torch.equal(saved["conv9.weight"], untrained["conv9.weight"])  # trained
    discriminator = srframe.load_component(run_dir / "checkpoints" / "00000002" / "discriminator.safetensors",
                                           "discriminator")
    assert type(discriminator).__name__ == "UNetDiscriminatorSN"


def test_a_patch_size_the_unet_cannot_take_stops_the_run_with_the_rule(tmp_path):
    recipe = h.write_recipe(tmp_path / "unet.toml", h.recipe_data(
        [h.gan_stage("gan", 2, discriminator={"kind": "unet", "num_feat": 4})], data_train={"patch_size": 20}))
    with pytest.raises(SrframeError, match=r"multiples of 8 .* got 20x20"):
        h.run_inprocess(recipe, tmp_path / "run")


# --- recipes/realesrgan_x4.toml ----------------------------------------------------------------------

# From xinntao/Real-ESRGAN options/train_realesrnet_x4plus.yml and train_realesrgan_x4plus.yml.
REAL_ESRGAN = {
    "resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.15, 1.5], "gaussian_noise_prob": 0.5,
    "noise_range": [1, 30], "poisson_scale_range": [0.05, 3], "gray_noise_prob": 0.4, "jpeg_range": [30, 95],
    "second_blur_prob": 0.8, "resize_prob2": [0.3, 0.4, 0.3], "resize_range2": [0.3, 1.2],
    "gaussian_noise_prob2": 0.5, "noise_range2": [1, 25], "poisson_scale_range2": [0.05, 2.5],
    "gray_noise_prob2": 0.4, "jpeg_range2": [30, 95], "gt_size": 256,
    "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],  # iso, aniso, generalized iso/aniso, plateau iso/aniso
    "sinc_prob": 0.1, "blur_sigma": [0.2, 3], "blur_sigma2": [0.2, 1.5], "final_sinc_prob": 0.8,
    "kernel_range": [7, 21], "batch_size_per_gpu": 12, "num_gpu": 4,
}


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    """Two 260x300 images standing in for DF2K + OST."""
    folder = tmp_path_factory.mktemp("df2k_ost")
    for i in range(2):
        Image.fromarray(np.full((260, 300, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_the_recipe_passes_recipe_check(hr_folder, capsys):
    """Needs the generator "rrdbnet" (the spandrel plugin)."""
    assert main(["recipe", "check", str(RECIPE), "--set", f'data.train.root="{hr_folder}"']) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "discriminator unet" in out


def test_the_recipe_follows_real_esrgans_options():
    data = load_document(RECIPE).data
    assert data["scale"] == 4
    assert data["generator"] == {"kind": "rrdbnet", "num_blocks": 23, "num_filters": 64}
    deg = data["degradation"]
    assert deg["kind"] == "kornia_second_order" and deg["quantize"] is True
    folded = {"iso": 0.9 * (0.45 + 0.12 + 0.12), "aniso": 0.9 * (0.25 + 0.03 + 0.03), "sinc": REAL_ESRGAN["sinc_prob"]}
    for blur, sigma, prob in (("blur", "blur_sigma", 1.0), ("blur2", "blur_sigma2", REAL_ESRGAN["second_blur_prob"])):
        assert deg[blur]["prob"] == prob and deg[blur]["sigma"] == REAL_ESRGAN[sigma]
        assert deg[blur]["kinds"] == pytest.approx(folded)
        assert deg[blur]["kernel_size"] == REAL_ESRGAN["kernel_range"]
    for suffix, resize, noise, jpeg in (("", "resize", "noise", "jpeg"), ("2", "resize2", "noise2", "jpeg2")):
        assert [deg[resize]["kinds"][k] for k in ("up", "down", "keep")] == REAL_ESRGAN[f"resize_prob{suffix}"]
        assert deg[resize]["scale"] == REAL_ESRGAN[f"resize_range{suffix}"]
        assert deg[resize]["modes"] == ["area", "bilinear", "bicubic"]
        assert deg[noise]["prob"] == 1.0
        assert deg[noise]["poisson_prob"] == pytest.approx(1 - REAL_ESRGAN[f"gaussian_noise_prob{suffix}"])
        assert deg[noise]["gray_prob"] == REAL_ESRGAN[f"gray_noise_prob{suffix}"]
        assert deg[noise]["sigma"] == REAL_ESRGAN[f"noise_range{suffix}"]
        assert deg[noise]["poisson_scale"] == REAL_ESRGAN[f"poisson_scale_range{suffix}"]
        assert deg[jpeg] == {"prob": 1.0, "quality": REAL_ESRGAN[f"jpeg_range{suffix}"]}
    assert deg["final"]["sinc_prob"] == REAL_ESRGAN["final_sinc_prob"]
    assert deg["final"]["sinc_kernel_size"] == REAL_ESRGAN["kernel_range"]
    assert deg["final"]["resize_first_prob"] == 0.5
    assert deg["final"]["sinc_cutoff"] == deg["blur"]["sinc_cutoff"] == [0.33, 1.0]  # [pi/3, pi] of Nyquist

    train = data["data"]["train"]
    assert train["patch_size"] == REAL_ESRGAN["gt_size"]
    assert train["batch_size"] == REAL_ESRGAN["batch_size_per_gpu"] * REAL_ESRGAN["num_gpu"]
    assert data["train"]["ema_decay"] == 0.999

    esrnet, esrgan = data["stages"]
    assert (esrnet["name"], esrnet["steps"]) == ("realesrnet", 1_000_000)
    assert esrnet["optimizer"] == {"kind": "adam", "lr": 2e-4, "betas": [0.9, 0.99], "weight_decay": 0.0}
    assert esrnet["losses"] == [{"kind": "l1", "weight": 1.0}]
    assert "init_generator" not in esrgan  # it goes on from Real-ESRNet (its EMA) in the same run
    assert (esrgan["name"], esrgan["steps"]) == ("realesrgan", 400_000)
    adam = {"kind": "adam", "lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 0.0}
    assert esrgan["optimizer"] == adam and esrgan["discriminator_optimizer"] == adam
    assert esrgan["discriminator"] == {"kind": "unet", "num_in_ch": 3, "num_feat": 64, "skip_connection": True}
    assert (esrgan["generator_every"], esrgan["discriminator_warmup"]) == (1, 0)
    l1, perceptual, gan = esrgan["losses"]
    assert l1 == {"kind": "l1", "weight": 1.0}
    assert perceptual == {"kind": "vgg", "backbone": "vgg19", "criterion": "l1", "weight": 1.0,
                          "layers": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}}
    assert gan == {"kind": "adversarial", "mode": "vanilla", "weight": 0.1}


def test_everything_but_the_generator_checks(hr_folder):
    """The degradation, data, losses and stages check whatever generator the recipe names."""
    recipe = load_recipe(RECIPE, [f'data.train.root="{hr_folder}"', 'generator={ kind = "srresnet" }'])
    stages = recipe.spec.stages
    assert stages[1].discriminator.name == "unet"
    assert recipe.spec.degradation.name == "kornia_second_order"


def test_the_recipe_trains_both_stages_at_a_tiny_size(tmp_path):
    """The recipe's two stages, made tiny: a small generator, 32-pixel patches, a random VGG16 standing in for
    ImageNet VGG19 (same pre-activation layers, conv3_3 for conv3_4 ...), two steps each."""
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    vgg16 = tmp_path / "vgg16.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in make_layers(cfgs["D"]).state_dict().items()}, str(vgg16))
    data = copy.deepcopy(tomllib.loads(RECIPE.read_text(encoding="utf-8")))
    data["generator"] = {"kind": "srresnet", "num_blocks": 1, "channels": 8, "norm": "none"}
    data["data"] = {"train": {"kind": "samples", "names": ["coffee"], "patch_size": 32, "batch_size": 2,
                              "num_workers": 0, "repeat": 8}}
    data["train"].update(log_every=1, checkpoint_every=2)
    for stage in data["stages"]:
        stage["steps"] = 2
    gan = data["stages"][1]
    gan["discriminator"]["num_feat"] = 8
    gan["losses"][1].update(backbone="vgg16", weights=str(vgg16),
                            layers={"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0})
    run_dir = h.run_inprocess(h.write_recipe(tmp_path / "tiny.toml", data), tmp_path / "run")
    records = h.train_records(run_dir)
    assert [(r["stage"], r["step"]) for r in records] == [("realesrnet", 1), ("realesrnet", 2),
                                                          ("realesrgan", 3), ("realesrgan", 4)]
    assert {"l1", "vgg", "adversarial", "d_adversarial"} <= set(records[-1])
    assert (run_dir / "stages" / "realesrnet" / "generator.safetensors").is_file()
