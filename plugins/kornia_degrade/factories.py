"""The registered factories; their keyword parameters are the recipe schema of each pipeline.

This module imports no torch or kornia, so loading the plugin (``srframe plugins``, recipe
checks) stays cheap; the pipelines are imported when one is built.
"""

from __future__ import annotations

from typing import Annotated

from srframe.schema import Range

from .params import Blur, FinalResize, Jpeg, Noise, Resize, SecondBlur, SecondNoise, SecondResize, TargetResize


def first_order(
    scale: Annotated[int, Range(min=1)],
    blur: Blur = Blur(),
    resize: TargetResize = TargetResize(),
    noise: Noise = Noise(),
    jpeg: Jpeg = Jpeg(),
    quantize: bool = True,
):
    """Kornia first-order degradation: blur -> resize to the LR size -> noise -> JPEG."""
    from .pipelines import FirstOrder

    return FirstOrder(scale, blur, resize, noise, jpeg, quantize)


def second_order(
    scale: Annotated[int, Range(min=1)],
    blur: Blur = Blur(),
    resize: Resize = Resize(),
    noise: Noise = Noise(),
    jpeg: Jpeg = Jpeg(),
    blur2: SecondBlur = SecondBlur(),
    resize2: SecondResize = SecondResize(),
    noise2: SecondNoise = SecondNoise(),
    jpeg2: Jpeg = Jpeg(),
    final: FinalResize = FinalResize(),
    quantize: bool = True,
):
    """Kornia Real-ESRGAN-style second-order degradation: (blur, resize, noise, JPEG) twice, then resize + sinc."""
    from .pipelines import SecondOrder

    return SecondOrder(scale, blur, resize, noise, jpeg, blur2, resize2, noise2, jpeg2, final, quantize)
