"""The Kornia degradation plugin: each stage moves the image the expected way, the pipelines are
seedable and shaped right, and their recipe parameters are checked."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import srframe
from srframe.errors import DataError, RecipeError
from srframe_plugins.kornia_degrade import kernels, stages
from srframe_plugins.kornia_degrade.draw import Draw
from srframe_plugins.kornia_degrade.params import BLUR_KINDS, Blur, Jpeg, Noise, Resize

SCALE = 4


def draw(seed: int = 0) -> Draw:
    return Draw(torch.Generator().manual_seed(seed), torch.device("cpu"))


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """16 HR patches of 96x96 from scikit-image's astronaut photograph (shipped with the package)."""
    from skimage import data

    image = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float() / 255
    return torch.stack([image[:, 128 * i:128 * i + 96, 128 * j:128 * j + 96] for i in range(4) for j in range(4)])


def flat(value: float, n: int = 16, size: int = 96) -> torch.Tensor:
    return torch.full((n, 3, size, size), value)


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Variance of the Laplacian, per sample."""
    return kornia.filters.laplacian(x, 3).var(dim=(1, 2, 3))


# Blur


@pytest.mark.parametrize("kind", BLUR_KINDS)
def test_each_blur_kind_lowers_high_frequency_energy(photos, kind):
    settings = Blur(kinds={kind: 1.0}, sigma=(1.0, 3.0), sinc_cutoff=(0.3, 0.6))
    blurred = stages.blur(photos, settings, draw())
    assert (high_frequency_energy(blurred) < 0.8 * high_frequency_energy(photos)).all()


def test_larger_sigma_blurs_more(photos):
    energy = [high_frequency_energy(stages.blur(photos, Blur(kinds={"iso": 1.0}, sigma=(s, s)), draw())).mean()
              for s in (0.5, 1.0, 2.0)]
    assert energy[0] > energy[1] > energy[2]


def test_anisotropic_gaussian_spreads_along_its_angle():
    def spread(angle: float) -> tuple[float, float]:
        one = torch.ones(1)
        kernel = kernels.gaussian(3 * one, 0.5 * one, angle * one, torch.tensor([21]), 21, torch.device("cpu"),
                                  torch.float32)[0]
        offsets = torch.arange(21.0) - 10
        return float((kernel.sum(0) * offsets**2).sum()), float((kernel.sum(1) * offsets**2).sum())

    across_columns, across_rows = spread(0.0)
    assert across_columns > 20 * across_rows  # wide along x at 0 degrees
    turned_columns, turned_rows = spread(90.0)
    assert turned_rows == pytest.approx(across_columns, rel=1e-4)
    assert turned_columns == pytest.approx(across_rows, rel=1e-4)


def test_kernels_fit_their_support_and_sum_to_one():
    support = torch.tensor([7, 13, 21])
    for kernel in (kernels.gaussian(torch.full((3,), 5.0), torch.full((3,), 5.0), torch.zeros(3), support, 21,
                                    torch.device("cpu"), torch.float32),
                   kernels.sinc(torch.full((3,), 0.5), support, 21, torch.device("cpu"), torch.float32)):
        assert torch.allclose(kernel.sum((1, 2)), torch.ones(3))
        for i, size in enumerate(support.tolist()):
            edge = (21 - size) // 2
            assert kernel[i, :edge].abs().sum() == 0 and kernel[i, :, 21 - edge:].abs().sum() == 0
            assert kernel[i, edge, 10] != 0


def test_blur_probability_picks_samples(photos):
    assert torch.equal(stages.blur(photos, Blur(prob=0.0), draw()), photos)
    half = stages.blur(photos, Blur(prob=0.5, kinds={"iso": 1.0}, sigma=(2.0, 3.0)), draw())
    kept = [torch.equal(a, b) for a, b in zip(half, photos)]
    assert 0 < sum(kept) < len(kept)


# Noise


def added_variance(clean: torch.Tensor, settings: Noise) -> torch.Tensor:
    return (stages.add_noise(clean, settings, draw()) - clean).var(dim=(1, 2, 3))


@pytest.mark.parametrize("gray_prob", [0.0, 1.0])
def test_gaussian_noise_adds_sigma_squared(gray_prob):
    sigma = 10.0
    variance = added_variance(flat(0.5), Noise(poisson_prob=0.0, gray_prob=gray_prob, sigma=(sigma, sigma)))
    assert variance.mean().item() == pytest.approx((sigma / 255) ** 2, rel=0.03)


def test_gray_noise_is_the_same_in_every_channel_and_colour_noise_is_not():
    clean = flat(0.5)
    gray = stages.add_noise(clean, Noise(poisson_prob=0.0, gray_prob=1.0), draw()) - clean
    colour = stages.add_noise(clean, Noise(poisson_prob=0.0, gray_prob=0.0), draw()) - clean
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    correlation = torch.corrcoef(torch.stack([colour[:, 0].flatten(), colour[:, 1].flatten()]))[0, 1]
    assert abs(correlation.item()) < 0.01


def test_gaussian_sigma_is_drawn_per_sample_within_its_range():
    std = added_variance(flat(0.5), Noise(poisson_prob=0.0, gray_prob=0.0, sigma=(5.0, 20.0))).sqrt() * 255
    assert std.min() > 5 * 0.97 and std.max() < 20 * 1.03
    assert std.max() - std.min() > 3


@pytest.mark.parametrize("level", [0.2, 0.5])
def test_poisson_noise_variance_follows_the_signal(level):
    scale = 2.0
    variance = added_variance(flat(level), Noise(poisson_prob=1.0, gray_prob=0.0, poisson_scale=(scale, scale)))
    assert variance.mean().item() == pytest.approx(scale**2 * level / stages.POISSON_LEVELS, rel=0.03)


def test_noise_probability_zero_adds_nothing():
    clean = flat(0.5)
    assert torch.equal(stages.add_noise(clean, Noise(prob=0.0), draw()), clean)


# JPEG


def test_lower_jpeg_quality_gives_larger_error(photos):
    errors = [(stages.jpeg(photos, Jpeg(quality=(q, q)), draw()) - photos).abs().mean(dim=(1, 2, 3))
              for q in (10.0, 40.0, 90.0)]
    assert (errors[0] > errors[1]).all() and (errors[1] > errors[2]).all() and (errors[2] > 0).all()


def test_jpeg_takes_grey_batches_and_rejects_other_channel_counts(photos):
    grey = photos[:, :1]
    assert stages.jpeg(grey, Jpeg(quality=(50.0, 50.0)), draw()).shape == grey.shape
    with pytest.raises(DataError, match="4 channels"):
        stages.jpeg(torch.rand(2, 4, 16, 16), Jpeg(), draw())


# Resize


def test_resize_modes_are_drawn_per_sample(photos):
    modes = ("area", "bilinear", "bicubic")
    out = stages.resize(photos, (24, 24), modes, draw())
    references = [F.interpolate(photos, size=(24, 24), mode=m, **({} if m == "area" else {"align_corners": False}))
                  for m in modes]
    used = [next(i for i, ref in enumerate(references) if torch.equal(out[s], ref[s])) for s in range(len(out))]
    assert len(set(used)) > 1


@pytest.mark.parametrize(("kind", "low", "high"), [("down", 48, 96), ("up", 96, 144), ("keep", 96, 96)])
def test_random_resize_scales_the_batch_by_its_kind(photos, kind, low, high):
    settings = Resize(kinds={kind: 1.0}, scale=(0.5, 1.5))
    sizes = [stages.random_resize(photos[:2], (96, 96), settings, draw(seed)).shape[-2:] for seed in range(6)]
    assert all(h == w and low <= h <= high for h, w in sizes)
    assert len(set(sizes)) == (1 if kind == "keep" else 6)


def test_matlab_bicubic_mode_uses_srframe_imresize_when_there(photos):
    if hasattr(importlib.import_module("srframe.degrade"), "imresize"):
        from srframe.degrade import imresize

        out = stages.resize(photos, (24, 24), ("matlab_bicubic",), draw())
        assert torch.allclose(out, imresize(photos, size=(24, 24)))
    else:
        with pytest.raises(RecipeError, match="srframe.degrade.imresize"):
            srframe.build("degradation", "kornia_first_order", scale=SCALE, resize={"modes": ["matlab_bicubic"]})


# Pipelines


@pytest.fixture(params=["kornia_first_order", "kornia_second_order"])
def pipeline(request):
    return srframe.build("degradation", request.param, scale=SCALE)


def test_pipeline_output_is_lr_sized_quantised_and_in_range(pipeline, photos):
    lr = pipeline(photos, torch.Generator().manual_seed(0))
    assert lr.shape == (16, 3, 96 // SCALE, 96 // SCALE) and lr.dtype == photos.dtype
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal((lr * 255).round(), lr * 255)


def test_pipeline_same_seed_same_batch_other_seed_other_batch(pipeline, photos):
    first = pipeline(photos, torch.Generator().manual_seed(1))
    again = pipeline(photos, torch.Generator().manual_seed(1))
    other = pipeline(photos, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_pipeline_takes_grey_batches(pipeline, photos):
    assert pipeline(photos[:, :1], torch.Generator().manual_seed(0)).shape == (16, 1, 24, 24)


def test_pipeline_rejects_sizes_that_are_not_multiples_of_the_scale(pipeline):
    with pytest.raises(DataError, match="97x96 is not a multiple of the scale 4"):
        pipeline(torch.rand(2, 3, 97, 96), torch.Generator())
    with pytest.raises(DataError, match="float batch"):
        pipeline(torch.zeros(2, 3, 96, 96, dtype=torch.uint8), torch.Generator())


def test_first_order_with_every_stage_off_is_a_plain_resize(photos):
    degrade = srframe.build("degradation", "kornia_first_order", scale=SCALE, blur={"prob": 0}, noise={"prob": 0},
                            jpeg={"prob": 0}, resize={"modes": ["area"]}, quantize=False)
    expected = F.interpolate(photos, size=(24, 24), mode="area")
    assert torch.equal(degrade(photos, torch.Generator()), expected)


def test_second_order_with_every_stage_off_is_a_plain_resize(photos):
    off = {"blur": {"prob": 0}, "noise": {"prob": 0}, "jpeg": {"prob": 0}, "resize": {"kinds": {"keep": 1}},
           "blur2": {"prob": 0}, "noise2": {"prob": 0}, "jpeg2": {"prob": 0}}
    keep_area = {"kinds": {"keep": 1}, "modes": ["area"]}
    degrade = srframe.build("degradation", "kornia_second_order", scale=SCALE, **off, resize2=keep_area,
                            final={"sinc_prob": 0, "modes": ["area"]}, quantize=False)
    expected = F.interpolate(photos, size=(24, 24), mode="area")
    assert torch.allclose(degrade(photos, torch.Generator()), expected, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_runs_on_the_batch_device(pipeline, photos):
    hr = photos.cuda()
    lr = pipeline(hr, torch.Generator().manual_seed(3))
    assert lr.device == hr.device and lr.shape == (16, 3, 24, 24)
    assert torch.equal(lr, pipeline(hr, torch.Generator().manual_seed(3)))


# Registry and parameters


def test_loading_the_plugin_imports_neither_torch_nor_kornia():
    probe = "import sys, srframe_plugins.kornia_degrade; print(sorted({'torch', 'kornia'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_registered_through_the_plugin():
    degrade = srframe.build("degradation", "kornia_second_order", scale=SCALE)
    assert isinstance(degrade, srframe.Degradation) and degrade.scale == SCALE
    assert srframe.registry.get("degradation", "kornia_first_order").origin.module.startswith(
        "srframe_plugins.kornia_degrade")


def test_a_partial_table_keeps_the_second_round_defaults():
    degrade = srframe.build("degradation", "kornia_second_order", scale=SCALE, blur2={"prob": 0.5})
    assert degrade.blur2.prob == 0.5 and degrade.blur2.sigma == (0.2, 1.5)
    assert degrade.blur.sigma == (0.2, 3.0)


@pytest.mark.parametrize(("params", "message"), [
    ({"noise": {"prob": 1.5}}, "noise.prob: 1.5 is out of range: expected a number >= 0 and <= 1"),
    ({"blur": {"sigma": [3, 0.2]}}, r"blur.sigma: \[3.0, 0.2\] is reversed: write \[low, high\]"),
    ({"jpeg2": {"quality": [30, 120]}}, r"jpeg2.quality: \[30.0, 120.0\] is out of range"),
    ({"blur": {"kinds": {"gauss": 1}}}, "blur.kinds.gauss: unknown choice.*Choices: iso, aniso, motion, sinc"),
    ({"blur": {"kinds": {"iso": 0}}}, "blur.kinds: .*a weight above 0"),
    ({"blur": {"kernel_size": [6, 21]}}, "blur.kernel_size: .*kernel sizes are odd"),
    ({"resize": {"scale": [1.2, 1.5]}}, r"resize.scale: \[1.2, 1.5\] must include 1.0"),
    ({"final": {"modes": ["nearest"]}}, r"final.modes\[0\]: \"nearest\" is a string: expected one of"),
    ({"noise": {"sigmas": [1, 2]}}, 'unknown key .*did you mean "sigma"'),
])
def test_bad_parameters_are_clear_errors(params, message):
    with pytest.raises(RecipeError, match=message):
        srframe.build("degradation", "kornia_second_order", scale=SCALE, **params)


def test_settings_built_in_python_are_checked_too():
    with pytest.raises(RecipeError, match="prob: 1.5 is out of range"):
        Noise(prob=1.5)


def test_the_documented_recipe_example_loads_and_runs(tmp_path, photos):
    docs = (Path(__file__).parents[1] / "docs" / "degradations.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", docs, re.S).group(1)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(example + '\n[generator]\nkind = "srresnet"\n\n[[stages]]\nname = "l1"\nsteps = 1\n'
                      'losses = [{ kind = "l1" }]\n', encoding="utf-8")
    spec = srframe.load_recipe(recipe, overrides={"degradation.noise.prob": 0.5}).spec.degradation
    assert spec.name == "kornia_second_order" and spec.params["noise"].prob == 0.5
    degrade = spec.build(srframe.registry)
    assert degrade.scale == 4 and degrade.blur2.prob == 0.8 and degrade.blur2.sigma == (0.2, 1.5)
    assert degrade(photos, torch.Generator().manual_seed(0)).shape == (16, 3, 24, 24)
