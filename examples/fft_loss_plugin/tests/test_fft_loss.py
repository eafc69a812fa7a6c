"""The plugin's own tests: what the loss computes, and srframe's contract kit (``srframe.testing``).

Run them from the package's folder: ``pip install -e . && python -m pytest``. Without installing,
everything but the entry-point test runs too (that one is skipped, with the reason).
"""

from __future__ import annotations

import cmath
import importlib.metadata
import math

import pytest
import torch

import srframe
from srframe import testing
from srframe.interfaces import LossContext
from srframe.registry import Registry

import srframe_fft_loss
from srframe_fft_loss import FFTLoss


@pytest.fixture(scope="module")
def registry() -> Registry:
    """A registry with this plugin's components only, added by its hook as srframe adds them."""
    registry = Registry()
    srframe_fft_loss.srframe_register(registry)
    return registry


@pytest.mark.parametrize("mode", ["complex", "amplitude"])
def test_the_loss_keeps_the_loss_contract(registry, mode):
    testing.check_loss("fft", {"mode": mode}, registry=registry)


def test_a_misspelt_mode_is_refused(registry):
    with pytest.raises(srframe.errors.RecipeError, match='did you mean "amplitude"'):
        registry.build("loss", "fft", {"mode": "amplitud"})  # what `srframe recipe check` reports
    with pytest.raises(ValueError, match="mode must be one of 'complex', 'amplitude', not 'amplitud'"):
        FFTLoss(mode="amplitud")  # a direct call


def loss(sr: torch.Tensor, hr: torch.Tensor, mode: str = "complex") -> float:
    return float(FFTLoss(mode)(LossContext(sr=sr, hr=hr)))


def test_a_single_bright_pixel_by_hand():
    # A 2x2 image with one pixel at 1 has a flat spectrum: rfft2 keeps 2 x (2 // 2 + 1) = 4
    # coefficients, each 1 / sqrt(2 * 2) = 0.5 and real. Against a black image the real parts
    # differ by 0.5 and the imaginary parts by 0, so the mean over the 8 parts is 0.25, and the
    # amplitudes differ by 0.5 each.
    sr = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    hr = torch.zeros(1, 1, 2, 2)
    assert loss(sr, hr, "complex") == pytest.approx(0.25)
    assert loss(sr, hr, "amplitude") == pytest.approx(0.5)


def dft2(image: list[list[float]]) -> list[list[complex]]:
    """The orthonormal 2-D DFT of an H x W image, written out: the coefficients with v <= W // 2."""
    H, W = len(image), len(image[0])
    return [[sum(image[h][w] * cmath.exp(-2j * math.pi * (u * h / H + v * w / W)) for h in range(H) for w in range(W))
             / math.sqrt(H * W) for v in range(W // 2 + 1)] for u in range(H)]


def test_the_loss_is_the_mean_absolute_difference_of_the_written_out_spectra():
    seeded = torch.Generator().manual_seed(0)
    sr = torch.rand(2, 3, 5, 6, generator=seeded, dtype=torch.float64)  # odd H, even W (a Nyquist column)
    hr = torch.rand(2, 3, 5, 6, generator=seeded, dtype=torch.float64)
    pairs = [(a, b) for x, y in zip(sr.flatten(0, 1), hr.flatten(0, 1))
             for row_a, row_b in zip(dft2(x.tolist()), dft2(y.tolist())) for a, b in zip(row_a, row_b)]
    assert len(pairs) == 2 * 3 * 5 * (6 // 2 + 1)
    parts = [abs(a.real - b.real) for a, b in pairs] + [abs(a.imag - b.imag) for a, b in pairs]
    assert loss(sr, hr, "complex") == pytest.approx(sum(parts) / len(parts), rel=1e-12)
    amplitudes = [abs(abs(a) - abs(b)) for a, b in pairs]
    assert loss(sr, hr, "amplitude") == pytest.approx(sum(amplitudes) / len(amplitudes), rel=1e-12)


@pytest.mark.parametrize("mode", ["complex", "amplitude"])
def test_the_loss_is_zero_for_the_same_image_and_positive_otherwise(mode):
    hr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert loss(hr.clone(), hr, mode) == 0
    assert loss(hr + 0.01 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(2)), hr, mode) > 0


def test_the_amplitude_ignores_a_circular_shift_and_the_complex_spectrum_does_not():
    hr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    shifted = torch.roll(hr, shifts=(3, 5), dims=(2, 3))
    assert loss(shifted, hr, "amplitude") == pytest.approx(0, abs=1e-6)
    assert loss(shifted, hr, "complex") > 0.1


def test_half_precision_images_are_transformed_in_float32():
    seeded = torch.Generator().manual_seed(4)
    sr, hr = (torch.rand(2, 3, 12, 10, generator=seeded).bfloat16() for _ in range(2))
    value = FFTLoss()(LossContext(sr=sr, hr=hr))  # torch.fft.rfft2 refuses bfloat16 by itself
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(loss(sr.float(), hr.float()), rel=1e-6)


def test_srframe_finds_the_installed_plugin_through_its_entry_point():
    try:
        version = importlib.metadata.version("srframe-fft-loss")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("srframe-fft-loss is not installed (pip install -e .), so it has no entry point to find")
    entry = srframe.registry.get("loss", "fft")  # the first lookup loads every installed plugin
    assert entry.factory is FFTLoss
    assert str(entry.origin) == f"srframe-fft-loss {version} (srframe_fft_loss)"
