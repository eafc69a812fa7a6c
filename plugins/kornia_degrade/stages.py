"""The degradation stages, each a function ``(batch, settings, draw) -> batch`` on the batch's device.

A stage draws every random parameter for the whole batch first (a fixed number of draws, so
the generator's state after a stage does not depend on the image), then runs the selected
samples through kornia/torch operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import kornia
import torch
import torch.nn.functional as F

from srframe.errors import DataError

from . import kernels
from .draw import Draw
from .params import BLUR_KINDS, RESIZE_KINDS, Blur, Jpeg, Noise, Resize, weights

Size = tuple[int, int]
POISSON_LEVELS = 256.0  # the level count BasicSR finds in an 8-bit image


def blur(x: torch.Tensor, settings: Blur, draw: Draw) -> torch.Tensor:
    """Blur the samples chosen with probability ``settings.prob``, each with its own kernel."""
    n = x.shape[0]
    applied = draw.bernoulli(settings.prob, n)
    kind = draw.choice(weights(settings.kinds, BLUR_KINDS), n)
    support = draw.odd(settings.kernel_size, n)
    sigma = draw.uniform(settings.sigma, (n, 2))
    angle = draw.uniform(settings.angle, n)
    length = draw.odd(settings.motion_length, n)
    direction = draw.uniform(settings.motion_direction, n)
    cutoff = draw.uniform(settings.sinc_cutoff, n)
    iso = kind == BLUR_KINDS.index("iso")
    sigma[iso, 1] = sigma[iso, 0]

    def filtered(members: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        k = max(settings.kernel_size[1], settings.motion_length[1])
        built = torch.empty(len(members), k, k, device=x.device, dtype=x.dtype)
        for index, name in enumerate(BLUR_KINDS):
            chosen = (kind[members] == index).nonzero().squeeze(1)
            if len(chosen) == 0:
                continue
            at = members[chosen]
            if name == "motion":
                made = kernels.motion(length[at], angle[at], direction[at], k, x.device, x.dtype)
            elif name == "sinc":
                made = kernels.sinc(cutoff[at], support[at], k, x.device, x.dtype)
            else:
                made = kernels.gaussian(sigma[at, 0], sigma[at, 1], angle[at], support[at], k, x.device, x.dtype)
            built[chosen.to(x.device)] = made
        return filter2d(part, built)

    return on_samples(x, applied, filtered)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """kornia's filter2d with reflected borders, or replicated ones where the image is narrower than the kernel."""
    border = "reflect" if min(x.shape[-2:]) > kernel.shape[-1] // 2 else "replicate"
    return kornia.filters.filter2d(x, kernel, border_type=border)


def resize(x: torch.Tensor, size: Size, modes: Sequence[str], draw: Draw) -> torch.Tensor:
    """Resize every sample to ``size`` with a mode drawn for it from ``modes``."""
    mode = draw.choice([1.0] * len(modes), x.shape[0])
    if (mode == mode[0]).all():
        return interpolate(x, size, modes[int(mode[0])])
    out = x.new_empty(*x.shape[:2], *size)
    for index, name in enumerate(modes):
        members = (mode == index).nonzero().squeeze(1).to(x.device)
        if len(members):
            out[members] = interpolate(x[members], size, name)
    return out


def random_resize(x: torch.Tensor, base: Size, settings: Resize, draw: Draw) -> torch.Tensor:
    """Resize the batch to ``base`` times one factor drawn for the batch: up, down or kept (``settings.kinds``)."""
    kind = RESIZE_KINDS[int(draw.choice(weights(settings.kinds, RESIZE_KINDS), 1))]
    low, high = settings.scale
    up, down = draw.uniform((1.0, high), 1), draw.uniform((low, 1.0), 1)
    factor = {"up": float(up), "down": float(down), "keep": 1.0}[kind]
    return resize(x, (max(1, int(base[0] * factor)), max(1, int(base[1] * factor))), settings.modes, draw)


def interpolate(x: torch.Tensor, size: Size, mode: str) -> torch.Tensor:
    """One resize of the batch: torch's area/bilinear/bicubic, or srframe's MATLAB-compatible bicubic."""
    if mode == "matlab_bicubic":
        from srframe.degrade import imresize

        return imresize(x, size=size)
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def add_noise(x: torch.Tensor, settings: Noise, draw: Draw) -> torch.Tensor:
    """Add Gaussian or Poisson noise, grey or per channel, to the samples chosen with ``settings.prob``.

    Each of the four kinds of noise is drawn only for the samples that get it.
    """
    n = x.shape[0]
    applied = draw.bernoulli(settings.prob, n)
    poisson = draw.bernoulli(settings.poisson_prob, n)
    gray = draw.bernoulli(settings.gray_prob, n)
    sigma = draw.uniform(settings.sigma, n) / 255.0
    scale = draw.uniform(settings.poisson_scale, n)
    noise = torch.zeros_like(x)
    for is_poisson in (False, True):
        for is_gray in (False, True):
            members = (applied & (poisson == is_poisson) & (gray == is_gray)).nonzero().squeeze(1)
            if len(members) == 0:
                continue
            at = members.to(x.device)
            part = x[at]
            if is_poisson:
                clean = part.clamp(0, 1)
                if is_gray:
                    clean = kornia.color.rgb_to_grayscale(clean) if x.shape[1] == 3 else clean.mean(1, keepdim=True)
                field = (draw.poisson(clean * POISSON_LEVELS) / POISSON_LEVELS - clean) * _column(scale[members], x)
            else:
                shape = (len(members), 1 if is_gray else x.shape[1], *x.shape[2:])
                field = draw.normal(shape, x.dtype) * _column(sigma[members], x)
            noise[at] = field.expand_as(part)
    return x + noise


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values from the CPU as an (m, 1, 1, 1) tensor on ``like``'s device."""
    return values.to(like.device, like.dtype)[:, None, None, None]


def jpeg(x: torch.Tensor, settings: Jpeg, draw: Draw) -> torch.Tensor:
    """JPEG-compress (kornia's differentiable codec) the samples chosen with ``settings.prob``; clamps to [0, 1]."""
    n, c = x.shape[:2]
    applied = draw.bernoulli(settings.prob, n)
    quality = draw.uniform(settings.quality, n)
    if c not in (1, 3):
        raise DataError(f"JPEG needs RGB or grey images; this batch has {c} channels (shape {tuple(x.shape)})")

    def compressed(members: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        rgb = part.expand(-1, 3, -1, -1) if c == 1 else part
        out = kornia.enhance.jpeg_codec_differentiable(rgb, quality[members].to(part.device, part.dtype))
        return out.mean(1, keepdim=True) if c == 1 else out

    return on_samples(x.clamp(0, 1), applied, compressed)


def on_samples(x: torch.Tensor, chosen: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
               ) -> torch.Tensor:
    """Apply ``fn(indices, x[indices])`` to the samples where the CPU mask ``chosen`` is true; keep the others."""
    members = chosen.nonzero().squeeze(1)
    if len(members) == 0:
        return x
    if len(members) == len(x):
        return fn(members, x)
    out = x.clone()
    on_device = members.to(x.device)
    out[on_device] = fn(members, x[on_device])
    return out


def finish(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """Clamp to [0, 1] and, with ``quantize``, round to 8-bit levels as a saved LR image would be."""
    x = x.clamp(0, 1)
    return (x * 255).round() / 255 if quantize else x
