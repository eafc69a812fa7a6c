"""The benchmark runner: a model (or the bicubic baseline) on a folder of benchmark images.

A benchmark folder holds either HR images only (the LR images are made with the MATLAB
bicubic from the HR cropped to a multiple of the scale) or canonical pairs side by side,
``NAME_HR.png`` with ``NAME_LRx4.png``.

Grey images (Set14's ``bridge``, a few of BSD100's) are scored by one of two conventions:

- ``"intensity"`` (the default): grey stays grey. The model sees three equal channels, its output
  is averaged back to one, and the metrics are taken on that intensity (0..255). This is what
  reproduces the published bicubic rows (Set14 26.00 dB) and the MATLAB-era tables (SRCNN,
  VDSR, SRGAN).
- ``"basicsr"``: as BasicSR-style evaluation code does (most papers since 2018: EDSR's successors,
  ESRGAN, SwinIR, HAT, SPAN): OpenCV reads the grey PNG as three equal channels, the model's three
  output channels are kept, and the metrics are taken on the Y of MATLAB's ``rgb2ycbcr``, which
  maps a grey level v to 16 + 219 v / 255. The errors shrink by 219/255, so a grey image scores
  20 log10(255/219) = 1.32 dB higher (SSIM barely moves); RGB images score the same either way.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from ..data.files import list_images, match_pairs
from ..data.images import read_image
from ..data.patches import modcrop, paired_lr_size
from ..degrade import imresize
from ..errors import ArgumentError, DataError
from .metrics import SSIM_WINDOW, min_side, psnr, ssim

BICUBIC = "bicubic"
GreyConvention = Literal["intensity", "basicsr"]
GREY_CONVENTIONS: tuple[str, ...] = get_args(GreyConvention)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkImage:
    name: str
    hr: torch.Tensor  # (C, H, W) uint8, C = 1 or 3, H and W multiples of the scale
    lr: torch.Tensor  # (C, H / scale, W / scale) uint8


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float
    lpips: float | None


@dataclass
class SetResult:
    """One model on one benchmark set: a row per image, and their means."""

    set_name: str
    model_name: str
    images: list[ImageScore] = field(default_factory=list)
    grey: GreyConvention = "intensity"  # how grey images were scored (see the module's docstring)

    def summary(self) -> dict[str, Any]:
        """``{"psnr_y", "ssim_y", "lpips", "n", "grey"}``: means over the images (lpips None when not
        measured) and the grey-image convention they were scored by."""
        n = len(self.images)
        lpips = [s.lpips for s in self.images if s.lpips is not None]
        return {"psnr_y": sum(s.psnr_y for s in self.images) / n, "ssim_y": sum(s.ssim_y for s in self.images) / n,
                "lpips": sum(lpips) / n if len(lpips) == n else None, "n": n, "grey": self.grey}

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(score) for score in self.images]


def load_benchmark(folder: str | Path, scale: int) -> list[BenchmarkImage]:
    """The HR/LR pairs of a benchmark folder (canonical pairs, or HR only with LR made by the MATLAB bicubic).

    A folder with any ``NAME_HR`` or ``NAME_LRxN`` file is a folder of pairs: each of its HR images
    needs its ``NAME_LRx<scale>`` (LR images of other scales are ignored) and any other image is
    refused, so LR images are never scored as HR images. Raises DataError naming what does not fit.
    """
    folder = Path(folder)
    files = list_images(folder, subfolders_hint="a benchmark set is the images directly in its folder: give "
                                                "the folder that holds them")
    hr_files = [p for p in files if re.search(r"[_-]HR$", p.stem, re.IGNORECASE)]
    lr_scales = {p: int(m.group(1)) for p in files if (m := re.search(r"[_-]LR[_-]?x(\d+)$", p.stem, re.IGNORECASE))}
    if hr_files or lr_scales:  # a folder of canonical pairs: every image must be a part of one
        lr_files = [p for p, found in lr_scales.items() if found == scale]
        if not lr_files:
            found = ", ".join(f"x{n}" for n in sorted(set(lr_scales.values()))) or "none"
            raise DataError(f"{folder}: holds HR/LR pairs (NAME_HR with NAME_LRx{scale}) but no LR image at "
                            f"x{scale} (LR scales found: {found}); evaluate at a scale it has with --scale")
        others = [p.name for p in files if p not in hr_files and p not in lr_scales]
        if others:
            raise DataError(f"{folder}: holds HR/LR pairs (NAME_HR with NAME_LRx{scale}) and images that are "
                            f"neither: {', '.join(others[:10])}; move them out, or into a folder of HR images")
        return [benchmark_image(key, hr_path, scale, lr_path)
                for key, hr_path, lr_path in match_pairs(folder, hr_files, folder, lr_files)]
    refuse_shared_names([(path.stem, path.name) for path in files], str(folder))
    return [benchmark_image(path.stem, path, scale) for path in files]


def refuse_shared_names(named: list[tuple[str, str]], where: str) -> None:
    """DataError when two images (name, where it comes from) share a name: an image's name keys its
    scores, its crops and its saved output, so one would silently replace the other."""
    names = [name for name, _ in named]
    shared = [source for name, source in named if names.count(name) > 1]
    if shared:
        raise DataError(f"{where}: images must have distinct names without their suffix: {', '.join(shared)}; "
                        "rename or remove one")


def benchmark_image(name: str, hr_path: Path, scale: int, lr_path: Path | None = None) -> BenchmarkImage:
    """One image as the protocol reads it: 8-bit, grey kept grey; HR cropped to a multiple of the scale
    and its LR made by the MATLAB bicubic, or the given LR image checked against the HR image (the pairing
    rule of :func:`srframe.data.patches.paired_lr_size`, the datasets' rule too).

    Raises DataError naming the file when it cannot be read, is not 8-bit, is too small to be scored
    at this scale (:func:`min_side` of the border crop), or its LR partner has the wrong size.
    """
    hr = _read_8bit(hr_path)
    least = min_side(scale)
    if min(modcrop(hr, scale).shape[1:]) < least:
        raise DataError(f"{hr_path}: {hr.shape[2]}x{hr.shape[1]} pixels is too small to score at x{scale}: "
                        f"PSNR/SSIM crop {scale} pixels per border and SSIM needs an {SSIM_WINDOW}x{SSIM_WINDOW} "
                        f"window, so images need at least {least}x{least} pixels; leave it out of the folder")
    if lr_path is None:
        hr = modcrop(hr, scale)
        return BenchmarkImage(name, hr, imresize(hr, scale=1 / scale))
    lr = _read_8bit(lr_path)
    expected = paired_lr_size(hr.shape[1], hr.shape[2], scale)
    if hr.shape[0] != lr.shape[0] or tuple(lr.shape[1:]) != expected:
        what = (f"{lr.shape[0]} channel(s), its HR image {hr.shape[0]}" if hr.shape[0] != lr.shape[0] else
                f"{lr.shape[2]}x{lr.shape[1]} pixels, not {expected[1]}x{expected[0]} ({hr_path}'s "
                f"{hr.shape[2]}x{hr.shape[1]} divided by {scale}, rounded down)")
        raise DataError(f"{lr_path} does not pair with {hr_path} at x{scale}: it has {what}")
    return BenchmarkImage(name, hr[:, : expected[0] * scale, : expected[1] * scale], lr)


def evaluate(model: Any, folder: str | Path, scale: int | None = None, *, crop: int | None = None,
             lpips: Any = None, model_name: str | None = None, tile: int = 256, overlap: int = 32,
             device: str | torch.device | None = None, save_dir: str | Path | None = None,
             on_image: Callable[[BenchmarkImage, torch.Tensor, ImageScore], None] | None = None,
             grey: GreyConvention = "intensity") -> SetResult:
    """PSNR-Y and SSIM-Y (and LPIPS, given an :class:`~srframe.eval.lpips.LPIPS`) of ``model`` on a folder.

    ``model`` is a generator, a path to a component file, run directory or community checkpoint, or
    ``"bicubic"``. ``crop`` defaults to the scale; ``device`` runs the model there (None: where its
    parameters are). ``grey`` chooses how grey images are scored: ``"intensity"`` (srframe's default,
    which reproduces the published bicubic rows) or ``"basicsr"`` (as most papers since 2018 score
    them, 1.32 dB higher on a grey image; see the module's docstring). Raises ArgumentError for
    another ``grey``.
    SR images are written to ``save_dir`` as PNG when given;
    ``on_image(image, sr, score)`` hears of each image done (sr as uint8 (C, H, W)).
    """
    model_name = model_name or model_name_of(model)
    if isinstance(model, (str, Path)) and model != BICUBIC:
        from ..component_files import load_generator

        model = load_generator(model)
    if scale is None and not isinstance(model, str):
        scale = int(model.scale)
    if scale is None:
        raise ArgumentError("the bicubic baseline needs a scale: evaluate('bicubic', folder, scale=4)")
    if not isinstance(model, str):
        _check_scale(int(model.scale), scale, model_name)  # before reading the folder at a scale it cannot use
    check_grey(grey)
    return evaluate_images(model, load_benchmark(folder, scale), Path(folder).name, scale, crop=crop, lpips=lpips,
                           model_name=model_name, tile=tile, overlap=overlap, device=device, save_dir=save_dir,
                           on_image=on_image, grey=grey)


def evaluate_images(model: Any, images: Iterable[BenchmarkImage], set_name: str, scale: int | None = None, *,
                    crop: int | None = None, lpips: Any = None, model_name: str | None = None, tile: int = 256,
                    overlap: int = 32, device: str | torch.device | None = None, save_dir: str | Path | None = None,
                    on_image: Callable[[BenchmarkImage, torch.Tensor, ImageScore], None] | None = None,
                    grey: GreyConvention = "intensity") -> SetResult:
    """:func:`evaluate` on images already in memory (the training engine's validation set)."""
    check_grey(grey)
    name = model_name or model_name_of(model)
    model_scale, upscale = _upscaler(model, scale, tile, overlap, device)
    scale = scale or model_scale
    _check_scale(model_scale, scale, name)
    result = SetResult(set_name, name, grey=grey)
    crop = crop if crop is not None else scale
    for image in images:
        if min(image.hr.shape[1:]) < min_side(crop):
            raise DataError(f"{set_name}/{image.name}: {image.hr.shape[2]}x{image.hr.shape[1]} pixels is too small "
                            f"to score with a {crop}-pixel border crop: at least {min_side(crop)}x{min_side(crop)}")
        lr, hr = image.lr, image.hr
        if grey == "basicsr" and hr.shape[0] == 1:  # read as three equal channels, as OpenCV's imread does
            lr, hr = lr.expand(3, -1, -1), hr.expand(3, -1, -1)
        sr = upscale(lr)
        result.images.append(score(sr, hr, crop, lpips, image.name))
        _warn_if_not_finite(result.images[-1], set_name, name)
        if save_dir is not None:
            from ..outputs import write_png

            write_png(sr.permute(1, 2, 0).numpy(), Path(save_dir) / f"{image.name}.png")
        if on_image:
            on_image(image, sr, result.images[-1])
    return result


def check_grey(grey: str) -> None:
    """Raises ArgumentError unless ``grey`` names a grey-image convention."""
    if grey not in GREY_CONVENTIONS:
        raise ArgumentError(f"grey must be one of {', '.join(GREY_CONVENTIONS)} (how grey images are scored), "
                            f"not {grey!r}")


def score(sr: torch.Tensor, hr: torch.Tensor, crop: int, lpips: Any = None, name: str = "") -> ImageScore:
    """The metrics of one uint8 SR image against its uint8 HR image."""
    sr_f, hr_f = sr.float().unsqueeze(0) / 255, hr.float().unsqueeze(0) / 255
    distance = None
    if lpips is not None:
        rgb = [x.expand(-1, 3, -1, -1)[..., crop:x.shape[-2] - crop, crop:x.shape[-1] - crop] for x in (sr_f, hr_f)]
        with torch.no_grad():
            distance = float(lpips(*rgb)[0])
    return ImageScore(name, float(psnr(sr_f, hr_f, crop)[0]), float(ssim(sr_f, hr_f, crop)[0]), distance)


def _check_scale(model_scale: int, scale: int, name: str) -> None:
    if model_scale != scale:
        raise ArgumentError(f"model {name} upscales x{model_scale}, but the evaluation asks for x{scale} (--scale): "
                            f"evaluate it at x{model_scale}, or evaluate an x{scale} model")


def _warn_if_not_finite(scored: ImageScore, set_name: str, model_name: str) -> None:
    """The documented rule for metrics without a finite value: kept as inf/NaN, written as null in JSON, and named."""
    for metric in ("psnr_y", "ssim_y", "lpips"):
        value = getattr(scored, metric)
        if value is not None and not math.isfinite(value):
            why = " (the output equals the HR image)" if metric == "psnr_y" and value > 0 else ""
            logger.warning("%s/%s: %s of %s is %s%s; JSON reports it, and the mean over the set, as null", set_name,
                           scored.name, metric, model_name, value, why)


def _upscaler(model: Any, scale: int | None, tile: int, overlap: int,
              device: str | torch.device | None) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
    """The model's scale and a function from uint8 (C, h, w) LR to uint8 (C, h * scale, w * scale) SR."""
    if isinstance(model, str) and model == BICUBIC:
        if scale is None:
            raise ArgumentError("the bicubic baseline needs a scale: evaluate('bicubic', folder, scale=4)")
        return scale, lambda lr: imresize(lr, scale=scale)
    if isinstance(model, (str, Path)):
        from ..component_files import load_generator

        model = load_generator(model)
    from ..infer.upscale import Upscaler

    upscaler = Upscaler(model, tile=tile, overlap=overlap, device=device)  # its outputs are clamped to [0, 1]
    return upscaler.scale, lambda lr: (upscaler(lr.float() / 255) * 255).round().to(torch.uint8)


def _read_8bit(path: Path) -> torch.Tensor:
    image = read_image(path, rgb=False)
    if image.dtype != torch.uint8:
        raise DataError(f"{path}: benchmark images are 8-bit (the protocol's PSNR peak is 255); this one is 16-bit: "
                        "save an 8-bit copy to evaluate it (srframe upscale takes 16-bit images as they are)")
    return image


def model_name_of(model: Any) -> str:
    if isinstance(model, str) and model == BICUBIC:
        return BICUBIC
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir():
            return path.name
        return path.parent.name if path.name == "generator.safetensors" else path.stem
    built = getattr(model, "srframe_built_from", None)
    return built.name if built else type(model).__name__
