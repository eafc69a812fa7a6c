"""The keys a recipe reads itself from component tables, and the values it fills in: one declared list.

A component table such as ``{ kind = "vgg", layers = "relu2_2", weight = 0.1 }`` mixes the
component's own parameters (``layers``) with keys the recipe reads (``weight``). The two must
never share a name, so a factory parameter that collides with a reserved key is refused when
its plugin registers (:func:`check_factory`). Filled keys are parameters the recipe sets for
the component: ``scale`` (the recipe's upscaling factor, given to every component that takes
an integer ``scale``) and a dataset's ``mode`` (``"train"`` or ``"val"``).

Nothing here imports torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

from ..errors import RegistryError
from ..schema import Checker, Range, Schema, describe, schema_of


@dataclass(frozen=True)
class LossOptions:
    """Keys of a loss table that the training engine reads itself."""

    weight: float = field(default=1.0, metadata={"doc": "the loss's weight in the stage's generator objective"})


@dataclass(frozen=True)
class LoaderOptions:
    """Keys of ``[data.train]`` that the loader reads (the rest go to the dataset)."""

    batch_size: Annotated[int, Range(min=1)] = field(
        default=16, metadata={"doc": "the batch size of training (the global batch, all processes together)"})
    num_workers: Annotated[int, Range(min=0)] = field(
        default=2, metadata={"doc": "the number of loader worker processes"})
    pin_memory: bool = field(default=True, metadata={"doc": "pinning loaded batches in memory (on CUDA)"})


@dataclass(frozen=True)
class ValLoaderOptions:
    """Keys of ``[data.val]`` that the loader reads; validation goes one whole image at a time."""

    num_workers: Annotated[int, Range(min=0)] = field(
        default=0, metadata={"doc": "the number of loader worker processes"})
    pin_memory: bool = field(default=True, metadata={"doc": "pinning loaded batches in memory (on CUDA)"})


# kind -> the options dataclasses whose fields a table of that kind may also hold
OPTIONS: dict[str, tuple[type, ...]] = {
    "loss": (LossOptions,),
    "dataset": (LoaderOptions, ValLoaderOptions),
}


@dataclass(frozen=True)
class Filled:
    """A parameter the recipe fills in: what it means, and sample values its annotation must accept.

    The annotation must accept every value of ``accepts_all``, at least one of ``accepts_any`` (when
    given), and none of ``rejects``.
    """

    meaning: str
    typed: str  # how a parameter that takes it is typed, e.g. "scale: int"
    accepts_all: tuple[Any, ...] = ()
    accepts_any: tuple[Any, ...] = ()
    rejects: tuple[Any, ...] = ()


# kind ("*" for every kind) -> parameter name -> how the recipe fills it
FILLED: dict[str, dict[str, Filled]] = {
    "*": {"scale": Filled("the recipe's upscaling factor, an integer", "scale: int",
                          accepts_any=(2, 3, 4, 8), rejects=(2.5, "4"))},
    "dataset": {"mode": Filled('"train" (random patches) or "val" (whole images)',
                               'mode: Literal["train", "val"]', accepts_all=("train", "val"))},
}


def reserved_keys(kind: str) -> dict[str, str]:
    """The keys a table of ``kind`` reserves for the recipe: name -> what the recipe uses it for."""
    reserved = {"kind": "the registered name of the component"}
    for options in OPTIONS.get(kind, ()):
        reserved.update({f.name: f.metadata["doc"] for f in fields(options)})
    return reserved


def check_factory(kind: str, name: str, factory: Callable[..., Any]) -> Schema:
    """The schema of ``factory``, refused (RegistryError) when it cannot be checked or collides with the recipe.

    Refused: ``**kwargs`` without :func:`srframe.schema.open_schema`; a parameter named like a
    reserved key; a filled parameter (``scale``) whose type does not take the value the recipe fills in.
    """
    label = f'{kind} "{name}" ({getattr(factory, "__module__", "?")}.{getattr(factory, "__qualname__", factory)})'
    try:
        schema = schema_of(factory)
    except RegistryError as exc:
        raise RegistryError(f"{label}: {exc}. Type hints must resolve when the plugin registers: import the names "
                            "they use at run time, not only under `if TYPE_CHECKING:`") from exc
    if schema.open and not getattr(factory, "srframe_open_schema", False):
        raise RegistryError(f"{label} takes **kwargs, so a misspelt recipe key would reach it unchecked: declare "
                            "each setting as a keyword parameter with a type hint (a class without parameters "
                            "needs no __init__ when it subclasses a srframe interface), or, if the factory "
                            "forwards unknown keys to another library, mark it with @srframe.schema.open_schema "
                            "(written below @srframe.register, which registers what it is given)")
    _check_rules(label, factory)
    reserved = reserved_keys(kind)
    for key in schema.fields:
        if key in reserved:
            raise RegistryError(f'{label} has a parameter named "{key}", which recipes reserve for {reserved[key]}: '
                                f'rename the parameter (e.g. "{name}_{key}")')
    filled = {**FILLED["*"], **FILLED.get(kind, {})}
    for key, rule in filled.items():
        field = schema.fields.get(key)
        if field is not None and not _takes(field.annotation, rule):
            raise RegistryError(f'{label} has a parameter named "{key}" typed {describe(field.annotation)}, but '
                                f"recipes fill `{key}` with {rule.meaning}: type it to take that "
                                f'(`{rule.typed}`), or rename the parameter (e.g. "{name}_{key}")')
    return schema


def _check_rules(label: str, factory: Callable[..., Any]) -> None:
    """A class's ``check_params`` must be callable on the class: a staticmethod or classmethod."""
    if isinstance(factory, type) and "check_params" in dir(factory):
        rules = inspect.getattr_static(factory, "check_params")
        if not isinstance(rules, (staticmethod, classmethod)):
            raise RegistryError(f"{label}: check_params must be a @staticmethod or @classmethod taking the "
                                "parameters (it runs before anything is built, so there is no instance)")


def _takes(annotation: Any, rule: Filled) -> bool:
    """Whether the annotation takes the values the recipe fills in, and only those kinds of value."""
    def accepted(value: Any) -> bool:
        checker = Checker()
        checker.check(value, annotation, ())
        return not checker.problems

    return (all(accepted(v) for v in rule.accepts_all)
            and (not rule.accepts_any or any(accepted(v) for v in rule.accepts_any))
            and not any(accepted(v) for v in rule.rejects) and describe(annotation) != "any value")
