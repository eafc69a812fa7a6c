"""VGG content loss on named ReLU layers: the paper's VGG22 (``relu2_2``) and VGG54 (``relu5_4``)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from srframe.interfaces import Loss, LossContext
from srframe.schema import INVALID, Checker, KeyPath, close_matches
from srframe.weights import vgg_features

Backbone = Literal["vgg19", "vgg16"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_RESCALE = 1 / 12.75  # the paper scales VGG feature maps by 1/12.75 before the MSE
# Every ReLU of VGG19 (convolutions per block: 2, 2, 4, 4, 4); VGG16 has the first 3 of each deep block.
VGG19_LAYERS = [f"relu{block}_{conv}" for block, convs in enumerate((2, 2, 4, 4, 4), 1) for conv in range(1, convs + 1)]


@dataclass(frozen=True)
class LayerNames:
    """Checks layer names when a recipe is checked, before any weights are loaded."""

    def check(self, value: Any, path: KeyPath, checker: Checker) -> Any:
        names = [value] if isinstance(value, str) else list(value)
        unknown = [name for name in names if name not in VGG19_LAYERS]
        for name in unknown:
            checker.problem(path, f'unknown VGG layer "{name}"{close_matches(name, VGG19_LAYERS)} '
                                  f"Layers: {', '.join(VGG19_LAYERS)}.")
        return INVALID if unknown else value


def relu_names(features: nn.Sequential) -> dict[str, int]:
    """``{"relu1_1": 1, "relu1_2": 3, ...}``: each ReLU's name and index in torchvision's ``features``."""
    names, block, conv = {}, 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            names[f"relu{block}_{conv}"] = index
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


class VGGFeatures(nn.Module):
    """Frozen ImageNet VGG ``features`` up to the deepest requested layer; returns the named activations."""

    def __init__(self, backbone: Backbone, layers: list[str], weights: Path | None = None):
        super().__init__()
        features = vgg_features(backbone, weights)
        known = relu_names(features)
        for layer in layers:
            if layer not in known:
                hint = difflib.get_close_matches(layer, known, n=1)
                raise ValueError(f"{backbone} has no layer {layer!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                                 + f" Layers: {', '.join(known)}")
        self.indices = {layer: known[layer] for layer in layers}
        self.features = features[: max(self.indices.values()) + 1]
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # captured activations must not be overwritten
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


class VGGLoss(Loss):
    """Distance between VGG features of SR and HR at named ReLU layers (VGG22 = relu2_2, VGG54 = relu5_4)."""

    def __init__(self, layers: Annotated[str | list[str] | dict[str, float], LayerNames()] = "relu5_4",
                 backbone: Backbone = "vgg19",
                 criterion: Literal["mse", "l1"] = "mse", rescale: bool = False, weights: Path | None = None):
        super().__init__()
        if isinstance(layers, str):
            layers = [layers]
        self.layer_weights = dict(layers) if isinstance(layers, dict) else {layer: 1.0 for layer in layers}
        if not self.layer_weights:
            raise ValueError("layers is empty: name at least one, e.g. layers = \"relu5_4\"")
        self.vgg = VGGFeatures(backbone, list(self.layer_weights), weights)
        self.distance = F.mse_loss if criterion == "mse" else F.l1_loss
        self.scale = PAPER_RESCALE if rescale else 1.0

    def forward(self, ctx: LossContext) -> torch.Tensor:
        sr = self.vgg(ctx.sr)
        with torch.no_grad():
            hr = self.vgg(ctx.hr)
        return sum(weight * self.distance(sr[layer] * self.scale, hr[layer] * self.scale)
                   for layer, weight in self.layer_weights.items())
