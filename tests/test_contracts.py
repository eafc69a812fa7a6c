"""Component contracts: the kit over every registered component, broken components caught by it,
the GAN contract with toy components, and the rules a factory must follow to register."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

import srframe
from srframe import testing
from srframe.errors import RecipeError, RegistryError
from srframe.interfaces import (AdversarialLoss, Degradation, Discriminator, DiscriminatorContext, Generator, Loss,
                                LossContext)
from srframe.recipe import load_recipe
from srframe.schema import Range, open_schema


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Two small HR images with their x4 LR partners, and a VGG16 weights file with random values."""
    root = tmp_path_factory.mktemp("contract_files")
    (root / "hr").mkdir()
    (root / "lr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "hr" / f"im{i}.png")
        Image.fromarray(image[::4, ::4]).save(root / "lr" / f"im{i}.png")
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()},
              str(root / "vgg16.safetensors"))
    return {"hr": root / "hr", "lr": root / "lr", "vgg16": root / "vgg16.safetensors"}


def params_for(kind: str, name: str, files: dict[str, Path]) -> dict:
    """Settings the kit cannot guess: folders, weights, and patches small enough for tiny images."""
    return {
        ("dataset", "image_folder"): {"root": files["hr"], "patch_size": 16},
        ("dataset", "paired_folder"): {"hr": files["hr"], "lr": files["lr"], "patch_size": 16},
        ("dataset", "samples"): {"names": ["coffee"], "patch_size": 16, "repeat": 1},
        ("loss", "vgg"): {"backbone": "vgg16", "layers": "relu2_2", "weights": files["vgg16"]},
        ("generator", "rrdbnet"): {"num_blocks": 2},  # the default 23 blocks: 12 s here for nothing more
        ("generator", "swinir"): {"embed_dim": 30, "depths": [2, 2], "num_heads": [3, 3]},
        ("generator", "spandrel"): {"architecture": "OmniSR", "hyperparameters": {"num_feat": 16, "window_size": 4}},
    }.get((kind, name), {})


@pytest.mark.parametrize("entry", [e for e in srframe.registry.entries() if e.kind != "metric"],
                         ids=lambda e: f"{e.kind}-{e.name}")
def test_every_registered_component_keeps_its_contract(entry, files):
    component = testing.check_component(entry.kind, entry.name, params_for(entry.kind, entry.name, files))
    assert component is not None


# --- the kit catches broken components, with messages that say what is wrong ------------------------

class ForgetsTheScale(Generator):
    """Returns the input unchanged: the wrong size."""

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, lr):
        return self.conv(lr)


class UnusedLayer(Generator):
    """Has a layer no gradient reaches."""

    def __init__(self, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.used, self.unused = nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(3, 3, 1)

    def forward(self, lr):
        return nn.functional.pixel_shuffle(self.used(lr), 2)


class PerPixelLoss(Loss):
    """Forgets to reduce: not a scalar."""

    def forward(self, ctx):
        return (ctx.sr - ctx.hr).abs()


class GlobalNoise(Degradation):
    """Draws noise from torch's global generator instead of the one it is given."""

    def __init__(self, scale: int = 2):
        self.scale = scale

    def __call__(self, hr, generator):
        lr = nn.functional.avg_pool2d(hr, self.scale)
        return (lr + 0.01 * torch.randn(lr.shape)).clamp(0, 1)


class OutOfRange(Degradation):
    """Returns values outside [0, 1]."""

    def __init__(self, scale: int = 2):
        self.scale = scale

    def __call__(self, hr, generator):
        return nn.functional.avg_pool2d(hr, self.scale) * 4 - 1


@pytest.mark.parametrize("kind, factory, expected", [
    ("generator", ForgetsTheScale, r"forward\(lr\) returned shape \(2, 3, 12, 10\), expected \(2, 3, 48, 40\)"),
    ("generator", UnusedLayer, r"no gradient from the output reaches unused.weight, unused.bias"),
    ("loss", PerPixelLoss, r"forward\(ctx\) returned shape \(2, 3, 16, 16\), expected \(\)"),
    ("degradation", GlobalNoise, r"not deterministic: the same generator state gave different LR batches"),
    ("degradation", OutOfRange, r"LR values must lie in \[0, 1\]"),
])
def test_the_kit_fails_broken_components_with_a_clear_message(registry, kind, factory, expected):
    registry.add(kind, "broken", factory)
    params = {"scale": 2} if factory is UnusedLayer else None  # an x2-only generator
    with pytest.raises(testing.ContractError, match=expected) as caught:
        testing.check_component(kind, "broken", params, registry=registry)
    assert f'{kind} "broken"' in str(caught.value)
    assert isinstance(caught.value, AssertionError)  # test runners report it as a failure


def test_the_kit_refuses_a_default_that_toml_cannot_hold(registry):
    class Odd(Loss):
        def __init__(self, table: dict[str, float] = {"a": 1.0, 2: 3.0}):  # noqa: B006 - a non-string key
            super().__init__()

        def forward(self, ctx):
            return (ctx.sr - ctx.hr).pow(2).mean()

    registry.add("loss", "odd", Odd)
    with pytest.raises(testing.ContractError, match="the default of `table`"):
        testing.check_loss("odd", registry=registry)


# --- the GAN contract, implemented by a third party from the docs alone ------------------------------

TOY_GAN = '''
import torch
from torch import nn
import srframe
from srframe.interfaces import AdversarialLoss, Discriminator


class PatchD(Discriminator):
    """A small patch discriminator with an R1 penalty on real images."""

    def __init__(self, channels: int = 8, r1: float = 1.0):
        super().__init__()
        self.r1 = r1
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, img):
        return self.body(img)  # (N, 1, H / 2, W / 2) logits

    def regularization(self, ctx):
        real = ctx.real.detach().requires_grad_()
        (grad,) = torch.autograd.grad(self(real).sum(), real, create_graph=True)
        return self.r1 / 2 * grad.pow(2).flatten(1).sum(1).mean()


class Hinge(AdversarialLoss):
    """Hinge GAN loss (Lim & Ye, 2017)."""

    def forward(self, ctx):
        return -ctx.fake_logits.mean()

    def discriminator_loss(self, ctx):
        return torch.relu(1 - ctx.real_logits).mean() + torch.relu(1 + ctx.fake_logits).mean()


@srframe.hookimpl
def srframe_register(registry):
    registry.add("discriminator", "toy_patch", PatchD)
    registry.add("loss", "toy_hinge", Hinge)
'''

GAN_RECIPE = """
    scale = 2
    plugins = ["toy_gan"]
    [generator]
    kind = "srresnet"
    num_blocks = 1
    channels = 8
    [[stages]]
    name = "gan"
    steps = 10
    discriminator = { kind = "toy_patch", channels = 4 }
    discriminator_optimizer = { kind = "adam", lr = 2e-4 }
    generator_every = 2
    losses = [{ kind = "l1" }, { kind = "toy_hinge", weight = 0.1 }]
"""


@pytest.fixture
def toy_gan(host, installed, write):
    installed("toy-gan", {"toy_gan": TOY_GAN}, {})
    return lambda text=GAN_RECIPE: load_recipe(write("gan.toml", text), host=host)


def test_a_third_party_gan_pair_keeps_the_contract(toy_gan, host):
    toy_gan()  # loads the plugin into this host
    testing.check_discriminator("toy_patch", registry=host.registry)
    testing.check_loss("toy_hinge", registry=host.registry)


def test_a_gan_stage_trains_the_toy_pair_through_the_interfaces_alone(toy_gan, host):
    """One discriminator step and one generator step, written only against srframe.interfaces."""
    stage = toy_gan().spec.stages[0]
    assert stage.discriminator_optimizer.params == {"lr": 2e-4} and stage.generator_every == 2
    discriminator = stage.discriminator.build(host.registry)
    losses = [(spec.build(host.registry), spec.options.weight) for spec in stage.losses]
    adversarial = [loss for loss, _ in losses if isinstance(loss, AdversarialLoss)]
    assert len(adversarial) == 1
    torch.manual_seed(0)
    hr, sr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16, requires_grad=True)

    d_ctx = DiscriminatorContext(real=hr, fake=sr.detach(), discriminator=discriminator)
    d_objective = sum(loss.discriminator_loss(d_ctx) for loss in adversarial) + discriminator.regularization(d_ctx)
    d_objective.backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    assert sr.grad is None  # the discriminator step never reaches the generator

    discriminator.requires_grad_(False)
    ctx = LossContext(sr=sr, hr=hr, discriminator=discriminator)
    g_objective = sum(weight * loss(ctx) for loss, weight in losses)
    g_objective.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()
    assert "fake_logits" in ctx.__dict__  # computed once, shared by the losses of the step


def test_a_stage_with_a_discriminator_needs_a_loss_that_trains_it(toy_gan):
    text = GAN_RECIPE.replace('{ kind = "toy_hinge", weight = 0.1 }', '{ kind = "mse" }')
    with pytest.raises(RecipeError) as caught:
        toy_gan(text)
    (problem,) = caught.value.problems
    assert problem.path == "stages[0].discriminator" and "nothing in this stage trains the discriminator" in problem.message


def test_discriminator_keys_need_a_discriminator(toy_gan):
    text = GAN_RECIPE.replace('discriminator = { kind = "toy_patch", channels = 4 }\n', "") \
        .replace('{ kind = "toy_hinge", weight = 0.1 }', '{ kind = "mse" }')
    with pytest.raises(RecipeError) as caught:
        toy_gan(text)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"stages[0].discriminator_optimizer", "stages[0].generator_every"}


def test_the_discriminator_keys_are_checked_like_the_rest(toy_gan):
    text = GAN_RECIPE.replace("generator_every = 2", "generator_every = 0\ndiscriminator_warmup = 10") \
        .replace("lr = 2e-4", "lr = 2e-4, betas = [0.9, 1.5]")
    with pytest.raises(RecipeError) as caught:
        toy_gan(text)
    found = {p.path: p.message for p in caught.value.problems}
    assert "0 is out of range" in found["stages[0].generator_every"]
    assert "is not below the stage's steps = 10" in found["stages[0].discriminator_warmup"]
    assert "Invalid beta parameter at index 1" in found["stages[0].discriminator_optimizer.betas"]


def test_a_loss_context_without_a_discriminator_says_what_to_add():
    ctx = LossContext(sr=torch.zeros(1, 3, 4, 4), hr=torch.zeros(1, 3, 4, 4))
    with pytest.raises(srframe.SrframeError, match=r'add discriminator = \{ kind = "..." \} to the stage'):
        srframe.build("loss", "adversarial")(ctx)


# --- what a factory must be to register ----------------------------------------------------------------

def test_a_parameter_named_like_a_reserved_key_is_refused_at_registration(registry):
    class Weighted(Loss):
        def __init__(self, weight: float = 0.5):
            super().__init__()

    with pytest.raises(RegistryError, match=r'parameter named "weight", which recipes reserve for the loss\'s weight'):
        registry.add("loss", "weighted", Weighted)

    def folder(root: Path, batch_size: int = 4):
        return None

    with pytest.raises(RegistryError, match=r'parameter named "batch_size".*rename the parameter'):
        registry.add("dataset", "folder", folder)


def test_scale_must_mean_the_upscaling_factor(host, write):
    registry = host.registry

    class ScaledLoss(Loss):
        def __init__(self, scale: float = 0.5):
            super().__init__()

    with pytest.raises(RegistryError, match=r'"scale" typed a number, but recipes fill `scale` with the recipe\'s '
                                            r'upscaling factor.*\(`scale: int`\), or rename the parameter \(e.g. "scaled_scale"\)'):
        registry.add("loss", "scaled", ScaledLoss)

    class Untyped(Generator):
        def __init__(self, scale=4):
            super().__init__()

    with pytest.raises(RegistryError, match='"scale" typed any value'):
        registry.add("generator", "untyped", Untyped)

    class X2Only(Generator):
        def __init__(self, scale: Annotated[int, Range(min=2, max=2)] = 2):
            super().__init__()
            self.scale = scale

    registry.add("generator", "x2", X2Only)  # an integer scale with bounds of its own registers, and is checked
    recipe = write("x2.toml", 'scale = 4\n[generator]\nkind = "x2"\n[[stages]]\nname = "a"\nsteps = 1\n'
                              'losses = [{ kind = "mse" }]\n')
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, host=host)
    (problem,) = caught.value.problems
    assert problem.path == "generator.scale"
    assert "4 is out of range: expected an integer >= 2 and <= 2 (the value comes from the recipe's scale = 4)" \
        in problem.message


def test_kwargs_must_be_declared_open(registry):
    class Forwards(Loss):
        def __init__(self, **options):
            super().__init__()

    with pytest.raises(RegistryError, match=r"takes \*\*kwargs.*mark it with @srframe.schema.open_schema"):
        registry.add("loss", "forwards", Forwards)
    registry.add("loss", "forwards", open_schema(Forwards))
    assert registry.get("loss", "forwards").schema.open


def test_a_loss_without_its_own_init_takes_no_keys():
    with pytest.raises(RecipeError, match=r'wieght: unknown key for loss "l1". It takes no keys'):
        srframe.build("loss", "l1", wieght=0.5)
