"""srframe-fft-loss: an FFT (Fourier-space) loss for srframe, installed as a plugin package.

srframe imports this module through the entry point in ``pyproject.toml`` on its first registry
lookup and calls :func:`srframe_register`, which adds the loss ``fft``. A recipe then uses it in a
stage: ``losses = [{ kind = "l1" }, { kind = "fft", weight = 10.0 }]``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

import srframe
from srframe.interfaces import Loss, LossContext

__all__ = ["FFTLoss", "spectrum", "srframe_register"]

Mode = Literal["complex", "amplitude"]


def spectrum(images: torch.Tensor) -> torch.Tensor:
    """The orthonormal 2-D FFT of real images over (H, W): (N, C, H, W) -> (N, C, H, W // 2 + 1) complex.

    Half-precision images are transformed in float32: torch's FFTs take no bfloat16, and
    float16 only on CUDA and for power-of-two sizes.
    """
    if images.dtype in (torch.float16, torch.bfloat16):
        images = images.float()
    return torch.fft.rfft2(images, norm="ortho")


class FFTLoss(Loss):
    """Mean absolute difference between the 2-D Fourier spectra of SR and HR (rfft2, orthonormal).

    Each image and channel is transformed over (H, W) by ``torch.fft.rfft2(x, norm="ortho")``:
    ``X[u, v] = sum over h, w of x[h, w] exp(-2 pi i (u h / H + v w / W)) / sqrt(H W)`` for
    ``0 <= u < H`` and ``0 <= v <= W // 2``. The other half of a real image's spectrum is the
    complex conjugate of this half, so it adds nothing. The orthonormal scaling keeps the image's
    energy (Parseval's theorem), which puts the loss on the scale of pixel differences. Trainers
    that use torch's default, unnormalised FFT get values sqrt(H W) times larger: their weight w
    on P x P patches is a weight of w * P here.

    ``mode``:

    - ``"complex"`` (default): the mean of ``|Re X_sr - Re X_hr|`` and ``|Im X_sr - Im X_hr|``
      over all N x C x H x (W // 2 + 1) coefficients, the two parts counted as separate
      elements. It is 0 only when SR equals HR. This is the FFT loss of Cho et al., "Rethinking
      Coarse-to-Fine Approach in Single Image Deblurring" (MIMO-UNet), ICCV 2021 (there on the
      full, unnormalised spectrum), and ``FFTLoss`` of traiNNer-redux (on this half, unnormalised).
    - ``"amplitude"``: the mean of ``| |X_sr| - |X_hr| |``, the amplitude term of the Fourier
      loss of Fuoli, Van Gool and Timofte, "Fourier Space Losses for Efficient Perceptual Image
      Super-Resolution", ICCV 2021. Their loss adds an L1 term on the phase (and applies a Hann
      window first); that term is left out here, since a phase difference wraps around at +-pi
      and is meaningless where the amplitude is near 0. The amplitude does not see where
      things are (a circular shift leaves it unchanged), so use it beside a pixel loss.

    ``forward(ctx)`` reads ``ctx.sr`` and ``ctx.hr``, both (N, C, H, W) floats nominally in
    [0, 1] (``sr`` is the generator's raw, unclamped output), and returns a scalar >= 0.
    """

    def __init__(self, mode: Mode = "complex"):
        super().__init__()
        if mode not in get_args(Mode):  # recipes and srframe.build check this from the hint; this is for direct calls
            raise ValueError(f"mode must be one of {', '.join(map(repr, get_args(Mode)))}, not {mode!r}")
        self.mode = mode

    def forward(self, ctx: LossContext) -> torch.Tensor:
        sr, hr = spectrum(ctx.sr), spectrum(ctx.hr)
        if self.mode == "amplitude":
            return (sr.abs() - hr.abs()).abs().mean()
        return (torch.view_as_real(sr) - torch.view_as_real(hr)).abs().mean()

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


@srframe.hookimpl
def srframe_register(registry):
    """srframe calls this when it loads the plugin: add the loss under the name recipes use."""
    registry.add("loss", "fft", FFTLoss)
