"""srframe: a plugin-extensible super-resolution framework for PyTorch.

Importing srframe is cheap: it loads no plugin, no model and not even torch. Plugins are
loaded on the first registry lookup; the interfaces (which need torch) on first use.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .component_files import load_component, load_generator, save_component
from .errors import SrframeError
from .plugins import hookimpl, registry
from .recipe import Recipe, load_recipe

__version__ = "0.1.0"

register = registry.register

# Public names that need torch, imported on first use: name -> module
_LAZY = {
    **dict.fromkeys(("Generator", "Discriminator", "Loss", "LossContext", "AdversarialLoss", "DiscriminatorContext",
                     "Degradation"), "srframe.interfaces"),
    "upscale": "srframe.infer.upscale",
    "Upscaler": "srframe.infer.upscale",
    "evaluate": "srframe.eval.benchmark",
    "run": "srframe.train.engine",
}

__all__ = ["Recipe", "SrframeError", "build", "errors", "hookimpl", "load_component", "load_generator", "load_recipe",
           "register", "registry", "save_component", *_LAZY]


def build(kind: str, name: str, /, **params: Any) -> Any:
    """Build a registered component by name, its parameters checked against its schema first.

    >>> loss = srframe.build("loss", "charbonnier", eps=1e-3)
    """
    return registry.build(kind, name, params, source=f"srframe.build({kind!r}, {name!r})")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'srframe' has no attribute {name!r}")
