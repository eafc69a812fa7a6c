"""The recipe settings of each degradation stage, as typed dataclasses (no torch here).

Each dataclass is a recipe table (``[degradation.blur]``); its type hints are its schema, so
``srframe recipe check`` rejects a probability of 1.5 or a reversed range before anything is
built. A table leaves out keys to keep their defaults. The second-round classes of the
second-order pipeline only change defaults, so that a partial ``[degradation.blur2]`` table
keeps the second round's defaults for the keys it leaves out.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from srframe.errors import RecipeError
from srframe.schema import Checker, KeyPath, Range, close_matches, schema_of, show

ResizeMode = Literal["area", "bilinear", "bicubic", "matlab_bicubic"]
BLUR_KINDS = ("iso", "aniso", "motion", "sinc")
RESIZE_KINDS = ("up", "down", "keep")


@dataclass(frozen=True)
class Interval:
    """Marks a ``[low, high]`` pair: ``Annotated[tuple[float, float], Interval(min=0)]``.

    ``low <= high``, both within ``min``/``max``; ``odd`` asks for odd integers (kernel sizes);
    ``contains`` is a value the interval must include.
    """

    min: float | None = None
    max: float | None = None
    odd: bool = False
    contains: float | None = None

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        low, high = value
        if low > high:
            return checker.problem(path, f"{show(list(value))} is reversed: write [low, high], "
                                         f"e.g. {show([high, low])}")
        if (self.min is not None and low < self.min) or (self.max is not None and high > self.max):
            bounds = " and ".join(b for b in (f">= {self.min}" if self.min is not None else "",
                                              f"<= {self.max}" if self.max is not None else "") if b)
            return checker.problem(path, f"{show(list(value))} is out of range: both ends must be {bounds}")
        if self.odd and (low % 2 == 0 or high % 2 == 0):
            return checker.problem(path, f"{show(list(value))}: kernel sizes are odd, e.g. "
                                         f"{show([low | 1, high if high % 2 else high - 1])}")
        if self.contains is not None and not low <= self.contains <= high:
            return checker.problem(path, f"{show(list(value))} must include {self.contains}: down-scaling draws "
                                         f"from [low, {self.contains}] and up-scaling from [{self.contains}, high]")
        return value


@dataclass(frozen=True)
class Weights:
    """Marks a table of relative weights over ``names``: ``{ iso = 0.6, sinc = 0.1 }``; left-out names weigh 0."""

    names: tuple[str, ...]

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        for key in value:
            if key not in self.names:
                return checker.problem(path + (key,), f"unknown choice{close_matches(key, self.names) or '.'} "
                                                      f"Choices: {', '.join(self.names)}.")
        if sum(value.values()) <= 0:
            return checker.problem(path, f"{show(value)}: give at least one of {', '.join(self.names)} "
                                         "a weight above 0")
        return value


@dataclass(frozen=True)
class Modes:
    """Marks a non-empty array of resize modes; ``"matlab_bicubic"`` needs ``srframe.degrade.imresize``."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        if not value:
            return checker.problem(path, f"is empty: name at least one of {', '.join(get_args(ResizeMode))}")
        if "matlab_bicubic" in value and not _has_matlab_bicubic():
            return checker.problem(path, '"matlab_bicubic" needs srframe.degrade.imresize, which this srframe '
                                         'does not provide; use "bicubic" (torch) instead')
        return value


def _has_matlab_bicubic() -> bool:
    try:
        from srframe.degrade import imresize  # noqa: F401
    except ImportError:
        return False
    return True


Probability = Annotated[float, Range(min=0, max=1)]
BlurKinds = Annotated[dict[str, Annotated[float, Range(min=0)]], Weights(BLUR_KINDS)]
ResizeKinds = Annotated[dict[str, Annotated[float, Range(min=0)]], Weights(RESIZE_KINDS)]
ResizeModes = Annotated[tuple[ResizeMode, ...], Modes()]
KernelSizes = Annotated[tuple[int, int], Interval(min=3, odd=True)]
DEFAULT_MODES: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")


class Checked:
    """Checks a settings dataclass built from Python against its own type hints, as a recipe is checked."""

    def __post_init__(self) -> None:
        checker = Checker()
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        checker.check_table(values, schema_of(type(self)), (), type(self).__name__)
        if checker.problems:
            raise RecipeError(f"invalid {type(self).__name__} settings:", checker.problems)


@dataclass(frozen=True)
class Blur(Checked):
    """Blur each sample with a kernel of a randomly chosen kind (``kinds`` weighs them).

    ``iso``/``aniso``: Gaussian with ``sigma`` (one for both axes / one per axis) turned by ``angle``
    degrees; ``motion``: a line ``motion_length`` long at ``angle``, weighted by ``motion_direction``
    (kornia); ``sinc``: a circular low-pass with cutoff ``sinc_cutoff`` (fraction of Nyquist).
    """

    prob: Probability = 1.0
    kinds: BlurKinds = field(default_factory=lambda: {"iso": 0.6, "aniso": 0.3, "sinc": 0.1})
    kernel_size: KernelSizes = (7, 21)
    sigma: Annotated[tuple[float, float], Interval(min=0.01)] = (0.2, 3.0)
    angle: Annotated[tuple[float, float], Interval()] = (0.0, 180.0)
    motion_length: KernelSizes = (3, 15)
    motion_direction: Annotated[tuple[float, float], Interval(min=-1, max=1)] = (-1.0, 1.0)
    sinc_cutoff: Annotated[tuple[float, float], Interval(min=0.01, max=1)] = (0.33, 1.0)


@dataclass(frozen=True)
class SecondBlur(Blur):
    """The second round's blur: applied less often, with smaller Gaussians."""

    prob: Probability = 0.8
    sigma: Annotated[tuple[float, float], Interval(min=0.01)] = (0.2, 1.5)


@dataclass(frozen=True)
class Resize(Checked):
    """Resize the batch by one factor: up from [1, high], down from [low, 1], or keep (``kinds`` weighs them);
    each sample gets a random mode from ``modes``."""

    kinds: ResizeKinds = field(default_factory=lambda: {"up": 0.2, "down": 0.7, "keep": 0.1})
    scale: Annotated[tuple[float, float], Interval(min=0.01, contains=1.0)] = (0.15, 1.5)
    modes: ResizeModes = DEFAULT_MODES


@dataclass(frozen=True)
class SecondResize(Resize):
    """The second round's resize, relative to the LR size."""

    kinds: ResizeKinds = field(default_factory=lambda: {"up": 0.3, "down": 0.4, "keep": 0.3})
    scale: Annotated[tuple[float, float], Interval(min=0.01, contains=1.0)] = (0.3, 1.2)


@dataclass(frozen=True)
class TargetResize(Checked):
    """Resize to the LR size (HR size / scale); each sample gets a random mode from ``modes``."""

    modes: ResizeModes = DEFAULT_MODES


@dataclass(frozen=True)
class FinalResize(TargetResize):
    """The second-order pipeline's last step: resize to the LR size and sinc-filter (``sinc_prob``), before the
    final JPEG (``resize_first_prob``) or after it; the order is drawn once per batch."""

    sinc_prob: Probability = 0.8
    sinc_kernel_size: KernelSizes = (7, 21)
    sinc_cutoff: Annotated[tuple[float, float], Interval(min=0.01, max=1)] = (0.33, 1.0)
    resize_first_prob: Probability = 0.5

    @functools.cached_property
    def sinc(self) -> Blur:
        """The sinc filter as a blur stage."""
        return Blur(prob=self.sinc_prob, kinds={"sinc": 1.0}, kernel_size=self.sinc_kernel_size,
                    sinc_cutoff=self.sinc_cutoff)


@dataclass(frozen=True)
class Noise(Checked):
    """Add noise to a sample (``prob``): Poisson (``poisson_prob``) or else Gaussian, the same in every channel
    (``gray_prob``) or per channel. Gaussian ``sigma`` is in grey levels of 255; Poisson noise is
    ``(Poisson(256 x) / 256 - x) * scale`` with ``scale`` from ``poisson_scale``."""

    prob: Probability = 1.0
    poisson_prob: Probability = 0.5
    gray_prob: Probability = 0.4
    sigma: Annotated[tuple[float, float], Interval(min=0)] = (1.0, 30.0)
    poisson_scale: Annotated[tuple[float, float], Interval(min=0)] = (0.05, 3.0)


@dataclass(frozen=True)
class SecondNoise(Noise):
    """The second round's noise: a little weaker."""

    sigma: Annotated[tuple[float, float], Interval(min=0)] = (1.0, 25.0)
    poisson_scale: Annotated[tuple[float, float], Interval(min=0)] = (0.05, 2.5)


@dataclass(frozen=True)
class Jpeg(Checked):
    """JPEG-compress a sample (``prob``) with kornia's differentiable codec at a quality from ``quality``."""

    prob: Probability = 1.0
    quality: Annotated[tuple[float, float], Interval(min=1, max=100)] = (30.0, 95.0)


def weights(table: Mapping[str, float], names: tuple[str, ...]) -> list[float]:
    """The weights of ``names`` in order, 0 for those left out."""
    return [float(table.get(name, 0.0)) for name in names]

