"""Cropping and augmenting (C, H, W) images: random HR patches with matching LR crops, the
eight flips and 90-degree rotations, and cropping whole images to a multiple of the scale."""

from __future__ import annotations

import random

import torch


def modcrop(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """The top-left part of ``image`` whose height and width are multiples of ``multiple``."""
    height, width = image.shape[-2:]
    return image[..., : height - height % multiple, : width - width % multiple]


def paired_lr_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The (height, width) an LR partner of an HR image must have: the HR size divided by ``scale``, rounded down.

    The one pairing rule of datasets and benchmarks: the LR image was made from the HR image
    cropped (top-left) to a multiple of the scale, as BSD100's and DIV2K's pairs were, so an
    uncropped 481x321 HR image pairs with a 120x80 LR image at x4 and is cropped to 480x320.
    """
    return height // scale, width // scale


def random_patch(hr: torch.Tensor, patch_size: int, rng: random.Random, lr: torch.Tensor | None = None,
                 scale: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random ``patch_size`` square of ``hr`` and, when ``lr`` is given, the matching
    ``patch_size / scale`` square of ``lr`` (the HR patch starts on a multiple of ``scale``)."""
    if lr is None:
        top = rng.randrange(hr.shape[-2] - patch_size + 1)
        left = rng.randrange(hr.shape[-1] - patch_size + 1)
        return hr[..., top: top + patch_size, left: left + patch_size], None
    lr_size = patch_size // scale
    top = rng.randrange(lr.shape[-2] - lr_size + 1)
    left = rng.randrange(lr.shape[-1] - lr_size + 1)
    hr_patch = hr[..., top * scale: (top + lr_size) * scale, left * scale: (left + lr_size) * scale]
    return hr_patch, lr[..., top: top + lr_size, left: left + lr_size]


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: bit 0 flips left-right, bit 1 flips up-down,
    bit 2 transposes (with the flips, that gives the 90-degree rotations)."""
    if k & 1:
        image = image.flip(-1)
    if k & 2:
        image = image.flip(-2)
    if k & 4:
        image = image.transpose(-2, -1)
    return image.contiguous()
