"""Optimisers by name, with timm's names and defaults (``timm.optim.list_optimizers()``): an optimiser
gets the settings ``timm.optim.create_optimizer_v2`` would give it, under the recipe's own.

The names whose class is torch's own (``adam``, ``adamw``, ``sgd``, ...) resolve from a table
that mirrors timm's entries for them, class and defaults alike (a test holds the two equal),
so checking a recipe that uses one does not import timm: its import pulls in torchvision and
torch._dynamo, about 1.6 s on a 2-core CPU. Any other name is looked up in timm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class OptimizerInfo:
    """An optimiser: its class and the defaults its name implies (timm's ``sgd`` is Nesterov SGD)."""

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)


# timm name -> (torch.optim class name, defaults), as timm's create_optimizer_v2 builds them: its
# registry's defaults, plus momentum = 0.9 for the optimisers that take a momentum
_TORCH_OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "nadam": ("NAdam", {}),
    "radam": ("RAdam", {}),
    "radamw": ("RAdam", {"decoupled_weight_decay": True}),
    "adamax": ("Adamax", {}),
    "sgd": ("SGD", {"nesterov": True, "momentum": 0.9}),
    "momentum": ("SGD", {"nesterov": False, "momentum": 0.9}),
    "rmsprop": ("RMSprop", {"alpha": 0.9, "momentum": 0.9}),
    "adagrad": ("Adagrad", {"eps": 1e-8}),
    "adadelta": ("Adadelta", {}),
}

# words of torch's "Invalid ..." messages -> the parameter they are about
_MESSAGE_KEYS = {"learning rate": "lr", "epsilon": "eps", "beta": "betas", "nesterov": "momentum"}
TIMM_MOMENTUM = 0.9  # create_optimizer_v2's momentum for the optimisers that take one


def find(name: str) -> OptimizerInfo | None:
    """The optimiser called ``name``, or None; timm is imported only for names torch does not provide.

    Raises ValueError for a name timm knows whose class cannot be loaded here (apex's and
    bitsandbytes' optimisers need CUDA and their packages).
    """
    if name in _TORCH_OPTIMIZERS:
        class_name, defaults = _TORCH_OPTIMIZERS[name]
        return OptimizerInfo(name, getattr(torch.optim, class_name), dict(defaults))
    import timm.optim

    if name not in timm.optim.list_optimizers():
        return None
    info = timm.optim.get_optimizer_info(name)
    defaults = {**({"momentum": TIMM_MOMENTUM} if info.has_momentum else {}), **(info.defaults or {})}
    try:
        cls = timm.optim.get_optimizer_class(name, bind_defaults=False)
    except (AssertionError, ImportError) as exc:  # apex and bitsandbytes optimisers: CUDA and their package
        raise ValueError(f'optimizer "{name}" cannot be used here: {exc or type(exc).__name__}') from exc
    return OptimizerInfo(name, cls, defaults)


def names() -> list[str]:
    """Every optimiser name (imports timm)."""
    import timm.optim

    return sorted(set(timm.optim.list_optimizers()) | set(_TORCH_OPTIMIZERS))


def build(info: OptimizerInfo, parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
          params: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimiser over ``parameters``, with its name's defaults under the recipe's ``params``."""
    return info.cls(parameters, **{**info.defaults, **params})


def refusals(info: OptimizerInfo, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, message)`` for each setting the optimiser's constructor refuses (none: ``[]``).

    The constructor runs its own checks over one dummy tensor, with ``torch.optim.Optimizer``'s
    ``__init__`` skipped (it imports torch._dynamo, about 1 s); an optimiser whose constructor needs
    what that skips is built for real. When the settings are refused together, each is tried alone
    so that every refused key is named; ``key`` is "" when the refusal is about no one key.
    """
    whole = _refusal(info, params)
    if whole is None:
        return []
    alone = [(key, message) for key in params
             for message in [_refusal(info, {key: params[key]})] if message is not None]
    return [(key, message[1]) for key, message in alone] or [whole]


def _refusal(info: OptimizerInfo, params: Mapping[str, Any]) -> tuple[str, str] | None:
    probe = type(f"Probe{info.cls.__name__}", (info.cls, _SkippedOptimizerInit), {})
    try:
        try:
            probe([torch.zeros(1, requires_grad=True)], **{**info.defaults, **params})
        except (ValueError, TypeError):
            raise
        except Exception:  # the constructor needs the real Optimizer.__init__
            build(info, [torch.zeros(1, requires_grad=True)], params)
    except (ValueError, TypeError, RuntimeError, AssertionError, ImportError) as exc:  # apex/bitsandbytes: CUDA
        message = str(exc) or type(exc).__name__
        lowered = message.lower()
        key = next((k for k in params if re.search(rf"\b{re.escape(k)}\b", message)), None) \
            or next((k for words, k in _MESSAGE_KEYS.items() if words in lowered), "")
        implied = ", ".join(f"{k} = {v!r}" for k, v in info.defaults.items() if k not in params)
        return key, (f'optimizer "{info.name}" refuses these settings: {message}'
                     + (f' ("{info.name}" implies {implied}, as in timm)' if implied else ""))
    return None


class _SkippedOptimizerInit(torch.optim.Optimizer):
    """Placed between an optimiser class and ``torch.optim.Optimizer``: its ``super().__init__`` lands here."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults, self.param_groups, self.state = defaults, [], {}
