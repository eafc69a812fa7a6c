"""SRGAN's discriminator and adversarial losses, and SRResNet's variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import srframe
from srframe import ops
from srframe.interfaces import DiscriminatorContext, LossContext


@pytest.mark.parametrize("size", [96, 128, 200])
def test_discriminator_accepts_any_patch_size(size):
    discriminator = srframe.build("discriminator", "srgan").eval()
    assert discriminator(torch.rand(2, 3, size, size)).shape == (2,)


def test_discriminator_layout_is_the_papers():
    discriminator = srframe.build("discriminator", "srgan")
    convs = [m for m in discriminator.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.features) == 7
    dense = [m for m in discriminator.classifier if isinstance(m, torch.nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(512 * 6 * 6, 1024), (1024, 1)]


class FixedD(torch.nn.Module):
    """A 'discriminator' whose logit is the image mean, so losses have known values."""

    def forward(self, img):
        return img.flatten(1).mean(1)


def test_vanilla_adversarial_is_minus_log_sigmoid_of_d_of_g():
    sr = torch.tensor([[[[0.3]]], [[[-1.2]]]], requires_grad=True)
    ctx = LossContext(sr=sr, hr=torch.zeros_like(sr), discriminator=FixedD())
    loss = srframe.build("loss", "adversarial", mode="vanilla")(ctx)
    expected = -torch.log(torch.sigmoid(sr.detach().flatten())).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    # d/dx -log(sigmoid(x)) = sigmoid(x) - 1, averaged over the batch
    assert torch.allclose(sr.grad.flatten(), (torch.sigmoid(sr.detach().flatten()) - 1) / 2)


@pytest.mark.parametrize("mode, g_expected, d_expected", [
    ("vanilla", lambda f, r: -math.log(1 / (1 + math.exp(-f))),
     lambda f, r: -math.log(1 / (1 + math.exp(-r))) - math.log(1 - 1 / (1 + math.exp(-f)))),
    ("lsgan", lambda f, r: (f - 1) ** 2, lambda f, r: (r - 1) ** 2 + f**2),
    ("hinge", lambda f, r: -f, lambda f, r: max(0, 1 - r) + max(0, 1 + f)),
    ("relativistic", lambda f, r: (math.log1p(math.exp(r - f)) + math.log1p(math.exp(r - f))) / 2,
     lambda f, r: (math.log1p(math.exp(-(r - f))) + math.log1p(math.exp(f - r))) / 2),
])
def test_adversarial_modes_on_known_logits(mode, g_expected, d_expected):
    fake, real = 0.4, 1.5
    loss = srframe.build("loss", "adversarial", mode=mode)
    ctx = LossContext(sr=torch.full((1, 1, 2, 2), fake), hr=torch.full((1, 1, 2, 2), real), discriminator=FixedD())
    assert loss(ctx).item() == pytest.approx(g_expected(fake, real), rel=1e-5)
    d_ctx = DiscriminatorContext(real=torch.full((1, 1, 2, 2), real), fake=torch.full((1, 1, 2, 2), fake),
                                 discriminator=FixedD())
    d_loss = loss.discriminator_loss(d_ctx)
    assert d_loss.item() == pytest.approx(d_expected(fake, real), rel=1e-5)


def test_adversarial_loss_declares_it_needs_a_discriminator():
    assert srframe.registry.get("loss", "adversarial").factory.needs_discriminator
    with pytest.raises(srframe.errors.RecipeError, match="mode"):
        srframe.build("loss", "adversarial", mode="wgan")




def test_pixel_shuffle_prelu_reference_gradients():
    x = torch.randn(2, 12, 3, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([0.25, -0.1, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: ops.pixel_shuffle_prelu(a, w, 2), (x, weight))
    out = ops.pixel_shuffle_prelu(x, weight, 2)
    assert torch.equal(out, F.prelu(F.pixel_shuffle(x, 2), weight))


def test_srresnet_without_batch_norm_has_biases_and_no_bn():
    generator = srframe.build("generator", "srresnet", scale=2, num_blocks=2, norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
    assert all(m.bias is not None for m in generator.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("skip", ["bicubic", "bilinear"])
def test_srresnet_global_skip_adds_the_interpolated_input(skip):
    generator = srframe.build("generator", "srresnet", scale=4, num_blocks=1, channels=8, skip=skip).eval()
    torch.nn.init.zeros_(generator.tail.weight)
    torch.nn.init.zeros_(generator.tail.bias)
    lr = torch.rand(1, 3, 6, 5)
    expected = F.interpolate(lr, scale_factor=4, mode=skip, align_corners=False)
    assert torch.allclose(generator(lr), expected, atol=1e-6)


def test_srresnet_activation_choice():
    generator = srframe.build("generator", "srresnet", scale=2, num_blocks=1, activation="leaky_relu")
    assert not any(isinstance(m, torch.nn.PReLU) for m in generator.modules())
    assert generator(torch.rand(1, 3, 4, 4)).shape == (1, 3, 8, 8)
