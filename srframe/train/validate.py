"""Validation during training, through srframe's own evaluation (one PSNR, one SSIM, one LPIPS).

The ``[data.val]`` images are scored exactly as ``srframe eval`` scores a benchmark folder:
8-bit images, LR made by the MATLAB-compatible bicubic from the HR image cropped to a multiple
of the scale (or the paired set's own LR images), PSNR-Y and SSIM-Y with a border crop of
``scale`` pixels. So a validation PSNR-Y is the number ``srframe eval`` reports for the same
images, whatever degradation the training stage uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..degrade import imresize
from ..eval.benchmark import BenchmarkImage, benchmark_image, evaluate_images, refuse_shared_names

METRICS = {"psnr_y": "higher", "ssim_y": "higher", "lpips": "lower"}  # which way is better


class Validation:
    """The ``[data.val]`` images and the metrics to score a generator on them (rank 0 only)."""

    def __init__(self, images: list[BenchmarkImage], scale: int, lpips: Any = None):
        self.images, self.scale, self.lpips = images, scale, lpips

    @classmethod
    def from_recipe(cls, spec: Any, registry: Any) -> Validation | None:
        """From the recipe's ``[data.val]`` (None without one); LPIPS when ``train.lpips`` asks for it.

        Raises WeightsError when LPIPS is asked for and its weights cannot be found (before step 1).
        """
        if spec.data is None or spec.data.val is None:
            return None
        lpips = None
        if spec.train.lpips:
            from ..errors import WeightsError
            from ..eval.lpips import LPIPS

            try:
                lpips = LPIPS().eval()
            except WeightsError as exc:
                raise WeightsError(f"train.lpips = true validates LPIPS, whose weights are missing: run `srframe "
                                   "weights fetch vgg16` and `srframe weights fetch lpips`, or set train.lpips = "
                                   f"false. ({exc})") from exc
        return cls(validation_images(spec.data.val.build(registry), spec.scale), spec.scale, lpips)

    def score(self, generator: nn.Module) -> dict[str, Any]:
        """``{"psnr_y", "ssim_y", "lpips", "n"}``: means over the images (lpips None without the metric).

        Runs on a copy of ``generator`` in eval mode (srframe.eval's Upscaler), so training is untouched;
        the metrics are computed on the CPU, as ``srframe eval`` computes them.
        """
        summary = evaluate_images(generator, self.images, "val", self.scale, lpips=self.lpips,
                                  model_name="generator").summary()
        del summary["grey"]  # validation scores grey images the one way, srframe's default
        return summary

    @staticmethod
    def better(metric: str, value: float, best: Mapping[str, Any] | None) -> bool:
        """Whether ``value`` of ``metric`` beats the stage's ``best`` record (None: nothing yet)."""
        if best is None or best.get("metric") != metric:
            return True
        return value > best["value"] if METRICS[metric] == "higher" else value < best["value"]


def validation_images(dataset: Any, scale: int) -> list[BenchmarkImage]:
    """The validation dataset's whole images as 8-bit HR/LR pairs, read as ``srframe eval`` reads them.

    Images from files are read by the evaluation protocol itself (a grey file stays grey, so its
    score is the one ``srframe eval`` gives); others (the built-in samples) come from the dataset,
    with LR made by the MATLAB bicubic unless the dataset gives it.
    """
    from ..data.datasets import FileImage

    images, entries = [], getattr(dataset, "entries", None)  # srframe's datasets say where each image is from
    for index in range(len(dataset)):
        entry = entries[index] if entries is not None else None
        if entry is not None and isinstance(entry.hr, FileImage) and isinstance(entry.lr, (FileImage, type(None))):
            images.append(benchmark_image(entry.name, entry.hr.path, scale, entry.lr.path if entry.lr else None))
            continue
        item = dataset[index]
        hr = _as_8bit(item["hr"])
        lr = _as_8bit(item["lr"]) if "lr" in item else imresize(hr, scale=1 / scale)
        images.append(BenchmarkImage(str(item["name"]), hr, lr))
    refuse_shared_names([(image.name, str(entry.hr) if entries is not None else image.name)
                         for image, entry in zip(images, entries or images)], "[data.val]")
    return images


def _as_8bit(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    return (image.float() / 257).round().clamp(0, 255).to(torch.uint8)  # 16-bit images: the eval protocol is 8-bit
