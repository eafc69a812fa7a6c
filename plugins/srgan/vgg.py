"""VGG content (perceptual) loss on named layers of an ImageNet VGG.

``reluX_Y`` names the activation after the Y-th ReLU of block X, as SRGAN (Ledig et al., CVPR 2017)
uses them: VGG22 = ``relu2_2``, VGG54 = ``relu5_4``. ``convX_Y`` names the same convolution's output
*before* its ReLU, as ESRGAN (Wang et al., ECCVW 2018) and Real-ESRGAN (Wang et al., ICCVW 2021)
compare features (BasicSR's ``PerceptualLoss`` and its ``layer_weights`` such as ``conv5_4``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from srframe.interfaces import Loss, LossContext
from srframe.schema import INVALID, Checker, Exists, KeyPath, close_matches, enforce
from srframe.weights import vgg_features

Backbone = Literal["vgg19", "vgg16"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_RESCALE = 1 / 12.75  # the paper scales VGG feature maps by 1/12.75 before the MSE
# Every layer name of each backbone (convolutions per block: VGG19 2, 2, 4, 4, 4; VGG16 2, 2, 3, 3, 3):
# each ReLU's output (reluX_Y), then each convolution's output before its ReLU (convX_Y).
PREFIXES = ("relu", "conv")
LAYERS = {backbone: [f"{prefix}{block}_{conv}" for prefix in PREFIXES
                     for block, convs in enumerate(per_block, 1) for conv in range(1, convs + 1)]
          for backbone, per_block in (("vgg19", (2, 2, 4, 4, 4)), ("vgg16", (2, 2, 3, 3, 3)))}
VGG19_LAYERS = LAYERS["vgg19"]


def _of_kind(names: list[str], like: str) -> list[str]:
    """The names in ``names`` of the same kind (``relu`` or ``conv``) as ``like``."""
    return [name for name in names if name[:4] == like[:4]] or [name for name in names if name.startswith("relu")]


@dataclass(frozen=True)
class LayerNames:
    """Checks layer names when a recipe is checked, before any weights are loaded."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        names = [value] if isinstance(value, str) else list(value)
        unknown = [name for name in names if name not in VGG19_LAYERS]
        relus = _of_kind(VGG19_LAYERS, "relu")
        for name in unknown:
            checker.problem(path, f'unknown VGG layer "{name}"{close_matches(name, VGG19_LAYERS)} '
                                  f"Layers: {', '.join(relus)} (after the ReLU), or the same names with conv "
                                  "instead of relu (the convolution's output before its ReLU, e.g. conv5_4).")
        return INVALID if unknown else value


def layer_names(features: nn.Sequential) -> dict[str, int]:
    """``{"conv1_1": 0, "relu1_1": 1, "conv1_2": 2, "relu1_2": 3, ...}``: each convolution's and each ReLU's
    name and index in torchvision's ``features``."""
    names, block, conv = {}, 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
            names[f"conv{block}_{conv}"] = index
        elif isinstance(module, nn.ReLU):
            names[f"relu{block}_{conv}"] = index
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


class VGGFeatures(nn.Module):
    """Frozen ImageNet VGG ``features`` up to the deepest requested layer; returns the named feature maps
    (``reluX_Y`` after a ReLU, ``convX_Y`` before it)."""

    def __init__(self, backbone: Backbone, layers: list[str], weights: Path | None = None):
        super().__init__()
        features = vgg_features(backbone, weights)
        known = layer_names(features)
        for layer in layers:
            if layer not in known:
                hint = difflib.get_close_matches(layer, known, n=1)
                raise ValueError(f"{backbone} has no layer {layer!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                                 + f" Layers: {', '.join(known)}")
        self.indices = {layer: known[layer] for layer in layers}
        self.features = features[: max(self.indices.values()) + 1]
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # captured maps (a conv's output before its ReLU) must not be overwritten
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (img - self.mean) / self.std
        wanted = {index: layer for layer, index in self.indices.items()}
        out = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # batch statistics never apply; the backbone stays in eval mode


WeightsFile = Annotated[Path, Exists("file", "give torchvision's VGG checkpoint or a features .safetensors file, "
                                                "or leave `weights` out to use `srframe weights fetch vgg16`")]


def _layer_weights(layers: str | list[str] | dict[str, float]) -> dict[str, float]:
    if isinstance(layers, str):
        layers = [layers]
    return dict(layers) if isinstance(layers, dict) else {layer: 1.0 for layer in layers}


class VGGLoss(Loss):
    """Distance between VGG features of SR and HR at named layers: SRGAN's content loss (VGG22 = relu2_2,
    VGG54 = relu5_4) and ESRGAN's / Real-ESRGAN's perceptual loss (features before the ReLU, conv5_4 ...).

    The loss is the sum over the layers of weight x criterion(features(SR), features(HR)), the
    criterion a mean over the feature map. ``layers``: a layer name, a list of names (weight 1
    each), or a table of name -> weight; ``reluX_Y`` is the Y-th ReLU's output in block X, ``convX_Y``
    the same convolution's output before its ReLU. ``backbone``: the ImageNet VGG whose features
    are compared (VGG19 in both papers; VGG16 is the one `srframe weights fetch vgg16` can supply
    offline). ``criterion``: ``"mse"`` (SRGAN) or ``"l1"`` (ESRGAN, Real-ESRGAN). ``rescale``
    multiplies the feature maps by 1/12.75 as SRGAN does. ``weights``: a file to load the VGG from
    instead of the caches. Images are normalised with ImageNet's mean and standard deviation first.

    Real-ESRGAN's ``PerceptualLoss`` (VGG19, ``use_input_norm``, no ``range_norm``, L1, style weight 0):
    ``layers = { conv1_2 = 0.1, conv2_2 = 0.1, conv3_4 = 1, conv4_4 = 1, conv5_4 = 1 }, criterion = "l1"``.
    """

    def __init__(self, layers: Annotated[str | list[str] | dict[str, float], LayerNames()] = "relu5_4",
                 backbone: Backbone = "vgg19",
                 criterion: Literal["mse", "l1"] = "mse", rescale: bool = False, weights: WeightsFile | None = None):
        super().__init__()
        enforce(VGGLoss, dict(layers=layers, backbone=backbone))
        self.layer_weights = _layer_weights(layers)
        self.vgg = VGGFeatures(backbone, list(self.layer_weights), weights)
        self.distance = F.mse_loss if criterion == "mse" else F.l1_loss
        self.scale = PAPER_RESCALE if rescale else 1.0

    @staticmethod
    def check_params(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The layers must exist in the chosen backbone (checked before any weights are loaded)."""
        layers, backbone = _layer_weights(params["layers"]), params["backbone"]
        if not layers:
            yield "layers", 'is empty: name at least one, e.g. layers = "relu5_4"'
        for layer in layers:
            if layer in VGG19_LAYERS and layer not in LAYERS[backbone]:
                yield "layers", (f'{backbone} has no layer "{layer}" (its blocks 3-5 have 3 convolutions, not 4): '
                                 f'choose one of {", ".join(_of_kind(LAYERS[backbone], layer))}, '
                                 'or backbone = "vgg19"')

    def forward(self, ctx: LossContext) -> torch.Tensor:
        sr = self.vgg(ctx.sr)
        with torch.no_grad():
            hr = self.vgg(ctx.hr)
        return sum(weight * self.distance(sr[layer] * self.scale, hr[layer] * self.scale)
                   for layer, weight in self.layer_weights.items())
