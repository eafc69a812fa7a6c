"""The reference plugins' components, built through the registry as a recipe would build them."""

from __future__ import annotations

import pytest
import torch

import srframe
from srframe.interfaces import LossContext
from srframe_plugins.srresnet.model import SRResNet


def test_srresnet_x4_b16_has_the_papers_parameter_count():
    generator = srframe.build("generator", "srresnet", scale=4)
    # 9x9 head + 16 blocks + post-body conv/BN + 2 upsamplers + 9x9 tail; convs followed by BN have no bias
    assert sum(p.numel() for p in generator.parameters()) == 1_547_350
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "ResidualBlock"
               for m in generator.modules()) == 16


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_srresnet_output_shape(scale):
    generator = srframe.build("generator", "srresnet", scale=scale, num_blocks=1, channels=8).eval()
    out = generator(torch.rand(2, 3, 5, 7))
    assert out.shape == (2, 3, 5 * scale, 7 * scale)
    assert generator.scale == scale


def test_srresnet_rejects_an_unsupported_scale():
    with pytest.raises(srframe.errors.RecipeError, match="scale: 5 is an integer: expected one of 2, 3, 4, 8"):
        srframe.build("generator", "srresnet", scale=5)
    with pytest.raises(ValueError, match="scale 2, 3, 4 or 8, not 5"):  # built directly: the same rule
        SRResNet(scale=5)


def _context() -> tuple[LossContext, torch.Tensor]:
    sr = torch.tensor([0.0, 1.0, 0.5, 0.25], requires_grad=True)
    return LossContext(sr=sr, hr=torch.tensor([1.0, 1.0, 0.0, 0.25])), sr


def test_mse_value_and_gradient():
    ctx, sr = _context()
    loss = srframe.build("loss", "mse")(ctx)
    loss.backward()
    assert loss.item() == pytest.approx((1 + 0 + 0.25 + 0) / 4)
    assert torch.allclose(sr.grad, torch.tensor([-0.5, 0.0, 0.25, 0.0]))  # 2 (sr - hr) / n


def test_l1_value_and_gradient():
    ctx, sr = _context()
    loss = srframe.build("loss", "l1")(ctx)
    loss.backward()
    assert loss.item() == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert torch.allclose(sr.grad, torch.tensor([-0.25, 0.0, 0.25, 0.0]))  # sign(sr - hr) / n


def test_charbonnier_value_and_gradient():
    ctx, sr = _context()
    eps = 0.1
    loss = srframe.build("loss", "charbonnier", eps=eps)(ctx)
    loss.backward()
    diff = torch.tensor([-1.0, 0.0, 0.5, 0.0])
    assert loss.item() == pytest.approx(torch.sqrt(diff**2 + eps**2).mean().item())
    assert torch.allclose(sr.grad, diff / torch.sqrt(diff**2 + eps**2) / 4)
    with pytest.raises(srframe.errors.RecipeError, match="eps: 0.0 is out of range: expected a number > 0"):
        srframe.build("loss", "charbonnier", eps=0.0)
