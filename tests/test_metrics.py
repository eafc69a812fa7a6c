"""PSNR, SSIM and LPIPS as the literature computes them, and the published bicubic baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import srframe
from srframe.errors import WeightsError
from srframe.eval.metrics import psnr, rgb_to_y, ssim

BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark"
needs_benchmark = pytest.mark.skipif(not BENCHMARK.is_dir(), reason=f"benchmark sets not found at {BENCHMARK}")


def test_y_channel_is_matlabs_rgb2ycbcr():
    pixels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    y = rgb_to_y(pixels).flatten()
    assert torch.allclose(y, torch.tensor([16.0, 235.0, 16 + 65.481]))


def test_psnr_of_a_known_error_after_the_border_crop():
    hr = torch.full((1, 1, 20, 20), 100 / 255)
    sr = hr + 2 / 255
    sr[..., :4, :] = 0  # wrong only inside the border that is cropped
    assert psnr(sr, hr, crop=4).item() == pytest.approx(10 * math.log10(255**2 / 4), rel=1e-6)
    assert psnr(sr, hr, crop=0).item() < 20


def test_psnr_on_rgb_differs_from_y():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 16, 16)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    y, rgb = psnr(sr, hr), psnr(sr, hr, channel="rgb")
    assert y.shape == (2,) and not torch.allclose(y, rgb)


def test_ssim_matches_scikit_image_gaussian_ssim():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (1, 40, 50)).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).round()
    ours = ssim(torch.from_numpy(sr / 255), torch.from_numpy(hr / 255)).item()
    reference = structural_similarity(sr[0], hr[0], data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ours == pytest.approx(reference, abs=1e-9)
    assert ssim(torch.from_numpy(hr / 255), torch.from_numpy(hr / 255)).item() == pytest.approx(1.0)


def test_images_too_small_for_the_protocol_are_refused():
    with pytest.raises(ValueError, match="too small to crop 4"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), crop=4)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


@needs_benchmark
@pytest.mark.parametrize("folder, expected_psnr, expected_ssim", [
    ("Set5", 28.42, 0.8104), ("Set14", 26.00, 0.7027),
    ("x4_canonical/Set5", 28.42, 0.8104), ("x4_canonical/Set14", 26.00, 0.7027),
])
def test_bicubic_baseline_reproduces_the_published_x4_figures(folder, expected_psnr, expected_ssim):
    summary = srframe.evaluate("bicubic", BENCHMARK / folder, scale=4).summary()
    assert summary["psnr_y"] == pytest.approx(expected_psnr, abs=0.02)
    assert summary["ssim_y"] == pytest.approx(expected_ssim, abs=0.002)
    assert summary["n"] == (5 if "Set5" in folder else 14)


def _lpips_or_skip():
    from srframe.eval.lpips import LPIPS

    try:
        return LPIPS().eval()
    except WeightsError as exc:
        pytest.skip(f"LPIPS weights unavailable ({str(exc).splitlines()[0]}); run `srframe weights fetch vgg16` "
                    "and `srframe weights fetch lpips`")


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # the lpips package's torchvision calls
def test_lpips_matches_the_lpips_package():
    lpips = pytest.importorskip("lpips", reason="the reference package lpips is not installed")
    ours = _lpips_or_skip()
    reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    features = ours.features
    for name in ("slice1", "slice2", "slice3", "slice4", "slice5"):  # the same ImageNet backbone in both
        for index, module in getattr(reference.net, name)._modules.items():
            if isinstance(module, torch.nn.Conv2d):
                module.load_state_dict(features[int(index)].state_dict())
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        expected = reference(x, y, normalize=True).flatten()
        assert torch.allclose(ours(x, y), expected, rtol=1e-4, atol=1e-6)
        assert ours(x, x).abs().max() < 1e-6
